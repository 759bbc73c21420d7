//! The events the gateway sends handlers, one per [`Role`]: *connecting*
//! (register), *data send* (transfer) and *closing* (cleanup), as
//! `docs/protocol.md` §1, §3 and §4 spell them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{json, Map};

use super::{CloseReason, Payload, BASE64};

/// The role a handler is called in: one of the three moments of a
/// connection's life, or one of the model's other two triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A client asks to connect.
    Register,
    /// A client sent a message.
    Transfer,
    /// A connection ended.
    Cleanup,
    /// An HTTP request to `/http/<service>/...` (the API trigger).
    Http,
    /// A timer of the service fired.
    Timer,
}

impl Role {
    /// All roles: the connection's, in lifecycle order, then the triggers.
    pub const ALL: [Role; 5] = [
        Role::Register,
        Role::Transfer,
        Role::Cleanup,
        Role::Http,
        Role::Timer,
    ];

    /// The roles of a WebSocket connection's life: what a service must be
    /// ready for before it accepts a client.
    pub const WEBSOCKET: [Role; 3] = [Role::Register, Role::Transfer, Role::Cleanup];

    /// The lower-case name, as in role file names and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Register => "register",
            Role::Transfer => "transfer",
            Role::Cleanup => "cleanup",
            Role::Http => "http",
            Role::Timer => "timer",
        }
    }

    /// The role whose event has this `websocket.action`.
    pub fn of_action(action: &str) -> Option<Self> {
        match action {
            "connecting" => Some(Role::Register),
            "data send" => Some(Role::Transfer),
            "closing" => Some(Role::Cleanup),
            _ => None,
        }
    }

    /// The role an event JSON is for: its `websocket.action`, a timer
    /// event's `"Type": "Timer"`, or an integration request's
    /// `httpMethod` (with no `websocket`). `None` for anything else.
    pub fn of_event(event: &serde_json::Value) -> Option<Self> {
        if let Some(action) = event.pointer("/websocket/action") {
            return action.as_str().and_then(Self::of_action);
        }
        if event.get("Type").and_then(serde_json::Value::as_str) == Some("Timer") {
            return Some(Role::Timer);
        }
        event
            .get("httpMethod")
            .and_then(serde_json::Value::as_str)
            .map(|_| Role::Http)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway knows about an upgrade request when it builds the
/// *connecting* event.
#[derive(Debug, Clone)]
pub struct ConnectingRequest<'a> {
    /// The service addressed.
    pub service: &'a str,
    /// The request path, e.g. `/ws/chat`.
    pub path: &'a str,
    /// This call's request id.
    pub request_id: &'a str,
    /// The new connection's id.
    pub connection_id: &'a str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// Upgrade request headers, names lower-case.
    pub headers: BTreeMap<String, String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
}

/// Builds the *connecting* event for the register handler.
pub fn connecting_event(request: &ConnectingRequest<'_>) -> String {
    let mut websocket = Map::new();
    websocket.insert("action".into(), "connecting".into());
    websocket.insert("secConnectionID".into(), request.connection_id.into());
    if let Some(protocol) = request.headers.get("sec-websocket-protocol") {
        websocket.insert("secWebSocketProtocol".into(), protocol.as_str().into());
    }
    if let Some(extensions) = request.headers.get("sec-websocket-extensions") {
        websocket.insert("secWebSocketExtensions".into(), extensions.as_str().into());
    }
    json!({
        "requestContext": {
            "serviceName": request.service,
            "path": request.path,
            "httpMethod": "GET",
            "requestId": request.request_id,
            "identity": {},
            "sourceIp": request.source_ip.to_string(),
            "stage": "release",
            "websocketEnable": true,
        },
        "websocket": websocket,
        "headers": request.headers,
        "queryString": request.query,
    })
    .to_string()
}

/// Builds the *data send* event for the transfer handler. Serialized from
/// borrowed fields (keys in the same sorted order as the other events), as
/// it is built for every client message. `attributes` (compact JSON of an
/// object) become the top-level `attributes` field.
pub fn data_send_event(connection_id: &str, payload: &Payload, attributes: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Event<'a> {
        websocket: DataSend<'a>,
    }
    #[derive(serde::Serialize)]
    struct DataSend<'a> {
        action: &'static str,
        data: &'a str,
        #[serde(rename = "dataType")]
        data_type: &'static str,
        #[serde(rename = "secConnectionID")]
        connection_id: &'a str,
    }
    let (data_type, data) = match payload {
        Payload::Text(text) => ("text", std::borrow::Cow::Borrowed(text.as_str())),
        Payload::Binary(bytes) => ("binary", std::borrow::Cow::Owned(BASE64.encode(bytes))),
    };
    let event = serde_json::to_string(&Event {
        websocket: DataSend {
            action: "data send",
            data: &data,
            data_type,
            connection_id,
        },
    })
    .expect("an event of strings serializes");
    with_attributes(event, attributes)
}

/// `event` (a JSON object whose first key sorts after `attributes`) with
/// `"attributes": <attributes>` as its first field. The attributes are
/// already checked compact JSON, so they are spliced in, not re-serialized.
fn with_attributes(event: String, attributes: Option<&str>) -> String {
    match attributes {
        None => event,
        Some(attributes) => {
            let mut spliced = String::with_capacity(event.len() + attributes.len() + 16);
            spliced.push_str("{\"attributes\":");
            spliced.push_str(attributes);
            spliced.push(',');
            spliced.push_str(&event[1..]);
            spliced
        }
    }
}

/// Builds the *closing* event for the cleanup handler, with the
/// connection's last `attributes` as its top-level `attributes` field.
pub fn closing_event(
    connection_id: &str,
    reason: CloseReason,
    client_code: Option<u16>,
    attributes: Option<&str>,
) -> String {
    let mut websocket = Map::new();
    websocket.insert("action".into(), "closing".into());
    websocket.insert("secConnectionID".into(), connection_id.into());
    websocket.insert("closeReason".into(), reason.as_str().into());
    if let Some(code) = client_code {
        websocket.insert("closeCode".into(), code.into());
    }
    with_attributes(json!({ "websocket": websocket }).to_string(), attributes)
}

/// The `headers` field of the *connecting* event: the upgrade request's
/// headers by lower-case name, a repeated header's values joined with `, `,
/// bytes that are not UTF-8 replaced.
pub fn header_fields(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

/// The `queryString` field of the *connecting* event: the query parameters,
/// percent-decoded; of a repeated key, the last value.
pub fn query_fields(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::Value;

    #[test]
    fn events_carry_exact_field_names() {
        let event: Value = serde_json::from_str(&data_send_event(
            "id",
            &Payload::Binary(Bytes::from_static(b"\xff")),
            None,
        ))
        .unwrap();
        assert!(event.get("attributes").is_none());
        assert_eq!(event["websocket"]["action"], "data send");
        assert_eq!(event["websocket"]["secConnectionID"], "id");
        assert_eq!(event["websocket"]["dataType"], "binary");
        assert_eq!(event["websocket"]["data"], "/w==");
        let closing: Value =
            serde_json::from_str(&closing_event("id", CloseReason::Client, Some(1000), None))
                .unwrap();
        assert_eq!(closing["websocket"]["closeReason"], "client");
        assert_eq!(closing["websocket"]["closeCode"], 1000);
        let attributes = r#"{"room":"lobby","n":[1,2]}"#;
        for event in [
            data_send_event("id", &Payload::Text("hi".into()), Some(attributes)),
            closing_event("id", CloseReason::Server, None, Some(attributes)),
        ] {
            let event: Value = serde_json::from_str(&event).unwrap();
            assert_eq!(event["attributes"]["room"], "lobby");
            assert_eq!(event["attributes"]["n"][1], 2);
            assert_eq!(event["websocket"]["secConnectionID"], "id");
        }
    }

    #[test]
    fn each_action_names_its_role() {
        for role in Role::WEBSOCKET {
            let action = match role {
                Role::Register => "connecting",
                Role::Transfer => "data send",
                _ => "closing",
            };
            assert_eq!(Role::of_action(action), Some(role));
        }
        assert_eq!(Role::of_action("dance"), None);
    }

    #[test]
    fn each_event_kind_names_its_role() {
        let role = |json: &str| Role::of_event(&serde_json::from_str(json).unwrap());
        assert_eq!(
            role(r#"{"websocket":{"action":"closing","secConnectionID":"a"}}"#),
            Some(Role::Cleanup)
        );
        assert_eq!(role(r#"{"websocket":{"action":"dance"}}"#), None);
        assert_eq!(
            role(r#"{"Type":"Timer","TriggerName":"t","Time":"2019-02-21T11:49:00Z"}"#),
            Some(Role::Timer)
        );
        assert_eq!(
            role(r#"{"httpMethod":"GET","path":"/","requestContext":{}}"#),
            Some(Role::Http)
        );
        assert_eq!(role(r#"{"Type":"Queue"}"#), None);
    }
}
