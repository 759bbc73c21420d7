//! The clock: one service that uses every trigger. Connect to
//! `/ws/clock` (`wasmgate client ws://127.0.0.1:8080/ws/clock`) and the time
//! arrives every second; `curl 127.0.0.1:8080/http/clock/now` reads it, and
//! `curl -d 'hello' 127.0.0.1:8080/http/clock/say` sends text to every
//! connected client. Build it with `cargo xtask build-plugins` (writes
//! `plugins/clock/handler.wasm`); `service.toml` declares the timer.
//!
//! - **register** joins the connection to the group `clock`.
//! - **timer** (`tick`, every second) broadcasts the tick's time, e.g.
//!   `2019-02-21T11:49:00Z`, to the group.
//! - **http** `GET /now` answers `{"time": "…"}`; `POST /say` broadcasts the
//!   body's text to the group and answers `{"delivered": n}`; anything else
//!   is 404.

use wasmgate_guest::{
    groups, Connecting, Context, Handler, HandlerError, HttpRequest, HttpResponse, Registration,
    TimerEvent,
};

/// The group every client of the clock is in.
const GROUP: &str = "clock";

struct Clock;

impl Handler for Clock {
    fn register(ctx: &Context, _event: Connecting) -> Result<Registration, HandlerError> {
        groups::join(GROUP, &ctx.connection_id)?;
        Ok(Registration::accept())
    }

    fn timer(_ctx: &Context, event: TimerEvent) -> Result<(), HandlerError> {
        groups::broadcast_text(GROUP, &event.time, None)?;
        Ok(())
    }

    fn http(_ctx: &Context, request: HttpRequest) -> Result<HttpResponse, HandlerError> {
        Ok(
            match (request.http_method.as_str(), request.path.as_str()) {
                ("GET", "/now") => {
                    HttpResponse::json(200, &serde_json::json!({ "time": utc_now() }))
                }
                ("POST", "/say") => {
                    let text = String::from_utf8_lossy(&request.body_bytes()?).into_owned();
                    let delivered = groups::broadcast_text(GROUP, &text, None)?;
                    HttpResponse::json(200, &serde_json::json!({ "delivered": delivered }))
                }
                _ => HttpResponse::json(
                    404,
                    &serde_json::json!({ "error": "GET /now or POST /say" }),
                ),
            },
        )
    }
}

wasmgate_guest::handler!(Clock);

/// The time now, UTC, to the second, as the timer event writes it.
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    format_utc(seconds)
}

/// `seconds` since the Unix epoch as `2019-02-21T11:49:00Z` (Howard
/// Hinnant's civil-from-days).
fn format_utc(seconds: i64) -> String {
    let (days, time) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_the_timer_event_does() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_550_749_740), "2019-02-21T11:49:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
