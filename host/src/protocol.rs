//! The wire contract of PROTOCOL.md: event JSON sent to handlers, the register
//! answer, the reverse-push request, and the `errNo`/`errMsg` error table.
//!
//! Field names here are the seed model's (`secConnectionID`, `errNo`, ...) and
//! appear nowhere else in the code base.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Standard Base64, as PROTOCOL.md requires for binary data.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An error answered to a reverse-push caller or a handler's host call: an HTTP
/// status plus the `errNo`/`errMsg` pair. The numbers are listed in the README.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("errNo {code}: {message}")]
pub struct ApiError {
    /// HTTP status used when the error answers an HTTP request.
    pub status: StatusCode,
    /// The `errNo` value.
    pub code: i32,
    /// The `errMsg` value.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The request body is not JSON.
    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2001,
            format!("malformed JSON: {detail}"),
        )
    }

    /// A required field is missing or has the wrong type.
    pub fn missing_field(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2002,
            format!("missing or invalid field: {field}"),
        )
    }

    /// `websocket.action` is not `data send`, `data broadcast` or `closing`.
    pub fn unknown_action(action: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2003,
            format!(
                "unknown action: {action:?} (expected \"data send\", \"data broadcast\" or \"closing\")"
            ),
        )
    }

    /// `data` of a binary push is not standard Base64.
    pub fn bad_base64(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2004,
            format!("data is not valid Base64: {detail}"),
        )
    }

    /// `dataType` is neither `text` nor `binary`.
    pub fn unknown_data_type(data_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2005,
            format!("unknown dataType: {data_type:?} (expected \"text\" or \"binary\")"),
        )
    }

    /// The request or the message it carries is larger than allowed.
    pub fn payload_too_large(size: usize, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            2006,
            format!("payload of {size} bytes exceeds the limit of {limit} bytes"),
        )
    }

    /// The service requires a bearer token and none or a wrong one was given.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            2101,
            "missing or wrong bearer token",
        )
    }

    /// The service has no token and the caller is not on loopback.
    pub fn forbidden_remote() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            2102,
            "reverse push without push_token is only allowed from loopback",
        )
    }

    /// The administration routes are only open to loopback callers.
    pub fn forbidden_admin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            2103,
            "administration routes are only allowed from loopback",
        )
    }

    /// No service of that name is loaded.
    pub fn unknown_service(service: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            2201,
            format!("unknown service: {service}"),
        )
    }

    /// No live connection of this service has that id (also for ids of other
    /// services: they are never revealed).
    pub fn connection_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            2202,
            format!("no live connection {id} in this service"),
        )
    }

    /// The client reads too slowly; its outbound queue overflowed and it was closed.
    pub fn queue_full(id: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            2203,
            format!("outbound queue of connection {id} is full; the connection was closed"),
        )
    }

    /// The register handler failed: trap, time-out or malformed answer.
    pub fn register_failed() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            2302,
            "register handler failed",
        )
    }

    /// The service holds its maximum number of connections.
    pub fn too_many_connections(limit: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            2303,
            format!("service is at its connection limit of {limit}"),
        )
    }

    /// The gateway is shutting down and accepts no new connections.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            2304,
            "gateway is shutting down",
        )
    }

    /// The request is not a valid WebSocket upgrade.
    pub fn bad_upgrade(status: StatusCode, detail: impl std::fmt::Display) -> Self {
        Self::new(status, 2305, format!("bad WebSocket upgrade: {detail}"))
    }

    /// A refusal by the register handler, carrying its own `errNo`/`errMsg`.
    pub fn refused(code: i32, message: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// A key-value key is empty or longer than the limit.
    pub fn invalid_key(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2401,
            format!("invalid key: {detail}"),
        )
    }

    /// A key-value value is larger than the limit.
    pub fn value_too_large(size: usize, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            2402,
            format!("value of {size} bytes exceeds the limit of {limit} bytes"),
        )
    }

    /// The service holds its maximum number of keys.
    pub fn key_quota(limit: u64) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            2403,
            format!("service is at its key limit of {limit} (kv_max_keys)"),
        )
    }

    /// `increment` on a value that is not a decimal counter, or an overflow.
    pub fn not_a_counter(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            2404,
            format!("not a counter: {detail}"),
        )
    }

    /// The state store failed (disk full, I/O error, closed store).
    pub fn storage(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            2405,
            format!("state store failed: {detail}"),
        )
    }

    /// A group name is empty or longer than the limit.
    pub fn invalid_group(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2406,
            format!("invalid group: {detail}"),
        )
    }

    /// A connection is already in the maximum number of groups.
    pub fn too_many_groups(limit: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            2407,
            format!("connection is already in {limit} groups, the limit"),
        )
    }

    /// A host call that only exists inside a running gateway.
    pub fn no_gateway() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            2501,
            "not running inside a gateway",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "errNo": self.code, "errMsg": self.message })),
        )
            .into_response()
    }
}

/// The body of a successful reverse push.
pub fn ok_body() -> Value {
    json!({ "errNo": 0, "errMsg": "ok" })
}

/// A message for a client: text stays text, binary stays binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

impl Payload {
    /// Size of the message body in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(text) => text.len(),
            Payload::Binary(bytes) => bytes.len(),
        }
    }

    /// Whether the message body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed reverse-push request (or the same request made by a host call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRequest {
    /// `data send`: deliver a message.
    Send {
        /// The target connection.
        connection_id: String,
        /// What to deliver.
        payload: Payload,
    },
    /// `closing`: close the connection.
    Close {
        /// The target connection.
        connection_id: String,
    },
    /// `data broadcast` (a wasmgate addition): deliver a message to every
    /// member of a group.
    Broadcast {
        /// The group.
        group: String,
        /// What to deliver.
        payload: Payload,
        /// A member that does not get it (`exceptConnectionID`), usually the sender.
        except: Option<String>,
    },
}

impl PushRequest {
    /// Parses a reverse-push body. `max_message_bytes` bounds the delivered message.
    pub fn parse(body: &[u8], max_message_bytes: usize) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(ApiError::malformed_json)?;
        let websocket = value
            .get("websocket")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::missing_field("websocket"))?;
        let text_field = |name: &str| -> Result<&str, ApiError> {
            websocket
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::missing_field(&format!("websocket.{name}")))
        };
        let action = text_field("action")?;
        let payload = || -> Result<Payload, ApiError> {
            let data_type = websocket
                .get("dataType")
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ApiError::missing_field("websocket.dataType"))
                })
                .transpose()?
                .unwrap_or("text");
            let data = text_field("data")?;
            let payload = match data_type {
                "text" => Payload::Text(data.to_owned()),
                "binary" => Payload::Binary(Bytes::from(
                    BASE64.decode(data).map_err(ApiError::bad_base64)?,
                )),
                other => return Err(ApiError::unknown_data_type(other)),
            };
            if payload.len() > max_message_bytes {
                return Err(ApiError::payload_too_large(
                    payload.len(),
                    max_message_bytes,
                ));
            }
            Ok(payload)
        };
        match action {
            "closing" => Ok(PushRequest::Close {
                connection_id: text_field("secConnectionID")?.to_owned(),
            }),
            "data send" => Ok(PushRequest::Send {
                connection_id: text_field("secConnectionID")?.to_owned(),
                payload: payload()?,
            }),
            "data broadcast" => {
                let except = match websocket.get("exceptConnectionID") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(text_field("exceptConnectionID")?.to_owned()),
                };
                Ok(PushRequest::Broadcast {
                    group: text_field("group")?.to_owned(),
                    payload: payload()?,
                    except,
                })
            }
            other => Err(ApiError::unknown_action(other)),
        }
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
/// it is built for every client message.
pub fn data_send_event(connection_id: &str, payload: &Payload) -> String {
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
    serde_json::to_string(&Event {
        websocket: DataSend {
            action: "data send",
            data: &data,
            data_type,
            connection_id,
        },
    })
    .expect("an event of strings serializes")
}

/// Why a connection ended, as reported in `closeReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed or went away.
    Client,
    /// A reverse push or host call closed it.
    Server,
    /// The idle timeout fired.
    Idle,
    /// A transfer failed, the protocol was broken or a limit was exceeded.
    Error,
    /// The gateway or the service is shutting down.
    Shutdown,
}

impl CloseReason {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Server => "server",
            CloseReason::Idle => "idle",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Builds the *closing* event for the cleanup handler.
pub fn closing_event(connection_id: &str, reason: CloseReason, client_code: Option<u16>) -> String {
    let mut websocket = Map::new();
    websocket.insert("action".into(), "closing".into());
    websocket.insert("secConnectionID".into(), connection_id.into());
    websocket.insert("closeReason".into(), reason.as_str().into());
    if let Some(code) = client_code {
        websocket.insert("closeCode".into(), code.into());
    }
    json!({ "websocket": websocket }).to_string()
}

/// A register handler's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterAnswer {
    /// `errNo` 0: upgrade, optionally with this sub-protocol.
    Accept {
        /// The sub-protocol chosen by the handler.
        protocol: Option<String>,
    },
    /// `errNo` not 0: refuse with the handler's number and message.
    Refuse {
        /// The handler's `errNo`.
        code: i32,
        /// The handler's `errMsg`.
        message: String,
    },
}

/// Why a register answer could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed register answer: {0}")]
pub struct MalformedAnswer(pub String);

#[derive(Deserialize)]
struct RawRegisterAnswer {
    #[serde(rename = "errNo")]
    err_no: i64,
    #[serde(rename = "errMsg", default)]
    err_msg: Option<String>,
    #[serde(default)]
    websocket: Option<RawAnswerWebsocket>,
}

#[derive(Deserialize)]
struct RawAnswerWebsocket {
    #[serde(rename = "secWebSocketProtocol", default)]
    protocol: Option<String>,
}

impl RegisterAnswer {
    /// Parses the register handler's answer JSON.
    pub fn parse(answer: &str) -> Result<Self, MalformedAnswer> {
        let raw: RawRegisterAnswer =
            serde_json::from_str(answer).map_err(|e| MalformedAnswer(e.to_string()))?;
        let code = i32::try_from(raw.err_no)
            .map_err(|_| MalformedAnswer(format!("errNo {} out of range", raw.err_no)))?;
        if code != 0 {
            return Ok(RegisterAnswer::Refuse {
                code,
                message: raw.err_msg.unwrap_or_else(|| "refused".to_owned()),
            });
        }
        let protocol = raw
            .websocket
            .and_then(|w| w.protocol)
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        if let Some(protocol) = &protocol {
            if protocol.contains(',') {
                return Err(MalformedAnswer(format!(
                    "secWebSocketProtocol must be a single value, got {protocol:?}"
                )));
            }
        }
        Ok(RegisterAnswer::Accept { protocol })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_binary_pushes() {
        let text = br#"{"websocket":{"action":"data send","secConnectionID":"a","dataType":"text","data":"hi"}}"#;
        assert_eq!(
            PushRequest::parse(text, 10).unwrap(),
            PushRequest::Send {
                connection_id: "a".into(),
                payload: Payload::Text("hi".into())
            }
        );
        let binary = br#"{"websocket":{"action":"data send","secConnectionID":"a","dataType":"binary","data":"AAEC"}}"#;
        assert_eq!(
            PushRequest::parse(binary, 10).unwrap(),
            PushRequest::Send {
                connection_id: "a".into(),
                payload: Payload::Binary(Bytes::from_static(&[0, 1, 2]))
            }
        );
        let close = br#"{"websocket":{"action":"closing","secConnectionID":"a"}}"#;
        assert_eq!(
            PushRequest::parse(close, 10).unwrap(),
            PushRequest::Close {
                connection_id: "a".into()
            }
        );
        let broadcast = br#"{"websocket":{"action":"data broadcast","group":"room","exceptConnectionID":"a","data":"hi"}}"#;
        assert_eq!(
            PushRequest::parse(broadcast, 10).unwrap(),
            PushRequest::Broadcast {
                group: "room".into(),
                payload: Payload::Text("hi".into()),
                except: Some("a".into()),
            }
        );
    }

    #[test]
    fn names_each_push_problem() {
        let code = |body: &[u8]| PushRequest::parse(body, 4).unwrap_err().code;
        assert_eq!(code(b"{nope"), 2001);
        assert_eq!(code(br#"{"websocket":{"action":"closing"}}"#), 2002);
        assert_eq!(
            code(br#"{"websocket":{"action":"data broadcast","data":"x"}}"#),
            2002
        );
        assert_eq!(
            code(br#"{"websocket":{"action":"data broadcast","group":"g","data":"x","exceptConnectionID":7}}"#),
            2002
        );
        assert_eq!(
            code(br#"{"websocket":{"action":"dance","secConnectionID":"a"}}"#),
            2003
        );
        assert_eq!(
            code(br#"{"websocket":{"action":"data send","secConnectionID":"a","dataType":"binary","data":"***"}}"#),
            2004
        );
        assert_eq!(
            code(br#"{"websocket":{"action":"data send","secConnectionID":"a","dataType":"xml","data":""}}"#),
            2005
        );
        assert_eq!(
            code(
                br#"{"websocket":{"action":"data send","secConnectionID":"a","data":"too long"}}"#
            ),
            2006
        );
    }

    #[test]
    fn register_answers() {
        assert_eq!(
            RegisterAnswer::parse(
                r#"{"errNo":0,"errMsg":"ok","websocket":{"secWebSocketProtocol":"chat"}}"#
            ),
            Ok(RegisterAnswer::Accept {
                protocol: Some("chat".into())
            })
        );
        assert_eq!(
            RegisterAnswer::parse(r#"{"errNo":7,"errMsg":"no"}"#),
            Ok(RegisterAnswer::Refuse {
                code: 7,
                message: "no".into()
            })
        );
        assert!(RegisterAnswer::parse("not json").is_err());
        assert!(RegisterAnswer::parse(r#"{"errMsg":"ok"}"#).is_err());
        assert!(RegisterAnswer::parse(
            r#"{"errNo":0,"websocket":{"secWebSocketProtocol":"a, b"}}"#
        )
        .is_err());
    }

    #[test]
    fn events_carry_exact_field_names() {
        let event: Value = serde_json::from_str(&data_send_event(
            "id",
            &Payload::Binary(Bytes::from_static(b"\xff")),
        ))
        .unwrap();
        assert_eq!(event["websocket"]["action"], "data send");
        assert_eq!(event["websocket"]["secConnectionID"], "id");
        assert_eq!(event["websocket"]["dataType"], "binary");
        assert_eq!(event["websocket"]["data"], "/w==");
        let closing: Value =
            serde_json::from_str(&closing_event("id", CloseReason::Client, Some(1000))).unwrap();
        assert_eq!(closing["websocket"]["closeReason"], "client");
        assert_eq!(closing["websocket"]["closeCode"], 1000);
    }
}
