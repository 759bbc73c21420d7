//! What each fuzz target does with its input, in one place: every
//! `fuzz/fuzz_targets/<target>.rs` calls one function of this file, and
//! `host/tests/fuzz_corpus.rs` replays the committed inputs through the same
//! functions on stable Rust (both include this file with `#[path]`).
//!
//! Each function takes the raw input bytes, decodes them the same way every
//! time, calls the parser under test and panics when an invariant does not
//! hold. An input the parser refuses is fine: only a panic, or an accepted
//! result that breaks an invariant, is a finding.

// Each fuzz target uses one function of this file.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use wasmgate::config::cron::{CivilTime, Cron};
use wasmgate::config::{ServiceConfig, MAX_INSTANCE_REUSE};
use wasmgate::protocol::{
    connecting_event, header_fields, query_fields, ConnectingRequest, ErrNo, IntegrationResponse,
    Payload, PushRequest, RegisterAnswer,
};
use wasmgate::wasm::core_module;
use wasmgate::GatewayConfig;

/// What a target does with one input; it panics when a property fails.
pub type Check = fn(&[u8]);

/// The fuzz targets, by the name of their corpus folder.
pub const TARGETS: [(&str, Check); 7] = [
    ("push_request", push_request),
    ("register_answer", register_answer),
    ("service_config", service_config),
    ("connecting_event", connecting_event_from),
    ("core_module", core_module_from),
    ("http_answer", http_answer),
    ("cron", cron),
];

// --- push_request ---------------------------------------------------------

/// Message limits every push body is parsed with, besides the size of its own
/// payload and one byte less.
const PUSH_LIMITS: [usize; 5] = [0, 16, 1024, 256 << 10, usize::MAX];

fn push_payload(request: &PushRequest) -> Option<&Payload> {
    match request {
        PushRequest::Send { payload, .. } | PushRequest::Broadcast { payload, .. } => Some(payload),
        PushRequest::Close { .. } => None,
    }
}

/// Input: a reverse-push body, as is. It is parsed with several message
/// limits: the result must not depend on the limit except for the one
/// refusal "payload too large", a delivered payload is never longer than the
/// limit, and what is accepted says what the JSON says.
pub fn push_request(body: &[u8]) {
    let unbounded = PushRequest::parse(body, usize::MAX);
    let mut limits = PUSH_LIMITS.to_vec();
    if let Some(payload) = unbounded.as_ref().ok().and_then(push_payload) {
        limits.push(payload.len());
        limits.push(payload.len().saturating_sub(1));
    }
    for limit in limits {
        let bounded = PushRequest::parse(body, limit);
        match (&unbounded, &bounded) {
            (Ok(whole), Ok(within)) => {
                assert_eq!(whole, within, "the limit {limit} changed the request");
                if let Some(payload) = push_payload(within) {
                    assert!(
                        payload.len() <= limit,
                        "a payload of {} bytes passed the limit {limit}",
                        payload.len()
                    );
                }
            }
            (Ok(whole), Err(error)) => {
                let size = push_payload(whole).map_or(0, Payload::len);
                assert_eq!(
                    error.code,
                    ErrNo::PAYLOAD_TOO_LARGE.number,
                    "refused under the limit {limit} for another reason: {error}"
                );
                assert!(size > limit, "{size} bytes refused under the limit {limit}");
            }
            (Err(error), Ok(_)) => {
                panic!("accepted under the limit {limit} but refused without one: {error}")
            }
            (Err(whole), Err(within)) => assert_eq!(whole, within),
        }
    }
    let Ok(request) = unbounded else { return };
    let again = PushRequest::parse(&push_body(&request), usize::MAX);
    assert_eq!(
        again.as_ref(),
        Ok(&request),
        "the request did not survive a round trip"
    );
    let json: Value = serde_json::from_slice(body).expect("an accepted push is JSON");
    let websocket = &json["websocket"];
    let text = |name: &str| websocket[name].as_str();
    let action = text("action");
    let check_payload = |payload: &Payload| match payload {
        Payload::Text(data) => {
            assert!(matches!(text("dataType"), None | Some("text")));
            assert_eq!(Some(data.as_str()), text("data"));
        }
        Payload::Binary(bytes) => {
            assert_eq!(text("dataType"), Some("binary"));
            // Standard Base64 with canonical padding: re-encoding gives the
            // very text that was sent.
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            assert_eq!(Some(encoded.as_str()), text("data"));
        }
    };
    match &request {
        PushRequest::Send {
            connection_id,
            payload,
        } => {
            assert_eq!(action, Some("data send"));
            assert_eq!(Some(connection_id.as_str()), text("secConnectionID"));
            check_payload(payload);
        }
        PushRequest::Close { connection_id } => {
            assert_eq!(action, Some("closing"));
            assert_eq!(Some(connection_id.as_str()), text("secConnectionID"));
        }
        PushRequest::Broadcast {
            group,
            payload,
            except,
        } => {
            assert_eq!(action, Some("data broadcast"));
            assert_eq!(Some(group.as_str()), text("group"));
            assert_eq!(except.as_deref(), text("exceptConnectionID"));
            check_payload(payload);
        }
    }
}

/// The body a backend would POST to ask for `request`: the other half of
/// the round trip `PushRequest::parse(push_body(request)) == request`.
pub fn push_body(request: &PushRequest) -> Vec<u8> {
    let mut websocket = Map::new();
    let mut put = |name: &str, value: Value| websocket.insert(name.to_owned(), value);
    let payload_fields = |payload: &Payload| match payload {
        Payload::Text(text) => ("text", text.clone()),
        Payload::Binary(bytes) => (
            "binary",
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
    };
    match request {
        PushRequest::Send {
            connection_id,
            payload,
        } => {
            let (data_type, data) = payload_fields(payload);
            put("action", "data send".into());
            put("secConnectionID", connection_id.as_str().into());
            put("dataType", data_type.into());
            put("data", data.into());
        }
        PushRequest::Close { connection_id } => {
            put("action", "closing".into());
            put("secConnectionID", connection_id.as_str().into());
        }
        PushRequest::Broadcast {
            group,
            payload,
            except,
        } => {
            let (data_type, data) = payload_fields(payload);
            put("action", "data broadcast".into());
            put("group", group.as_str().into());
            put("dataType", data_type.into());
            put("data", data.into());
            if let Some(except) = except {
                put("exceptConnectionID", except.as_str().into());
            }
        }
    }
    json!({ "websocket": websocket }).to_string().into_bytes()
}

// --- register_answer ------------------------------------------------------

/// Input: a register handler's answer; bytes that are not UTF-8 are replaced
/// (`from_utf8_lossy`), as a handler's answer is a string. An accepted
/// sub-protocol is one trimmed, non-empty token without a comma, the trimmed
/// `websocket.secWebSocketProtocol` of the JSON; a refusal never has `errNo`
/// 0 and carries the JSON's `errNo` (an array `[errNo, errMsg, websocket]`
/// is read like the object, as serde reads a struct); what is accepted
/// survives a round trip through [`answer_json`].
pub fn register_answer(data: &[u8]) {
    let answer = String::from_utf8_lossy(data);
    let parsed = RegisterAnswer::parse(&answer);
    assert_eq!(parsed, RegisterAnswer::parse(&answer), "not deterministic");
    // The answer as a `Value`, to compare with. The parser skips unknown
    // fields without checking their strings, so it accepts answers that a
    // `Value` refuses (a lone surrogate escape `\uDE09` in an unknown
    // field): those are compared with nothing, only the round trip below.
    let json: Option<Value> = serde_json::from_str(&answer).ok();
    let err_no = |json: &Value| struct_field(json, 0, "errNo").and_then(Value::as_i64);
    match (&parsed, &json) {
        (Ok(_), None) => {}
        (
            Ok(RegisterAnswer::Accept {
                protocol,
                attributes,
            }),
            Some(json),
        ) => {
            assert_eq!(err_no(json), Some(0));
            // Attributes are kept as the compact JSON of an object within
            // the limit, equal to what was sent.
            if let Some(attributes) = attributes {
                assert!(attributes.len() <= wasmgate::protocol::MAX_ATTRIBUTES_BYTES);
                let kept: Value =
                    serde_json::from_str(attributes).expect("kept attributes are JSON");
                assert!(kept.is_object());
                assert_eq!(Some(&kept), struct_field(json, 3, "attributes"));
            }
            let sent = struct_field(json, 2, "websocket")
                .and_then(|websocket| struct_field(websocket, 0, "secWebSocketProtocol"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|protocol| !protocol.is_empty());
            assert_eq!(protocol.as_deref(), sent);
            if let Some(protocol) = protocol {
                assert!(!protocol.contains(','), "{protocol:?}");
            }
        }
        (Ok(RegisterAnswer::Refuse { code, .. }), Some(json)) => {
            assert_ne!(*code, 0);
            assert_eq!(err_no(json), Some(i64::from(*code)));
        }
        (Err(error), _) => {
            assert!(!error.0.is_empty());
            return;
        }
    }
    let answer = parsed.expect("accepted");
    assert_eq!(
        RegisterAnswer::parse(&answer_json(&answer)),
        Ok(answer),
        "the answer did not survive a round trip"
    );
}

/// A field of a JSON value as serde's derived `Deserialize` reads a struct
/// (which is how `RegisterAnswer::parse` reads the answer): by name from an
/// object, by position from an array.
fn struct_field<'v>(value: &'v Value, position: usize, name: &str) -> Option<&'v Value> {
    match value {
        Value::Object(fields) => fields.get(name),
        Value::Array(items) => items.get(position),
        _ => None,
    }
}

/// The JSON a handler would answer to mean `answer`.
pub fn answer_json(answer: &RegisterAnswer) -> String {
    match answer {
        RegisterAnswer::Accept {
            protocol,
            attributes,
        } => {
            let attributes: Option<Value> = attributes
                .as_deref()
                .map(|json| serde_json::from_str(json).expect("kept attributes are JSON"));
            json!({
                "errNo": 0,
                "websocket": { "secWebSocketProtocol": protocol },
                "attributes": attributes,
            })
        }
        RegisterAnswer::Refuse { code, message } => json!({ "errNo": code, "errMsg": message }),
    }
    .to_string()
}

// --- service_config -------------------------------------------------------

/// Input: the text of a `service.toml`; bytes that are not UTF-8 are replaced
/// (the gateway reads the file as UTF-8 and refuses it otherwise). Parsed
/// twice against the default gateway settings and against small ones: the
/// same answer both times, every accepted value within its documented range
/// and the gateway's limits, every refusal naming the file.
pub fn service_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("plugins/fuzz/service.toml");
    let small = GatewayConfig {
        max_memory_mb: 32,
        max_concurrency: 16,
        ..GatewayConfig::new("plugins")
    };
    for gateway in [GatewayConfig::new("plugins"), small] {
        let first = ServiceConfig::parse(&text, path, &gateway);
        let second = ServiceConfig::parse(&text, path, &gateway);
        let config = match (first, second) {
            (Ok(first), Ok(second)) => {
                assert_eq!(first, second, "not deterministic");
                first
            }
            (Err(first), Err(second)) => {
                let message = first.to_string();
                assert_eq!(message, second.to_string(), "not deterministic");
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "{message}"
                );
                continue;
            }
            (first, second) => panic!("not deterministic: {first:?} then {second:?}"),
        };
        if let Some(token) = &config.push_token {
            assert!(token.len() >= 16);
        }
        assert!((1..=7 * 24 * 3600).contains(&config.idle_timeout.as_secs()));
        assert_eq!(config.idle_timeout.subsec_nanos(), 0);
        if let Some(interval) = config.ping_interval {
            assert!((1..=3600).contains(&interval.as_secs()));
        }
        assert!(config.timeout >= Duration::from_millis(1));
        assert!(config.timeout <= Duration::from_millis(600_000));
        assert!(config.memory_limit_bytes >= 1 << 20);
        assert!(config.memory_limit_bytes <= (gateway.max_memory_mb as usize) << 20);
        assert_eq!(config.memory_limit_bytes % (1 << 20), 0);
        assert!((1..=gateway.max_concurrency).contains(&config.max_concurrency));
        assert!(config.max_connections >= 1);
        assert!((16..=64 << 20).contains(&config.max_message_bytes));
        assert!((1..=1 << 20).contains(&config.outbound_queue));
        assert!(config.kv_max_keys <= 1 << 40);
        assert!(config.instance_reuse <= MAX_INSTANCE_REUSE);
        let again = ServiceConfig::parse(&service_toml(&config), path, &gateway);
        assert_eq!(
            again.as_ref().ok(),
            Some(&config),
            "the settings did not survive a round trip: {again:?}"
        );
    }
}

/// A `service.toml` that sets every key to its value in `config`: the other
/// half of the round trip `parse(service_toml(config)) == config`.
pub fn service_toml(config: &ServiceConfig) -> String {
    // The numbers are written by hand: the gateway accepts integers above
    // 2^63 - 1 for `usize` keys (`max_connections`), which a `toml::Value`
    // cannot hold. The strings are left to the TOML serializer, which
    // escapes them; its top-level keys come before its `[env]` table.
    let numbers = [
        ("idle_timeout_s", config.idle_timeout.as_secs()),
        (
            "ping_interval_s",
            config
                .ping_interval
                .map_or(0, |interval| interval.as_secs()),
        ),
        (
            "timeout_ms",
            u64::try_from(config.timeout.as_millis()).expect("a small timeout"),
        ),
        ("memory_limit_mb", (config.memory_limit_bytes >> 20) as u64),
        ("max_concurrency", config.max_concurrency.into()),
        ("max_connections", config.max_connections as u64),
        ("max_message_bytes", config.max_message_bytes as u64),
        ("outbound_queue", config.outbound_queue as u64),
        ("kv_max_keys", config.kv_max_keys),
        ("instance_reuse", config.instance_reuse.into()),
    ];
    let mut text: String = numbers
        .iter()
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    let mut table = toml::Table::new();
    if let Some(token) = &config.push_token {
        table.insert("push_token".to_owned(), token.clone().into());
    }
    let env: toml::Table = config
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into()))
        .collect();
    table.insert("env".to_owned(), env.into());
    text.push_str(&toml::to_string(&table).expect("a table of strings serializes"));
    text
}

// --- connecting_event -----------------------------------------------------

/// An upgrade request decoded from a fuzz input.
#[derive(Debug)]
pub struct Upgrade {
    /// The request path (the target before `?`).
    pub path: String,
    /// The query (the target after the first `?`), if there is a `?`.
    pub query: Option<String>,
    /// The headers both `HeaderName` and `HeaderValue` accept, in order.
    pub headers: HeaderMap,
    /// Service name; by default the last path segment.
    pub service: String,
    /// Request id; a fixed UUID by default.
    pub request_id: String,
    /// Connection id; a fixed UUID by default.
    pub connection_id: String,
    /// Client address; 127.0.0.1 by default.
    pub source_ip: IpAddr,
}

/// Decodes an input in the shape of an HTTP/1.1 request head, so that seeds
/// are plain upgrade requests: lines end with `\n` (a `\r` before it is
/// dropped); the first line is `METHOD TARGET VERSION`; each following line
/// up to the first empty one is `name: value` (split at the first `:`, one
/// space after it dropped; a line without `:` is a name with an empty value),
/// kept only if `HeaderName::from_bytes` and `HeaderValue::from_bytes` accept
/// both. Lines after the empty line are what the gateway knows besides the
/// request, in the same form: `service`, `request-id`, `connection-id`
/// (any bytes, replaced where not UTF-8) and `source-ip`.
pub fn decode_upgrade(data: &[u8]) -> Upgrade {
    let mut lines = data
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(|&byte| byte == b' ')
        .nth(1)
        .unwrap_or_default();
    let target = String::from_utf8_lossy(target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.into_owned(), None),
    };
    let split = |line: &'_ [u8]| -> (Vec<u8>, Vec<u8>) {
        match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (line[..colon].to_vec(), value.to_vec())
            }
            None => (line.to_vec(), Vec::new()),
        }
    };
    let mut headers = HeaderMap::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (name, value) = split(line);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    let mut upgrade = Upgrade {
        service: path.rsplit('/').next().unwrap_or_default().to_owned(),
        path,
        query,
        headers,
        request_id: "5f0c2a7e-3b1d-4c8e-9f6a-1d2e3f4a5b6c".to_owned(),
        connection_id: "b7f1e6d2-0c4a-4f3e-9a51-2d8c6e4f7a10".to_owned(),
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    for line in lines {
        let (name, value) = split(line);
        let value = String::from_utf8_lossy(&value).into_owned();
        match name.as_slice() {
            b"service" => upgrade.service = value,
            b"request-id" => upgrade.request_id = value,
            b"connection-id" => upgrade.connection_id = value,
            b"source-ip" => {
                if let Ok(ip) = value.parse() {
                    upgrade.source_ip = ip;
                }
            }
            _ => {}
        }
    }
    upgrade
}

/// Input: see [`decode_upgrade`]. The `headers` field has one entry per
/// header name, lower-case, with the values in order joined by `, `; the
/// query has at most one key per `&`-separated part and survives a round
/// trip (form-encoded again, then parsed); the event is JSON that keeps
/// every given field, the connection id above all.
pub fn connecting_event_from(data: &[u8]) {
    let upgrade = decode_upgrade(data);
    let headers = header_fields(&upgrade.headers);
    assert_eq!(headers.len(), upgrade.headers.keys_len());
    for (name, value) in &headers {
        assert!(
            !name.bytes().any(|byte| byte.is_ascii_uppercase()),
            "{name:?}"
        );
        let values: Vec<String> = upgrade
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        assert_eq!(*value, values.join(", "));
    }
    assert!(query_fields(None).is_empty());
    let query = query_fields(upgrade.query.as_deref());
    let parts = upgrade.query.as_deref().map_or(0, |q| q.split('&').count());
    assert!(
        query.len() <= parts,
        "{} keys from {parts} parts",
        query.len()
    );
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    assert_eq!(
        query_fields(Some(&encoded)),
        query,
        "the query did not survive a round trip through {encoded:?}"
    );

    let event = connecting_event(&ConnectingRequest {
        service: &upgrade.service,
        path: &upgrade.path,
        request_id: &upgrade.request_id,
        connection_id: &upgrade.connection_id,
        source_ip: upgrade.source_ip,
        headers: headers.clone(),
        query: query.clone(),
    });
    let event: Value = serde_json::from_str(&event).expect("the connecting event is JSON");
    let websocket = &event["websocket"];
    assert_eq!(websocket["action"], "connecting");
    assert_eq!(
        websocket["secConnectionID"].as_str(),
        Some(upgrade.connection_id.as_str()),
        "the connection id was not kept"
    );
    assert_eq!(
        websocket["secWebSocketProtocol"].as_str(),
        headers.get("sec-websocket-protocol").map(String::as_str)
    );
    assert_eq!(
        websocket["secWebSocketExtensions"].as_str(),
        headers.get("sec-websocket-extensions").map(String::as_str)
    );
    let context = &event["requestContext"];
    assert_eq!(
        context["serviceName"].as_str(),
        Some(upgrade.service.as_str())
    );
    assert_eq!(context["path"].as_str(), Some(upgrade.path.as_str()));
    assert_eq!(
        context["requestId"].as_str(),
        Some(upgrade.request_id.as_str())
    );
    assert_eq!(
        context["sourceIp"].as_str().map(str::parse::<IpAddr>),
        Some(Ok(upgrade.source_ip))
    );
    let event_headers: BTreeMap<String, String> =
        serde_json::from_value(event["headers"].clone()).expect("headers are strings");
    assert_eq!(event_headers, headers);
    let event_query: BTreeMap<String, String> =
        serde_json::from_value(event["queryString"].clone()).expect("the query is strings");
    assert_eq!(event_query, query);
}

// --- core_module ----------------------------------------------------------

/// Core modules with exactly the imports and exports of the handler world
/// (every host function imported), in the legacy names that handlers built
/// by hand use and in the standard `cm32p2` names.
pub fn handler_shapes() -> &'static [Vec<u8>; 2] {
    static SHAPES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let mut resolve = wit_parser::Resolve::default();
        let package = resolve
            .push_str("gateway.wit", include_str!("../../wit/gateway.wit"))
            .expect("the gateway's WIT parses");
        let world = resolve
            .select_world(&[package], Some("handler"))
            .expect("the WIT has the handler world");
        [
            wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
            wit_parser::ManglingAndAbi::Standard32,
        ]
        .map(|mangling| wit_component::dummy_module(&resolve, world, mangling))
    })
}

/// Decodes a core-module input. The first byte picks how the rest is used:
///
/// - `0` (mod 4): the rest is the module, as is (any bytes);
/// - `1`: the rest drives `wasm_smith::Config::arbitrary` and then
///   `wasm_smith::Module::new` (any module wasm-smith can make, within the
///   sizes of [`small`]);
/// - `2`: the rest drives a `wasm_smith::Module` shaped like a handler
///   (`module_shape`: exactly the handler world's imports and exports, legacy
///   or standard names by the next byte, random bodies);
/// - `3`: like `2`, but imports are a random subset of the host functions
///   (`available_imports`) and the exports are the handler's (`exports`).
///
/// Modes 1 to 3 cap the module's size ([`small`]). `None` when wasm-smith
/// runs out of input before making a module.
pub fn decode_core_module(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    let mut u = Unstructured::new(rest);
    let config = match mode % 4 {
        0 => return Some(rest.to_vec()),
        1 => wasm_smith::Config::arbitrary(&mut u).ok()?,
        shaped => {
            let shape = handler_shapes()[usize::from(u.arbitrary::<bool>().ok()?)].clone();
            let mut config = wasm_smith::Config {
                max_memories: 1,
                max_tables: 2,
                ..wasm_smith::Config::default()
            };
            if shaped == 2 {
                config.module_shape = Some(shape);
            } else {
                config.available_imports = Some(shape.clone());
                config.exports = Some(shape);
            }
            config
        }
    };
    let module = wasm_smith::Module::new(small(config), &mut u).ok()?;
    Some(module.to_bytes())
}

/// Caps the sizes of a wasm-smith configuration: a few dozen functions of
/// ten instructions or so. The wrapper looks at imports, exports and types
/// and validates the bodies; thousands of instructions per module would
/// mostly cost generation time (most of an execution, more than `wrap`).
fn small(mut config: wasm_smith::Config) -> wasm_smith::Config {
    let cap = |value: &mut usize, max: usize| *value = (*value).min(max);
    cap(&mut config.max_funcs, 40);
    cap(&mut config.max_instructions, 10);
    cap(&mut config.max_types, 40);
    cap(&mut config.max_imports, 40);
    cap(&mut config.max_exports, 40);
    cap(&mut config.max_globals, 16);
    cap(&mut config.max_tags, 8);
    cap(&mut config.max_data_segments, 8);
    cap(&mut config.max_element_segments, 8);
    cap(&mut config.max_elements, 16);
    cap(&mut config.max_memories, 2);
    cap(&mut config.max_tables, 2);
    config
}

/// Input: see [`decode_core_module`]. `is_core_module` holds for every
/// module wasm-smith makes, and `wrap` answers Ok only for a core module,
/// with a component whose sections parse, and Err otherwise: never a panic.
pub fn core_module_from(data: &[u8]) {
    let Some(module) = decode_core_module(data) else {
        return;
    };
    let is_core = core_module::is_core_module(&module);
    if !data[0].is_multiple_of(4) {
        assert!(
            is_core,
            "wasm-smith made something that is not a core module"
        );
    }
    match core_module::wrap(&module) {
        Ok(component) => {
            assert!(is_core, "a non-core module was wrapped");
            assert!(wasmparser::Parser::is_component(&component));
            // Read through, not validated: validating the component cost
            // as much as wrapping it, and the million executions of this
            // target are the point (FUZZING.md).
            for payload in wasmparser::Parser::new(0).parse_all(&component) {
                if let Err(error) = payload {
                    panic!("the wrapped component does not parse: {error}");
                }
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

// --- http_answer ----------------------------------------------------------

/// Headers the gateway sets itself, which an answer never carries through.
const GATEWAY_SET_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Input: the `http` role's answer (not UTF-8: replaced). Deterministic; an
/// accepted answer has a status from 200 to 599, no header the gateway sets
/// itself, the body the JSON says (Base64-decoded when `isBase64Encoded`);
/// **round trip**: the answer written back as an integration response (every
/// header as a list, the body in Base64) parses to the same headers, in the
/// same order per name, status and body.
pub fn http_answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = IntegrationResponse::parse(&text);
    assert_eq!(
        first,
        IntegrationResponse::parse(&text),
        "not deterministic"
    );
    let Ok(answer) = first else { return };
    assert!((200..=599).contains(&answer.status.as_u16()));
    for (name, _) in &answer.headers {
        assert!(
            !GATEWAY_SET_HEADERS.contains(&name.as_str()),
            "{name} passed"
        );
    }
    let json: Value = serde_json::from_str(&text).expect("an accepted answer is JSON");
    match (
        &json["body"],
        json["isBase64Encoded"].as_bool() == Some(true),
    ) {
        (Value::String(body), true) => assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("accepted Base64"),
            answer.body
        ),
        (Value::String(body), false) => assert_eq!(body.as_bytes(), answer.body),
        (_, _) => assert!(answer.body.is_empty()),
    }
    let by_name = |headers: &[(HeaderName, HeaderValue)]| {
        let mut names: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (name, value) in headers {
            names
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.as_bytes().to_vec());
        }
        names
    };
    let headers = by_name(&answer.headers);
    let written: Map<String, Value> = headers
        .iter()
        .map(|(name, values)| {
            let values = values
                .iter()
                .map(|value| Value::String(String::from_utf8(value.clone()).expect("sendable")))
                .collect();
            (name.clone(), Value::Array(values))
        })
        .collect();
    let again = json!({
        "statusCode": answer.status.as_u16(),
        "headers": written,
        "isBase64Encoded": true,
        "body": base64::engine::general_purpose::STANDARD.encode(&answer.body),
    });
    let again = IntegrationResponse::parse(&again.to_string()).expect("the written answer parses");
    assert_eq!(again.status, answer.status);
    assert_eq!(again.body, answer.body);
    assert_eq!(by_name(&again.headers), headers);
}

// --- cron -----------------------------------------------------------------

/// Times each accepted expression's next tick is computed after: the epoch,
/// 2001, 2026, a leap day, the last second of 2099, before the epoch.
const CRON_FROM: [i64; 6] = [
    0,
    1_000_000_000,
    1_767_225_599,
    1_709_164_800,
    4_102_444_799,
    -1,
];

/// Input: a cron expression (not UTF-8: replaced; at most 200 bytes).
/// Deterministic; a refusal names a field or the field count; each next
/// tick after the times above is strictly later, in 1970-2099, lands on a
/// second that converts to the same civil time and back, and is the next
/// tick after any time between the start and itself (the one before it and
/// half-way there).
pub fn cron(data: &[u8]) {
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]);
    let first = Cron::parse(&text);
    let second = Cron::parse(&text);
    let cron = match (first, second) {
        (Ok(cron), Ok(_)) => cron,
        (Err(first), Err(second)) => {
            let message = first.to_string();
            assert_eq!(message, second.to_string(), "not deterministic");
            assert!(!message.is_empty());
            return;
        }
        (first, second) => panic!("not deterministic: {first:?} then {second:?}"),
    };
    for from in CRON_FROM {
        let Some(next) = cron.next_after(from) else {
            continue;
        };
        assert!(next > from, "{text:?}: {next} is not after {from}");
        let civil = CivilTime::from_unix(next);
        assert!((1970..=2099).contains(&civil.year), "{text:?}: {civil}");
        assert_eq!(civil.to_unix(), next, "{text:?}: {civil}");
        for between in [next - 1, from + (next - from) / 2] {
            if between >= from {
                assert_eq!(
                    cron.next_after(between),
                    Some(next),
                    "{text:?}: after {between}, between {from} and {next}"
                );
            }
        }
    }
}
