//! The reverse-push request of `docs/protocol.md` §6: what a backend POSTs
//! to `/push/<service>` and what a handler passes to the `route` host call,
//! parsed into one [`PushRequest`] for the one routing function.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::error::Category;

use super::{ApiError, ErrNo, BASE64};

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

/// Largest reverse-push request, in bytes, for a service whose
/// `max_message_bytes` is `max_message_bytes`: its largest message as
/// Base64 (4/3 of the bytes) plus 64 KiB for the JSON around it. The HTTP
/// route reads no more of a body, and the `route` host call refuses a
/// longer request before parsing it.
pub fn max_request_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_add(2)
        .div_euclid(3)
        .saturating_mul(4)
        .saturating_add(64 << 10)
}

/// The request as it is written, parsed straight into fields (no JSON tree
/// is built): strings that need no unescaping are borrowed from the body.
/// Unknown fields are skipped without being kept.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    websocket: RawWebsocket<'a>,
}

#[derive(Deserialize)]
struct RawWebsocket<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(rename = "secConnectionID", borrow, default)]
    connection_id: Option<Cow<'a, str>>,
    #[serde(rename = "dataType", borrow, default)]
    data_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    group: Option<Cow<'a, str>>,
    #[serde(rename = "exceptConnectionID", borrow, default)]
    except: Option<Cow<'a, str>>,
}

/// A required field, or 2002 naming it.
fn required<'a>(field: Option<Cow<'a, str>>, name: &str) -> Result<Cow<'a, str>, ApiError> {
    field.ok_or_else(|| ErrNo::MISSING_FIELD.with(format_args!("websocket.{name}")))
}

impl PushRequest {
    /// Parses a reverse-push body. `max_message_bytes` bounds the delivered
    /// message; a body longer than [`max_request_bytes`] of it is refused
    /// (2006) before it is parsed.
    pub fn parse(body: &[u8], max_message_bytes: usize) -> Result<Self, ApiError> {
        let limit = max_request_bytes(max_message_bytes);
        if body.len() > limit {
            return Err(ErrNo::PAYLOAD_TOO_LARGE.over_limit(body.len(), limit));
        }
        let raw: RawRequest<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
            // Well-formed JSON of the wrong shape: a field missing or of the wrong type.
            Category::Data => ErrNo::MISSING_FIELD.with(e),
            Category::Syntax | Category::Eof | Category::Io => ErrNo::MALFORMED_JSON.with(e),
        })?;
        let RawWebsocket {
            action,
            connection_id,
            data_type,
            data,
            group,
            except,
        } = raw.websocket;
        let payload = |data: Option<Cow<'_, str>>| -> Result<Payload, ApiError> {
            let data = required(data, "data")?;
            let payload = match data_type.as_deref().unwrap_or("text") {
                "text" => Payload::Text(data.into_owned()),
                "binary" => Payload::Binary(Bytes::from(
                    BASE64
                        .decode(&*data)
                        .map_err(|e| ErrNo::BAD_BASE64.with(e))?,
                )),
                other => return Err(ErrNo::UNKNOWN_DATA_TYPE.with(format_args!("{other:?}"))),
            };
            if payload.len() > max_message_bytes {
                return Err(ErrNo::PAYLOAD_TOO_LARGE.over_limit(payload.len(), max_message_bytes));
            }
            Ok(payload)
        };
        match &*action {
            "closing" => Ok(PushRequest::Close {
                connection_id: required(connection_id, "secConnectionID")?.into_owned(),
            }),
            "data send" => Ok(PushRequest::Send {
                connection_id: required(connection_id, "secConnectionID")?.into_owned(),
                payload: payload(data)?,
            }),
            "data broadcast" => Ok(PushRequest::Broadcast {
                group: required(group, "group")?.into_owned(),
                payload: payload(data)?,
                except: except.map(Cow::into_owned),
            }),
            other => Err(ErrNo::UNKNOWN_ACTION.with(format_args!("{other:?}"))),
        }
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
        // Unknown fields are skipped; a field of the wrong type is 2002.
        assert!(PushRequest::parse(
            br#"{"websocket":{"action":"closing","secConnectionID":"a","extra":[1,{"b":2}]},"other":1}"#,
            4
        )
        .is_ok());
        assert_eq!(code(br#"{"websocket":"closing"}"#), 2002);
        assert_eq!(code(br#"{"websocket":{"action":7}}"#), 2002);
    }

    #[test]
    fn a_request_over_the_push_route_s_limit_is_refused_before_parsing() {
        let limit = max_request_bytes(4);
        // Base64 of 4 bytes is 8 characters.
        assert_eq!(limit, 8 + 64 * 1024);
        // Too large even though it is not JSON at all: nothing was parsed.
        let error = PushRequest::parse(&vec![b'{'; limit + 1], 4).unwrap_err();
        assert_eq!((error.code, error.status.as_u16()), (2006, 413));
        // At the limit, parsing happens (and finds no JSON).
        assert_eq!(
            PushRequest::parse(&vec![b'{'; limit], 4).unwrap_err().code,
            2001
        );
        // A binary message of max_message_bytes fits as Base64 in its JSON.
        assert_eq!(
            max_request_bytes(256 << 10),
            (256 << 10) / 3 * 4 + 4 + (64 << 10)
        );
        assert_eq!(max_request_bytes(usize::MAX), usize::MAX);
    }
}
