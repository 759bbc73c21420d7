//! The three events of the gateway contract, typed: *connecting* (to register),
//! *data send* (to transfer) and *closing* (to cleanup).
//!
//! Field names on the wire are the contract's (`secConnectionID`, `dataType`,
//! ...); in Rust they are snake case. Unknown fields are ignored, so a handler
//! keeps working when the gateway adds fields to an event.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{EventError, Payload};

/// Standard Base64, as the contract requires for binary data.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads an event: a JSON object (serde would also fill a struct whose
/// fields all have defaults from an array, which no event is).
pub(crate) fn from_json<T: DeserializeOwned>(
    event: &'static str,
    json: &str,
) -> Result<T, EventError> {
    if !json.trim_start().starts_with('{') {
        return Err(EventError::Json {
            event,
            source: <serde_json::Error as serde::de::Error>::custom(
                "the event is not a JSON object",
            ),
        });
    }
    serde_json::from_str(json).map_err(|source| EventError::Json { event, source })
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These types hold only strings, numbers and string-keyed maps, which
    // always serialize.
    serde_json::to_string(value).expect("event types always serialize to JSON")
}

/// The *connecting* event: a client asks to upgrade to a WebSocket. The
/// register handler answers it with a [`Registration`](crate::Registration).
///
/// ```
/// use wasmgate_guest::Connecting;
///
/// let event = Connecting::from_json(r#"{
///     "requestContext": {"serviceName": "chat", "path": "/chat", "sourceIp": "127.0.0.1"},
///     "websocket": {
///         "action": "connecting",
///         "secConnectionID": "q83vEjRWeJq83vEjRWeJqw==",
///         "secWebSocketProtocol": "chat, binary"
///     },
///     "headers": {"user-agent": "test"},
///     "queryString": {"token": "abc"}
/// }"#)?;
///
/// assert_eq!(event.connection_id(), "q83vEjRWeJq83vEjRWeJqw==");
/// assert_eq!(event.protocols().collect::<Vec<_>>(), ["chat", "binary"]);
/// assert_eq!(event.query("token"), Some("abc"));
/// assert_eq!(event.header("User-Agent"), Some("test"));
/// assert_eq!(event.request_context.source_ip, "127.0.0.1");
/// # Ok::<(), wasmgate_guest::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connecting {
    /// Where the request came from and what it addressed.
    #[serde(rename = "requestContext", default)]
    pub request_context: RequestContext,
    /// The WebSocket part of the event.
    pub websocket: ConnectingWebSocket,
    /// The upgrade request's headers, names in lower case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The upgrade request's query parameters.
    #[serde(rename = "queryString", default)]
    pub query_string: BTreeMap<String, String>,
}

impl Connecting {
    /// Reads the event from its JSON.
    ///
    /// ```
    /// let event = wasmgate_guest::Connecting::from_json(
    ///     r#"{"websocket":{"action":"connecting","secConnectionID":"id"}}"#,
    /// )?;
    /// assert!(event.query_string.is_empty());
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        from_json("connecting", json)
    }

    /// The id the new connection will have (`secConnectionID`).
    ///
    /// ```
    /// # let event = wasmgate_guest::Connecting::from_json(
    /// #     r#"{"websocket":{"action":"connecting","secConnectionID":"id"}}"#).unwrap();
    /// assert_eq!(event.connection_id(), "id");
    /// ```
    pub fn connection_id(&self) -> &str {
        &self.websocket.sec_connection_id
    }

    /// The sub-protocols the client offered, in its order of preference.
    ///
    /// ```
    /// use wasmgate_guest::{Connecting, Registration};
    ///
    /// let event = Connecting::from_json(r#"{"websocket":{"action":"connecting",
    ///     "secConnectionID":"id","secWebSocketProtocol":"v2.chat, v1.chat"}}"#)?;
    /// let answer = match event.protocols().find(|p| p.starts_with("v2.")) {
    ///     Some(protocol) => Registration::accept_protocol(protocol),
    ///     None => Registration::refuse(4000, "only v2 clients are served"),
    /// };
    /// assert!(answer.is_accept());
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.websocket
            .sec_websocket_protocol
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|protocol| !protocol.is_empty())
    }

    /// A query parameter of the upgrade request.
    ///
    /// ```
    /// # let event = wasmgate_guest::Connecting::from_json(r#"{"websocket":{"action":"connecting",
    /// #     "secConnectionID":"id"},"queryString":{"room":"42"}}"#).unwrap();
    /// assert_eq!(event.query("room"), Some("42"));
    /// assert_eq!(event.query("user"), None);
    /// ```
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string.get(name).map(String::as_str)
    }

    /// A header of the upgrade request; the name is matched case-insensitively.
    ///
    /// ```
    /// # let event = wasmgate_guest::Connecting::from_json(r#"{"websocket":{"action":"connecting",
    /// #     "secConnectionID":"id"},"headers":{"authorization":"Bearer t"}}"#).unwrap();
    /// assert_eq!(event.header("Authorization"), Some("Bearer t"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The `requestContext` of a [`Connecting`] event. Every field may be absent;
/// it is then empty.
///
/// ```
/// let context: wasmgate_guest::RequestContext =
///     serde_json::from_str(r#"{"serviceName":"chat","httpMethod":"GET"}"#)?;
/// assert_eq!(context.service_name, "chat");
/// assert_eq!(context.path, "");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestContext {
    /// The service addressed.
    #[serde(rename = "serviceName")]
    pub service_name: String,
    /// The request path, e.g. `/chat`.
    pub path: String,
    /// The HTTP method of the upgrade request (`GET`).
    #[serde(rename = "httpMethod")]
    pub http_method: String,
    /// The request id of this call.
    #[serde(rename = "requestId")]
    pub request_id: String,
    /// Caller identity; empty unless the gateway authenticates clients.
    pub identity: serde_json::Map<String, serde_json::Value>,
    /// The client's IP address.
    #[serde(rename = "sourceIp")]
    pub source_ip: String,
    /// The deployment stage (`release`).
    pub stage: String,
    /// Always `true` for WebSocket requests.
    #[serde(rename = "websocketEnable")]
    pub websocket_enable: bool,
}

/// The `websocket` part of a [`Connecting`] event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectingWebSocket {
    /// Always `connecting`.
    #[serde(default)]
    pub action: String,
    /// The id the new connection will have.
    #[serde(rename = "secConnectionID")]
    pub sec_connection_id: String,
    /// The `Sec-WebSocket-Protocol` header, when the client sent one: a comma
    /// separated list (see [`Connecting::protocols`]).
    #[serde(
        rename = "secWebSocketProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sec_websocket_protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` header, when the client sent one.
    #[serde(
        rename = "secWebSocketExtensions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sec_websocket_extensions: Option<String>,
}

/// The *data send* event: a client sent a message. It has the same shape as a
/// reverse-push request that delivers a message, so [`DataSend::new`] also
/// builds requests for [`route`](crate::route).
///
/// ```
/// use wasmgate_guest::{DataSend, Payload};
///
/// let event = DataSend::from_json(r#"{"websocket":{"action":"data send",
///     "secConnectionID":"id","dataType":"binary","data":"AAEC"}}"#)?;
/// assert_eq!(event.connection_id(), "id");
/// assert_eq!(event.payload()?, Payload::Binary(vec![0, 1, 2]));
///
/// let request = DataSend::new("other-id", "hello").to_json();
/// assert_eq!(
///     request,
///     r#"{"websocket":{"action":"data send","secConnectionID":"other-id","dataType":"text","data":"hello"}}"#,
/// );
/// # Ok::<(), wasmgate_guest::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSend {
    /// The attributes the connection's register answer (or a later
    /// [`set_attributes`](crate::set_attributes)) attached: a JSON object,
    /// absent when none were set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
    /// The WebSocket part of the event.
    pub websocket: DataSendWebSocket,
}

impl DataSend {
    /// Reads the event from its JSON.
    ///
    /// ```
    /// let event = wasmgate_guest::DataSend::from_json(
    ///     r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"text","data":"hi"}}"#,
    /// )?;
    /// assert_eq!(event.as_text(), Some("hi"));
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        from_json("data send", json)
    }

    /// A *data send* message for a connection: text stays text, bytes are
    /// Base64-encoded with `dataType` `binary`.
    ///
    /// ```
    /// use wasmgate_guest::{DataSend, DataType};
    ///
    /// let message = DataSend::new("id", vec![0xff]);
    /// assert_eq!(message.websocket.data_type, DataType::Binary);
    /// assert_eq!(message.websocket.data, "/w==");
    /// ```
    pub fn new(connection_id: impl Into<String>, payload: impl Into<Payload>) -> Self {
        let (data_type, data) = match payload.into() {
            Payload::Text(text) => (DataType::Text, text),
            Payload::Binary(bytes) => (DataType::Binary, BASE64.encode(bytes)),
        };
        Self {
            attributes: None,
            websocket: DataSendWebSocket {
                action: "data send".to_owned(),
                sec_connection_id: connection_id.into(),
                data_type,
                data,
            },
        }
    }

    /// The connection that sent the message (`secConnectionID`).
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::DataSend::new("id", "hi").connection_id(), "id");
    /// ```
    pub fn connection_id(&self) -> &str {
        &self.websocket.sec_connection_id
    }

    /// Whether the message arrived in a binary frame.
    ///
    /// ```
    /// assert!(wasmgate_guest::DataSend::new("id", vec![1]).is_binary());
    /// ```
    pub fn is_binary(&self) -> bool {
        self.websocket.data_type == DataType::Binary
    }

    /// The text of a text message; `None` for a binary message.
    ///
    /// ```
    /// use wasmgate_guest::DataSend;
    ///
    /// assert_eq!(DataSend::new("id", "hi").as_text(), Some("hi"));
    /// assert_eq!(DataSend::new("id", vec![1]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self.websocket.data_type {
            DataType::Text => Some(&self.websocket.data),
            DataType::Binary => None,
        }
    }

    /// The message body, with binary data decoded from Base64.
    ///
    /// ```
    /// use wasmgate_guest::{DataSend, Payload};
    ///
    /// assert_eq!(DataSend::new("id", vec![7, 8]).payload()?, Payload::Binary(vec![7, 8]));
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn payload(&self) -> Result<Payload, EventError> {
        Ok(match self.websocket.data_type {
            DataType::Text => Payload::Text(self.websocket.data.clone()),
            DataType::Binary => Payload::Binary(BASE64.decode(&self.websocket.data)?),
        })
    }

    /// The message body, consuming the event; binary data is decoded from
    /// Base64.
    ///
    /// ```
    /// use wasmgate_guest::{DataSend, Payload};
    ///
    /// assert_eq!(DataSend::new("id", "hi").into_payload()?, Payload::Text("hi".into()));
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn into_payload(self) -> Result<Payload, EventError> {
        Ok(match self.websocket.data_type {
            DataType::Text => Payload::Text(self.websocket.data),
            DataType::Binary => Payload::Binary(BASE64.decode(self.websocket.data)?),
        })
    }

    /// The event as JSON, e.g. as a request for [`route`](crate::route).
    ///
    /// ```
    /// let json = wasmgate_guest::DataSend::new("id", "hi").to_json();
    /// assert!(json.contains(r#""dataType":"text""#));
    /// ```
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

/// The `websocket` part of a [`DataSend`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSendWebSocket {
    /// Always `data send`.
    #[serde(default)]
    pub action: String,
    /// The connection that sent the message, or that a request addresses.
    #[serde(rename = "secConnectionID")]
    pub sec_connection_id: String,
    /// Whether `data` is text or Base64-encoded bytes.
    #[serde(rename = "dataType", default)]
    pub data_type: DataType,
    /// The text, or the bytes in standard Base64 (see [`DataSend::payload`]).
    pub data: String,
}

/// How the `data` of a [`DataSend`] event is to be read.
///
/// ```
/// use wasmgate_guest::DataType;
///
/// assert_eq!(serde_json::to_string(&DataType::Binary)?, r#""binary""#);
/// assert_eq!(DataType::default(), DataType::Text);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// `data` is the text of a text frame.
    #[default]
    Text,
    /// `data` is the standard Base64 of a binary frame's bytes.
    Binary,
}

/// The *closing* event: a connection ended. The cleanup handler receives it
/// exactly once for every connection whose register succeeded. The same shape,
/// built with [`Closing::new`], is a reverse-push request that closes a
/// connection.
///
/// ```
/// use wasmgate_guest::{CloseReason, Closing};
///
/// let event = Closing::from_json(r#"{"websocket":{"action":"closing",
///     "secConnectionID":"id","closeReason":"client","closeCode":1000}}"#)?;
/// assert_eq!(event.connection_id(), "id");
/// assert_eq!(event.close_reason(), Some(&CloseReason::Client));
/// assert_eq!(event.close_code(), Some(1000));
/// # Ok::<(), wasmgate_guest::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// The attributes the connection's register answer (or a later
    /// [`set_attributes`](crate::set_attributes)) attached: a JSON object,
    /// absent when none were set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
    /// The WebSocket part of the event.
    pub websocket: ClosingWebSocket,
}

impl Closing {
    /// Reads the event from its JSON.
    ///
    /// ```
    /// let event = wasmgate_guest::Closing::from_json(
    ///     r#"{"websocket":{"action":"closing","secConnectionID":"id"}}"#,
    /// )?;
    /// assert_eq!(event.close_reason(), None);
    /// # Ok::<(), wasmgate_guest::EventError>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        from_json("closing", json)
    }

    /// A *closing* request for a connection.
    ///
    /// ```
    /// assert_eq!(
    ///     wasmgate_guest::Closing::new("id").to_json(),
    ///     r#"{"websocket":{"action":"closing","secConnectionID":"id"}}"#,
    /// );
    /// ```
    pub fn new(connection_id: impl Into<String>) -> Self {
        Self {
            attributes: None,
            websocket: ClosingWebSocket {
                action: "closing".to_owned(),
                sec_connection_id: connection_id.into(),
                close_reason: None,
                close_code: None,
            },
        }
    }

    /// The connection that ended (`secConnectionID`).
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Closing::new("id").connection_id(), "id");
    /// ```
    pub fn connection_id(&self) -> &str {
        &self.websocket.sec_connection_id
    }

    /// Why the connection ended, when the gateway says (`closeReason`).
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Closing::new("id").close_reason(), None);
    /// ```
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.websocket.close_reason.as_ref()
    }

    /// The close code the client sent, if it sent one (`closeCode`).
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Closing::new("id").close_code(), None);
    /// ```
    pub fn close_code(&self) -> Option<u16> {
        self.websocket.close_code
    }

    /// The event as JSON, e.g. as a request for [`route`](crate::route).
    ///
    /// ```
    /// let json = wasmgate_guest::Closing::new("id").to_json();
    /// assert!(json.contains(r#""action":"closing""#));
    /// ```
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

/// The `websocket` part of a [`Closing`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingWebSocket {
    /// Always `closing`.
    #[serde(default)]
    pub action: String,
    /// The connection that ended, or that a request addresses.
    #[serde(rename = "secConnectionID")]
    pub sec_connection_id: String,
    /// Why the connection ended.
    #[serde(
        rename = "closeReason",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub close_reason: Option<CloseReason>,
    /// The close code the client sent, if any.
    #[serde(rename = "closeCode", default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
}

/// Why a connection ended, as the gateway reports it in `closeReason`.
///
/// A reason this version does not know is kept as [`CloseReason::Other`].
///
/// ```
/// use wasmgate_guest::CloseReason;
///
/// assert_eq!(CloseReason::from("idle"), CloseReason::Idle);
/// assert_eq!(CloseReason::from("eclipse").as_str(), "eclipse");
/// assert_eq!(CloseReason::Shutdown.to_string(), "shutdown");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CloseReason {
    /// The client closed the connection or went away.
    Client,
    /// A reverse push or a host call closed it.
    Server,
    /// The idle timeout fired.
    Idle,
    /// A transfer failed, the protocol was broken or a limit was exceeded.
    Error,
    /// The gateway or the service is shutting down.
    Shutdown,
    /// Cluster mode: the connection's node crashed or lost its lease; a
    /// surviving node runs this cleanup (at least once: the connection id
    /// is the idempotency key).
    NodeLost,
    /// A reason this version of the SDK does not know.
    Other(String),
}

impl CloseReason {
    /// The reason as spelled on the wire.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::CloseReason::Client.as_str(), "client");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Server => "server",
            CloseReason::Idle => "idle",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::NodeLost => "node_lost",
            CloseReason::Other(other) => other,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for CloseReason {
    fn from(reason: &str) -> Self {
        match reason {
            "client" => CloseReason::Client,
            "server" => CloseReason::Server,
            "idle" => CloseReason::Idle,
            "error" => CloseReason::Error,
            "shutdown" => CloseReason::Shutdown,
            "node_lost" => CloseReason::NodeLost,
            other => CloseReason::Other(other.to_owned()),
        }
    }
}

impl From<String> for CloseReason {
    fn from(reason: String) -> Self {
        match CloseReason::from(reason.as_str()) {
            CloseReason::Other(_) => CloseReason::Other(reason),
            known => known,
        }
    }
}

impl From<CloseReason> for String {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::Other(other) => other,
            known => known.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The connecting example of docs/protocol.md, plus the additive fields.
    const CONNECTING: &str = r#"{
      "requestContext": {
        "serviceName": "chat",
        "path": "/chat",
        "httpMethod": "GET",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "identity": {},
        "sourceIp": "127.0.0.1",
        "stage": "release",
        "websocketEnable": true
      },
      "websocket": {
        "action": "connecting",
        "secConnectionID": "q83vEjRWeJq83vEjRWeJqw==",
        "secWebSocketProtocol": "chat, binary",
        "secWebSocketExtensions": "permessage-deflate"
      },
      "headers": {"sec-websocket-protocol": "chat, binary", "x-token": "t"},
      "queryString": {"room": "1"}
    }"#;

    #[test]
    fn reads_the_connecting_event() {
        let event = Connecting::from_json(CONNECTING).unwrap();
        assert_eq!(event.request_context.service_name, "chat");
        assert_eq!(event.request_context.path, "/chat");
        assert_eq!(event.request_context.http_method, "GET");
        assert_eq!(
            event.request_context.request_id,
            "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
        );
        assert_eq!(event.request_context.source_ip, "127.0.0.1");
        assert_eq!(event.request_context.stage, "release");
        assert!(event.request_context.websocket_enable);
        assert_eq!(event.websocket.action, "connecting");
        assert_eq!(event.connection_id(), "q83vEjRWeJq83vEjRWeJqw==");
        assert_eq!(event.protocols().collect::<Vec<_>>(), ["chat", "binary"]);
        assert_eq!(
            event.websocket.sec_websocket_extensions.as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(event.header("X-Token"), Some("t"));
        assert_eq!(event.query("room"), Some("1"));
    }

    #[test]
    fn connecting_event_needs_only_the_connection_id() {
        let event =
            Connecting::from_json(r#"{"websocket":{"secConnectionID":"id"},"somethingNew":[1,2]}"#)
                .unwrap();
        assert_eq!(event.connection_id(), "id");
        assert_eq!(event.protocols().count(), 0);
        assert!(event.headers.is_empty());
        assert_eq!(event.request_context, RequestContext::default());

        let missing = Connecting::from_json(r#"{"websocket":{}}"#).unwrap_err();
        assert!(missing.to_string().contains("secConnectionID"), "{missing}");
        assert!(Connecting::from_json("not json").is_err());
    }

    #[test]
    fn connecting_event_round_trips_with_wire_names() {
        let event = Connecting::from_json(CONNECTING).unwrap();
        let value: Value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value["websocket"]["secConnectionID"],
            "q83vEjRWeJq83vEjRWeJqw=="
        );
        assert_eq!(value["websocket"]["secWebSocketProtocol"], "chat, binary");
        assert_eq!(value["requestContext"]["serviceName"], "chat");
        assert_eq!(value["queryString"]["room"], "1");
        let back: Connecting = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);

        let bare = Connecting::from_json(r#"{"websocket":{"secConnectionID":"id"}}"#).unwrap();
        let value = serde_json::to_value(&bare).unwrap();
        assert!(value["websocket"].get("secWebSocketProtocol").is_none());
        assert!(value["websocket"].get("secWebSocketExtensions").is_none());
    }

    #[test]
    fn reads_text_and_binary_data_send_events() {
        let text = DataSend::from_json(
            r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"text","data":"hello"}}"#,
        )
        .unwrap();
        assert_eq!(text.as_text(), Some("hello"));
        assert!(!text.is_binary());
        assert_eq!(text.payload().unwrap(), Payload::Text("hello".into()));

        let binary = DataSend::from_json(
            r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"binary","data":"/wAB"}}"#,
        )
        .unwrap();
        assert!(binary.is_binary());
        assert_eq!(binary.as_text(), None);
        assert_eq!(
            binary.clone().into_payload().unwrap(),
            Payload::Binary(vec![0xff, 0x00, 0x01])
        );
        assert_eq!(binary.payload().unwrap().as_bytes(), [0xff, 0x00, 0x01]);
    }

    #[test]
    fn rejects_bad_base64_and_unknown_data_types() {
        let bad = DataSend::from_json(
            r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"binary","data":"***"}}"#,
        )
        .unwrap();
        assert!(matches!(bad.payload(), Err(EventError::Base64(_))));

        let unknown = DataSend::from_json(
            r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"xml","data":""}}"#,
        );
        assert!(matches!(
            unknown,
            Err(EventError::Json {
                event: "data send",
                ..
            })
        ));
    }

    #[test]
    fn data_send_builds_push_requests() {
        let text: Value = serde_json::from_str(&DataSend::new("a", "hi").to_json()).unwrap();
        assert_eq!(
            text,
            json!({"websocket":{"action":"data send","secConnectionID":"a","dataType":"text","data":"hi"}})
        );
        let binary: Value =
            serde_json::from_str(&DataSend::new("a", vec![0u8, 1, 2]).to_json()).unwrap();
        assert_eq!(
            binary,
            json!({"websocket":{"action":"data send","secConnectionID":"a","dataType":"binary","data":"AAEC"}})
        );
    }

    #[test]
    fn reads_closing_events_with_and_without_the_additive_fields() {
        let full = Closing::from_json(
            r#"{"websocket":{"action":"closing","secConnectionID":"id","closeReason":"idle","closeCode":4000}}"#,
        )
        .unwrap();
        assert_eq!(full.connection_id(), "id");
        assert_eq!(full.close_reason(), Some(&CloseReason::Idle));
        assert_eq!(full.close_code(), Some(4000));

        let bare =
            Closing::from_json(r#"{"websocket":{"action":"closing","secConnectionID":"id"}}"#)
                .unwrap();
        assert_eq!(bare.close_reason(), None);
        assert_eq!(bare.close_code(), None);
        assert_eq!(bare.to_json(), Closing::new("id").to_json());

        let future = Closing::from_json(
            r#"{"websocket":{"action":"closing","secConnectionID":"id","closeReason":"eviction"}}"#,
        )
        .unwrap();
        assert_eq!(
            future.close_reason(),
            Some(&CloseReason::Other("eviction".into()))
        );
    }

    #[test]
    fn close_reasons_keep_their_wire_spelling() {
        for reason in [
            "client",
            "server",
            "idle",
            "error",
            "shutdown",
            "node_lost",
            "other",
        ] {
            let parsed = CloseReason::from(reason);
            assert_eq!(parsed.as_str(), reason);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), json!(reason));
        }
        assert_eq!(CloseReason::from("server".to_owned()), CloseReason::Server);
    }
}
