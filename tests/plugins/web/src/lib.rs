//! Web: a test handler for the HTTP and timer triggers. Build it with
//! `cargo xtask build-test-plugins`; the integration tests build it
//! themselves.
//!
//! # register
//!
//! Joins the connection to the group `?group=<name>`, if given, and accepts.
//!
//! # transfer
//!
//! `id` pushes back the connection's own id; anything else is ignored.
//!
//! # http
//!
//! | path | answer |
//! |---|---|
//! | `/html` | 200 `text/html` |
//! | `/binary` | 200 `application/octet-stream`, the bytes 0 to 255 (Base64 in the answer) |
//! | `/headers` | 200 with `Key: value1`, `Key: value2`, `Key: value3` and `X-One: 1` |
//! | `/raw` | the request body, as the handler's whole answer (the integration response as written, malformed or not) |
//! | `/trap` | panics |
//! | `/loop` | spins until stopped |
//! | `/err` | returns an error |
//! | `/broadcast/<group>` | broadcasts the body to the group, answers `{"delivered": n}` |
//! | `/push/<id>` | pushes the body to connection `<id>`, answers `{"errNo": n}` (0: pushed) |
//! | `/close/<id>` | closes connection `<id>`, answers `{"errNo": n}` |
//!
//! `<group>` and `<id>` are the path parameters `group` and `id` when the
//! service declares the templates (`routes = ["/push/{id}", ...]`: decoded),
//! else the rest of the path as sent.
//! | anything else | 200 `application/json`: the event as received |
//!
//! # timer
//!
//! Broadcasts `tick <TriggerName> <Time> <Message>` to the group `ticks`. A
//! timer whose message is `slow` spins two and a half seconds first; one
//! whose message is `fail` fails.

use wasmgate_guest::{
    dispatch, groups, Connecting, Context, DataSend, Handler, HandlerError, HttpRequest,
    HttpResponse, Registration, Role, TimerEvent,
};

struct Web;

fn spin_for(duration: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        std::hint::black_box(0);
    }
}

fn err_no(result: Result<(), wasmgate_guest::GatewayError>) -> HttpResponse {
    let err_no = result.err().map_or(0, |error| error.err_no);
    HttpResponse::json(200, &serde_json::json!({ "errNo": err_no }))
}

impl Handler for Web {
    fn handle(ctx: &Context, event: &str) -> Result<String, HandlerError> {
        if ctx.role == Role::Http {
            let request = HttpRequest::from_json(event)?;
            match request.path.as_str() {
                "/raw" => return Ok(request.body),
                "/trap" => panic!("web: trap requested"),
                "/loop" => loop {
                    std::hint::black_box(0);
                },
                "/err" => return Err("web: error requested".into()),
                "/html" | "/binary" | "/headers" => {}
                path if path.starts_with("/broadcast/")
                    || path.starts_with("/push/")
                    || path.starts_with("/close/") => {}
                _ => {
                    return Ok(HttpResponse::new(200)
                        .header("Content-Type", "application/json")
                        .body(event)
                        .to_json())
                }
            }
        }
        dispatch::<Self>(ctx, event)
    }

    fn register(ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
        if let Some(group) = event.query("group") {
            groups::join(group, &ctx.connection_id)?;
        }
        Ok(Registration::accept())
    }

    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        if event.as_text() == Some("id") {
            wasmgate_guest::push_text(&ctx.connection_id, &ctx.connection_id)?;
        }
        Ok(())
    }

    fn http(_ctx: &Context, request: HttpRequest) -> Result<HttpResponse, HandlerError> {
        let path = request.path.as_str();
        let parameter = |name: &str, prefix: &str| {
            request
                .path_parameter(name)
                .or_else(|| path.strip_prefix(prefix))
                .map(str::to_owned)
        };
        if let Some(group) = parameter("group", "/broadcast/") {
            let group = group.as_str();
            let delivered = groups::broadcast_text(group, &request.body, None)?;
            return Ok(HttpResponse::json(
                200,
                &serde_json::json!({ "delivered": delivered }),
            ));
        }
        if path.starts_with("/push/") {
            let id = parameter("id", "/push/").unwrap_or_default();
            return Ok(err_no(wasmgate_guest::push_text(&id, &request.body)));
        }
        if path.starts_with("/close/") {
            let id = parameter("id", "/close/").unwrap_or_default();
            return Ok(err_no(wasmgate_guest::close(&id)));
        }
        Ok(match path {
            "/html" => HttpResponse::new(200)
                .header("Content-Type", "text/html")
                .body("<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>"),
            "/binary" => HttpResponse::new(200)
                .header("Content-Type", "application/octet-stream")
                .binary(&(0..=255u8).collect::<Vec<_>>()),
            _ => HttpResponse::new(200)
                .header("Key", "value1")
                .header("Key", "value2")
                .header("Key", "value3")
                .header("X-One", "1"),
        })
    }

    fn timer(_ctx: &Context, event: TimerEvent) -> Result<(), HandlerError> {
        match event.message.as_str() {
            "slow" => spin_for(std::time::Duration::from_millis(2500)),
            "fail" => return Err("web: the timer failed on purpose".into()),
            _ => {}
        }
        let line = format!(
            "tick {} {} {}",
            event.trigger_name, event.time, event.message
        );
        groups::broadcast_text("ticks", line.trim_end(), None)?;
        Ok(())
    }
}

wasmgate_guest::handler!(Web);
