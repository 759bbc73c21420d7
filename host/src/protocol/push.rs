//! The reverse-push request of `docs/protocol.md` §6: what a backend POSTs
//! to `/push/<service>` and what a handler passes to the `route` host call,
//! parsed into one [`PushRequest`] for the one routing function.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

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

impl PushRequest {
    /// Parses a reverse-push body. `max_message_bytes` bounds the delivered message.
    pub fn parse(body: &[u8], max_message_bytes: usize) -> Result<Self, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ErrNo::MALFORMED_JSON.with(e))?;
        let websocket = value
            .get("websocket")
            .and_then(Value::as_object)
            .ok_or_else(|| ErrNo::MISSING_FIELD.with("websocket"))?;
        let text_field = |name: &str| -> Result<&str, ApiError> {
            websocket
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| ErrNo::MISSING_FIELD.with(format_args!("websocket.{name}")))
        };
        let action = text_field("action")?;
        let payload = || -> Result<Payload, ApiError> {
            let data_type = websocket
                .get("dataType")
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ErrNo::MISSING_FIELD.with("websocket.dataType"))
                })
                .transpose()?
                .unwrap_or("text");
            let data = text_field("data")?;
            let payload = match data_type {
                "text" => Payload::Text(data.to_owned()),
                "binary" => Payload::Binary(Bytes::from(
                    BASE64.decode(data).map_err(|e| ErrNo::BAD_BASE64.with(e))?,
                )),
                other => return Err(ErrNo::UNKNOWN_DATA_TYPE.with(format_args!("{other:?}"))),
            };
            if payload.len() > max_message_bytes {
                return Err(ErrNo::PAYLOAD_TOO_LARGE.over_limit(payload.len(), max_message_bytes));
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
    }
}
