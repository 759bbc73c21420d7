//! Probe: a test handler that serves all three roles and does, on command,
//! everything the gateway must cope with. Build it with
//! `cargo xtask build-test-plugins` (writes `tests/plugins/probe/handler.wasm`);
//! the integration tests build it themselves.
//!
//! # register
//!
//! Logs `register` at info level through the host, then looks at the query
//! string, in this order:
//!
//! | query | behaviour |
//! |---|---|
//! | `garbage=1` | answers `not json` as a successful result |
//! | `event=1` | pushes the connecting event JSON, as received, to its own connection (then goes on below) |
//! | `deny=<msg>` | refuses with `errNo` 4001 and `errMsg` `<msg>` |
//! | `trap=1` | panics (the call traps) |
//! | `loop=1` | spins forever (the call hits its CPU or time limit) |
//! | `slow=<ms>` | spins for `<ms>` milliseconds, then goes on below |
//! | `ctx=1` | pushes its context as `info` does (see transfer) to its own connection, then goes on below |
//! | `push=<text>` | pushes `<text>` as text to its own connection, then accepts; a failed push is logged at warn level |
//! | `join=<group>` | joins its own connection to `<group>` (then goes on) |
//! | `track=1` | stores the key `conn/<id>` in the service's key-value store (then goes on); cleanup deletes it |
//! | `set-attrs=<json>` | sets the connection's attributes through the host (then goes on); a failure is logged at warn level as `set-attributes from register: <error>` |
//! | `attrs=<json>` | accepts with `<json>` as the answer's `attributes` (text that is not JSON is sent as a JSON string) |
//!
//! Otherwise it accepts, choosing the first sub-protocol the client offered in
//! `Sec-WebSocket-Protocol`, if any.
//!
//! # transfer
//!
//! A binary message is pushed back as the same bytes, binary. A text message is
//! a command:
//!
//! | message | behaviour |
//! |---|---|
//! | `echo:<x>` | pushes back `<x>` |
//! | `overlap:<ms>` | counts itself into the key `running` (kv), spins `<ms>` ms, counts itself out, pushes back `overlap:<n>`: how many transfers of the service were running when it started, itself included |
//! | `trap` | panics |
//! | `loop` | spins forever |
//! | `err` | returns an error |
//! | `garbage` | answers `not json` (a success: the body is not used) |
//! | `close` | closes its own connection through the host |
//! | `push-to:<id>:<text>` | pushes `<text>` to connection `<id>`, pushes back `result:<errNo>` (0 on success) |
//! | `close-other:<id>` | closes connection `<id>`, pushes back `result:<errNo>` |
//! | `route:<json>` | routes the reverse-push request `<json>`, pushes back `result:<errNo>` |
//! | `stdout:<x>` | prints `<x>` to stdout and stderr, pushes back `ok` |
//! | `attrs` | pushes back the event's `attributes` as JSON, or `none` |
//! | `set-attrs:<json>` | sets the connection's attributes (text that is not JSON is sent as a JSON string), pushes back `result:<errNo>` |
//! | `info` | pushes back `{"service","role","requestId","connectionId","deadlineMs"}` of its context |
//! | `env` | pushes back its environment variables as a JSON object |
//! | `fs` | reads `/` and `/etc/passwd`, pushes back `denied` if both fail, else `allowed` |
//! | `net` | connects to `127.0.0.1:1`, pushes back `allowed` if the attempt reached a network (connected or refused), else `denied` |
//! | `kv-set:<key>=<value>` | sets the key, pushes back `result:<errNo>` |
//! | `kv-ttl:<ms>:<key>=<value>` | sets the key with a time to live, pushes back `result:<errNo>` |
//! | `kv-get:<key>` | pushes back `value:<value>`, `none`, or `result:<errNo>` |
//! | `kv-del:<key>` | pushes back `deleted:<true or false>` or `result:<errNo>` |
//! | `kv-keys:<prefix>` | pushes back the keys with that prefix as a JSON array, or `result:<errNo>` |
//! | `kv-entries:<prefix>` | pushes back the keys with that prefix and their values as a JSON object, or `result:<errNo>` |
//! | `kv-many:<k1>,<k2>,…` | pushes back the values as a JSON array (`null` for an absent key), or `result:<errNo>` |
//! | `kv-incr:<delta>:<key>` | pushes back `counter:<new value>` or `result:<errNo>` |
//! | `kv-cas:<key>=<expected>=<new>` | `<expected>` empty means absent; pushes back `swapped:<true or false>` or `result:<errNo>` |
//! | `join:<group>` / `leave:<group>` | its own connection; pushes back `result:<errNo>` |
//! | `join-other:<id>:<group>` | joins another connection, pushes back `result:<errNo>` |
//! | `members:<group>` | pushes back the member ids as a JSON array, or `result:<errNo>` |
//! | `groups` | pushes back its own groups as a JSON array |
//! | `broadcast:<group>:<text>` | broadcasts `<text>` to the group but itself, pushes back `delivered:<n>` or `result:<errNo>` |
//! | anything else | pushes back the text unchanged |
//!
//! # cleanup
//!
//! Logs `cleanup reason=<closeReason> code=<closeCode> groups=<g1,g2>
//! attrs=<attributes JSON>` at info level through the host and prints the
//! same line to stdout; a missing reason, code or attributes is written
//! `none`. Deletes the key `conn/<id>` if
//! `track=1` stored it.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use wasmgate_guest::{
    dispatch, Closing, Connecting, Context, DataSend, GatewayError, Handler, HandlerError,
    LogLevel, Payload, Registration, Role,
};

/// The answer of the `garbage` commands: not the JSON the gateway expects.
const GARBAGE: &str = "not json";

struct Probe;

impl Handler for Probe {
    fn handle(ctx: &Context, event: &str) -> Result<String, HandlerError> {
        // `garbage` needs a raw answer; every other command goes through the
        // typed methods.
        let garbage = match ctx.role {
            Role::Register => Connecting::from_json(event)?.query("garbage") == Some("1"),
            Role::Transfer => DataSend::from_json(event)?.as_text() == Some("garbage"),
            _ => false,
        };
        if garbage {
            return Ok(GARBAGE.to_owned());
        }
        if ctx.role == Role::Register && Connecting::from_json(event)?.query("event") == Some("1") {
            wasmgate_guest::push_text(&ctx.connection_id, event)?;
        }
        dispatch::<Self>(ctx, event)
    }

    fn register(ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
        wasmgate_guest::log(LogLevel::Info, "register");
        if let Some(message) = event.query("deny") {
            return Ok(Registration::refuse(4001, message));
        }
        if event.query("trap") == Some("1") {
            panic!("probe: trap requested by register");
        }
        if event.query("loop") == Some("1") {
            spin();
        }
        if let Some(ms) = event.query("slow").and_then(|ms| ms.parse().ok()) {
            spin_for(std::time::Duration::from_millis(ms));
        }
        if event.query("ctx") == Some("1") {
            wasmgate_guest::push_text(&ctx.connection_id, &info(ctx))?;
        }
        if let Some(group) = event.query("join") {
            wasmgate_guest::groups::join(group, &ctx.connection_id)?;
        }
        if event.query("track") == Some("1") {
            wasmgate_guest::kv::set(&format!("conn/{}", ctx.connection_id), b"open")?;
        }
        if let Some(text) = event.query("push") {
            if let Err(error) = wasmgate_guest::push_text(&ctx.connection_id, text) {
                wasmgate_guest::log(LogLevel::Warn, &format!("push from register: {error}"));
            }
        }
        if let Some(json) = event.query("set-attrs") {
            if let Err(error) = wasmgate_guest::set_attributes(&json_or_string(json)) {
                wasmgate_guest::log(
                    LogLevel::Warn,
                    &format!("set-attributes from register: {error}"),
                );
            }
        }
        let answer = match event.protocols().next() {
            Some(protocol) => Registration::accept_protocol(protocol),
            None => Registration::accept(),
        };
        Ok(match event.query("attrs") {
            Some(json) => answer.with_attributes(json_or_string(json)),
            None => answer,
        })
    }

    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        let me = ctx.connection_id.as_str();
        let attributes = event.attributes.clone();
        let command = match event.into_payload()? {
            Payload::Text(text) => text,
            binary @ Payload::Binary(_) => return Ok(wasmgate_guest::push(me, binary)?),
        };
        let reply = |text: &str| wasmgate_guest::push_text(me, text).map_err(HandlerError::from);
        let report = |result: Result<(), GatewayError>| reply(&result_line(result));

        match command.as_str() {
            "trap" => panic!("probe: trap requested by transfer"),
            "loop" => spin(),
            "err" => Err("probe: error requested by transfer".into()),
            "close" => Ok(wasmgate_guest::close(me)?),
            "info" => reply(&info(ctx)),
            "attrs" => reply(&attributes.map_or_else(|| "none".to_owned(), |a| a.to_string())),
            "groups" => {
                reply(&serde_json::Value::from(wasmgate_guest::groups::groups_of(me)?).to_string())
            }
            "env" => reply(&serde_json::to_string(
                &std::env::vars().collect::<BTreeMap<_, _>>(),
            )?),
            "fs" => reply(if filesystem_reachable() {
                "allowed"
            } else {
                "denied"
            }),
            "net" => reply(if network_reachable() {
                "allowed"
            } else {
                "denied"
            }),
            _ => {
                if let Some(text) = command.strip_prefix("echo:") {
                    reply(text)
                } else if let Some(ms) = command.strip_prefix("overlap:") {
                    reply(&overlap(ms.parse().unwrap_or(0))?)
                } else if let Some(rest) = command.strip_prefix("push-to:") {
                    // Connection ids are Base64, which has no ':'.
                    let (target, text) = rest.split_once(':').unwrap_or((rest, ""));
                    report(wasmgate_guest::push_text(target, text))
                } else if let Some(target) = command.strip_prefix("close-other:") {
                    report(wasmgate_guest::close(target))
                } else if let Some(json) = command.strip_prefix("set-attrs:") {
                    report(wasmgate_guest::set_attributes(&json_or_string(json)))
                } else if let Some(request) = command.strip_prefix("route:") {
                    report(wasmgate_guest::route(request))
                } else if let Some(reply_text) = state_command(me, &command) {
                    reply(&reply_text)
                } else if let Some(text) = command.strip_prefix("stdout:") {
                    println!("{text}");
                    eprintln!("{text}");
                    reply("ok")
                } else {
                    reply(&command)
                }
            }
        }
    }

    fn cleanup(ctx: &Context, event: Closing) -> Result<(), HandlerError> {
        let reason = event
            .close_reason()
            .map_or("none", |reason| reason.as_str());
        let code = event
            .close_code()
            .map_or_else(|| "none".to_owned(), |code| code.to_string());
        let groups = wasmgate_guest::groups::groups_of(&ctx.connection_id)?.join(",");
        wasmgate_guest::kv::delete(&format!("conn/{}", ctx.connection_id))?;
        let attrs = event
            .attributes
            .as_ref()
            .map_or_else(|| "none".to_owned(), |a| a.to_string());
        let line = format!("cleanup reason={reason} code={code} groups={groups} attrs={attrs}");
        wasmgate_guest::log(LogLevel::Info, &line);
        println!("{line}");
        Ok(())
    }
}

wasmgate_guest::handler!(Probe);

/// `text` as JSON, or as a JSON string when it is not JSON.
fn json_or_string(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::from(text))
}

/// Burns CPU until the gateway stops the call.
/// The `overlap:<ms>` command: how many calls were running at once.
fn overlap(ms: u64) -> Result<String, HandlerError> {
    let running = wasmgate_guest::kv::increment("running", 1)?;
    spin_for(std::time::Duration::from_millis(ms));
    wasmgate_guest::kv::increment("running", -1)?;
    Ok(format!("overlap:{running}"))
}

fn spin_for(duration: std::time::Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < duration {
        std::hint::black_box(started);
    }
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// The key-value and group commands; `None` for any other command.
fn state_command(me: &str, command: &str) -> Option<String> {
    use wasmgate_guest::{groups, kv};
    let (verb, rest) = command.split_once(':')?;
    let json = |items: Vec<String>| serde_json::Value::from(items).to_string();
    let answer: Result<String, GatewayError> = match verb {
        "kv-set" => {
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            Ok(result_line(kv::set(key, value.as_bytes())))
        }
        "kv-ttl" => {
            let (ms, entry) = rest.split_once(':').unwrap_or(("0", rest));
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            let ttl = std::time::Duration::from_millis(ms.parse().unwrap_or(0));
            Ok(result_line(kv::set_with_ttl(key, value.as_bytes(), ttl)))
        }
        "kv-get" => kv::get_string(rest).map(|value| match value {
            Some(value) => format!("value:{value}"),
            None => "none".to_owned(),
        }),
        "kv-del" => kv::delete(rest).map(|existed| format!("deleted:{existed}")),
        "kv-keys" => kv::keys(rest).map(json),
        "kv-entries" => kv::entries(rest).map(|entries| {
            let object: serde_json::Map<String, serde_json::Value> = entries
                .into_iter()
                .map(|(key, value)| (key, String::from_utf8_lossy(&value).into()))
                .collect();
            serde_json::Value::Object(object).to_string()
        }),
        "kv-many" => {
            let keys: Vec<&str> = rest.split(',').collect();
            kv::get_many(&keys).map(|values| {
                let values: Vec<serde_json::Value> = values
                    .into_iter()
                    .map(|value| {
                        value.map_or(serde_json::Value::Null, |v| {
                            String::from_utf8_lossy(&v).into()
                        })
                    })
                    .collect();
                serde_json::Value::from(values).to_string()
            })
        }
        "kv-incr" => {
            let (delta, key) = rest.split_once(':').unwrap_or(("1", rest));
            kv::increment(key, delta.parse().unwrap_or(1)).map(|n| format!("counter:{n}"))
        }
        "kv-cas" => {
            let mut parts = rest.splitn(3, '=');
            let (key, expected, new) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let expected = (!expected.is_empty()).then_some(expected.as_bytes());
            kv::compare_and_swap(key, expected, new.as_bytes())
                .map(|swapped| format!("swapped:{swapped}"))
        }
        "join" => Ok(result_line(groups::join(rest, me))),
        "leave" => Ok(result_line(groups::leave(rest, me).map(|_| ()))),
        "join-other" => {
            let (id, group) = rest.split_once(':').unwrap_or((rest, ""));
            Ok(result_line(groups::join(group, id)))
        }
        "members" => groups::members(rest).map(json),
        "broadcast" => {
            let (group, text) = rest.split_once(':').unwrap_or((rest, ""));
            groups::broadcast_text(group, text, Some(me)).map(|n| format!("delivered:{n}"))
        }
        _ => return None,
    };
    Some(answer.unwrap_or_else(|error| result_line(Err(error))))
}

/// `result:<errNo>` for a host call, 0 on success.
fn result_line(result: Result<(), GatewayError>) -> String {
    format!(
        "result:{}",
        result.map_or_else(|error| error.err_no, |()| 0)
    )
}

/// The context as JSON, with the contract's spelling.
fn info(ctx: &Context) -> String {
    serde_json::json!({
        "service": ctx.service,
        "role": ctx.role.as_str(),
        "requestId": ctx.request_id,
        "connectionId": ctx.connection_id,
        "deadlineMs": ctx.deadline_ms,
    })
    .to_string()
}

/// Whether either the root directory or `/etc/passwd` can be read.
fn filesystem_reachable() -> bool {
    std::fs::read_dir("/").is_ok() || std::fs::read("/etc/passwd").is_ok()
}

/// Whether a TCP connection attempt reaches a network stack. Nothing listens
/// on port 1, so a refused connection still means the guest may use sockets.
fn network_reachable() -> bool {
    match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => true,
        Err(error) => error.kind() == ErrorKind::ConnectionRefused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(role: Role) -> Context {
        Context {
            service: "probe".into(),
            role,
            request_id: "req".into(),
            connection_id: "conn".into(),
            deadline_ms: 42,
        }
    }

    fn connecting(query: &str, protocol: Option<&str>) -> String {
        let mut websocket = serde_json::json!({"action": "connecting", "secConnectionID": "conn"});
        if let Some(protocol) = protocol {
            websocket["secWebSocketProtocol"] = protocol.into();
        }
        let (name, value) = query.split_once('=').unwrap_or((query, ""));
        serde_json::json!({"websocket": websocket, "queryString": {name: value}}).to_string()
    }

    #[test]
    fn register_refuses_chooses_protocols_and_answers_garbage() {
        let register =
            |query, protocol| Probe::handle(&ctx(Role::Register), &connecting(query, protocol));
        assert_eq!(
            register("deny=go away", None).unwrap(),
            r#"{"errNo":4001,"errMsg":"go away"}"#
        );
        assert_eq!(
            register("x=1", Some("chat, binary")).unwrap(),
            r#"{"errNo":0,"errMsg":"ok","websocket":{"action":"connecting","secConnectionID":"conn","secWebSocketProtocol":"chat"}}"#
        );
        assert_eq!(register("garbage=1", None).unwrap(), GARBAGE);
    }

    #[test]
    fn transfer_commands_without_a_gateway() {
        let transfer = |text: &str| {
            Probe::handle(&ctx(Role::Transfer), &DataSend::new("conn", text).to_json())
        };
        assert_eq!(transfer("garbage").unwrap(), GARBAGE);
        assert!(transfer("err")
            .unwrap_err()
            .message()
            .contains("error requested"));
        // Replies need the push host call, which fails outside a gateway.
        assert!(transfer("echo:hi").unwrap_err().message().contains("2501"));
    }

    #[test]
    fn context_info_uses_wire_names() {
        let info: serde_json::Value = serde_json::from_str(&info(&ctx(Role::Transfer))).unwrap();
        assert_eq!(
            info,
            serde_json::json!({
                "service": "probe",
                "role": "transfer",
                "requestId": "req",
                "connectionId": "conn",
                "deadlineMs": 42
            })
        );
        assert_eq!(result_line(Ok(())), "result:0");
        assert_eq!(
            result_line(Err(GatewayError {
                err_no: 2202,
                err_msg: "gone".into()
            })),
            "result:2202"
        );
    }
}
