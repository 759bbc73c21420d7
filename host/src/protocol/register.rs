//! The register handler's answer (`docs/protocol.md` §2): `errNo` 0 accepts,
//! optionally choosing one sub-protocol; anything else refuses.

use serde::Deserialize;

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
}
