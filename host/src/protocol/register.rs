//! The register handler's answer (`docs/protocol.md` §2): `errNo` 0 accepts,
//! optionally choosing one sub-protocol and attaching attributes to the
//! connection; anything else refuses.

use std::sync::Arc;

use serde::Deserialize;

/// Largest connection attributes, as compact JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;

/// Checks connection attributes given as JSON: a JSON object whose compact
/// form is at most [`MAX_ATTRIBUTES_BYTES`]. Returns that compact form.
pub fn attributes_from_json(json: &str) -> Result<Arc<str>, String> {
    // Anything longer cannot compact below the limit by more than its
    // whitespace; refuse before building a tree of a huge input.
    if json.len() > MAX_ATTRIBUTES_BYTES * 16 {
        return Err(format!(
            "attributes of {} bytes are larger than {MAX_ATTRIBUTES_BYTES}",
            json.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("attributes are not JSON: {error}"))?;
    attributes_from_value(&value)
}

/// Like [`attributes_from_json`], for a value already parsed.
pub fn attributes_from_value(value: &serde_json::Value) -> Result<Arc<str>, String> {
    if !value.is_object() {
        return Err("attributes must be a JSON object".to_owned());
    }
    let compact = value.to_string();
    if compact.len() > MAX_ATTRIBUTES_BYTES {
        return Err(format!(
            "attributes of {} bytes are larger than {MAX_ATTRIBUTES_BYTES}",
            compact.len()
        ));
    }
    Ok(compact.into())
}

/// A register handler's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterAnswer {
    /// `errNo` 0: upgrade, optionally with this sub-protocol.
    Accept {
        /// The sub-protocol chosen by the handler.
        protocol: Option<String>,
        /// The connection's attributes (compact JSON of an object), when
        /// the answer gave them.
        attributes: Option<Arc<str>>,
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
    #[serde(default)]
    attributes: Option<serde_json::Value>,
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
        let attributes = match raw.attributes {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(attributes_from_value(&value).map_err(MalformedAnswer)?),
        };
        Ok(RegisterAnswer::Accept {
            protocol,
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_answers() {
        assert_eq!(
            RegisterAnswer::parse(
                r#"{"errNo":0,"errMsg":"ok","websocket":{"secWebSocketProtocol":"chat"}}"#
            ),
            Ok(RegisterAnswer::Accept {
                protocol: Some("chat".into()),
                attributes: None,
            })
        );
        assert_eq!(
            RegisterAnswer::parse(r#"{"errNo":0,"attributes":{ "room": "lobby" }}"#),
            Ok(RegisterAnswer::Accept {
                protocol: None,
                attributes: Some(r#"{"room":"lobby"}"#.into()),
            })
        );
        assert!(RegisterAnswer::parse(r#"{"errNo":0,"attributes":[1]}"#).is_err());
        let big = format!(
            r#"{{"errNo":0,"attributes":{{"a":"{}"}}}}"#,
            "x".repeat(4096)
        );
        assert!(RegisterAnswer::parse(&big).is_err());
        assert!(attributes_from_json("{}").is_ok());
        assert!(attributes_from_json("7").is_err());
        assert!(attributes_from_json(&" ".repeat(70_000)).is_err());
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
}
