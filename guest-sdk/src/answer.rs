//! The register handler's answer: accept the connection, optionally choosing a
//! sub-protocol and attaching attributes, or refuse it with an
//! `errNo`/`errMsg` pair.

use serde::Serialize;

/// What a register handler decides about a client that asks to connect.
///
/// ```
/// use wasmgate_guest::Registration;
///
/// assert_eq!(
///     Registration::accept_protocol("chat").to_json("q83vEjRWeJq83vEjRWeJqw=="),
///     r#"{"errNo":0,"errMsg":"ok","websocket":{"action":"connecting","secConnectionID":"q83vEjRWeJq83vEjRWeJqw==","secWebSocketProtocol":"chat"}}"#,
/// );
/// assert_eq!(
///     Registration::refuse(4001, "bad token").to_json("q83vEjRWeJq83vEjRWeJqw=="),
///     r#"{"errNo":4001,"errMsg":"bad token"}"#,
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Upgrade the connection (`errNo` 0).
    Accept {
        /// The sub-protocol sent back to the client: one of those it offered
        /// (see [`Connecting::protocols`](crate::Connecting::protocols)).
        protocol: Option<String>,
        /// Attributes kept with the connection (a JSON object of at most
        /// 4096 bytes): the gateway sends them as `attributes` in every
        /// later transfer and cleanup event. See
        /// [`Registration::with_attributes`].
        attributes: Option<serde_json::Value>,
    },
    /// Refuse the upgrade; the client gets an HTTP error and no connection
    /// exists.
    Refuse {
        /// The `errNo` answered, never 0 (0 would mean "accepted"): a refusal
        /// built with 0 is sent with `errNo` 1.
        err_no: i32,
        /// The `errMsg` answered.
        err_msg: String,
    },
}

impl Registration {
    /// Accept the connection without a sub-protocol.
    ///
    /// ```
    /// assert!(wasmgate_guest::Registration::accept().is_accept());
    /// ```
    pub fn accept() -> Self {
        Registration::Accept {
            protocol: None,
            attributes: None,
        }
    }

    /// Accept the connection and answer the client with this sub-protocol,
    /// which should be one that it offered.
    ///
    /// ```
    /// use wasmgate_guest::Registration;
    ///
    /// let answer = Registration::accept_protocol("chat");
    /// assert_eq!(
    ///     answer,
    ///     Registration::Accept { protocol: Some("chat".into()), attributes: None },
    /// );
    /// ```
    pub fn accept_protocol(protocol: impl Into<String>) -> Self {
        Registration::Accept {
            protocol: Some(protocol.into()),
            attributes: None,
        }
    }

    /// Attaches attributes to an accepted connection: what register learned
    /// (a room from the query string, a user from a token) arrives in every
    /// later event of the connection as
    /// [`DataSend::attributes`](crate::DataSend::attributes) and
    /// [`Closing::attributes`](crate::Closing::attributes), so transfer and
    /// cleanup need not look it up again. A JSON object of at most 4096
    /// bytes (compact); anything else makes the gateway refuse the client
    /// (errNo 2302) and log why. A refusal ignores them.
    ///
    /// ```
    /// use serde_json::json;
    /// use wasmgate_guest::Registration;
    ///
    /// let answer = Registration::accept().with_attributes(json!({"room": "lobby"}));
    /// assert_eq!(
    ///     answer.to_json("id"),
    ///     r#"{"errNo":0,"errMsg":"ok","websocket":{"action":"connecting","secConnectionID":"id"},"attributes":{"room":"lobby"}}"#,
    /// );
    /// ```
    pub fn with_attributes(self, attributes: serde_json::Value) -> Self {
        match self {
            Registration::Accept { protocol, .. } => Registration::Accept {
                protocol,
                attributes: Some(attributes),
            },
            refuse => refuse,
        }
    }

    /// Refuse the connection with this `errNo` (not 0) and `errMsg`.
    ///
    /// ```
    /// use wasmgate_guest::Registration;
    ///
    /// let answer = Registration::refuse(4003, "room is full");
    /// assert!(!answer.is_accept());
    /// ```
    pub fn refuse(err_no: i32, err_msg: impl Into<String>) -> Self {
        Registration::Refuse {
            err_no: if err_no == 0 { 1 } else { err_no },
            err_msg: err_msg.into(),
        }
    }

    /// Whether the connection is accepted.
    ///
    /// ```
    /// assert!(!wasmgate_guest::Registration::refuse(1, "no").is_accept());
    /// ```
    pub fn is_accept(&self) -> bool {
        matches!(self, Registration::Accept { .. })
    }

    /// The answer JSON for the connection `connection_id` (its
    /// `secConnectionID`). [`dispatch`](crate::dispatch) calls this for you.
    ///
    /// ```
    /// let json = wasmgate_guest::Registration::accept().to_json("id");
    /// assert_eq!(
    ///     json,
    ///     r#"{"errNo":0,"errMsg":"ok","websocket":{"action":"connecting","secConnectionID":"id"}}"#,
    /// );
    /// ```
    pub fn to_json(&self, connection_id: &str) -> String {
        let answer = match self {
            Registration::Accept {
                protocol,
                attributes,
            } => Answer {
                err_no: 0,
                err_msg: "ok",
                websocket: Some(AnswerWebSocket {
                    action: "connecting",
                    sec_connection_id: connection_id,
                    sec_websocket_protocol: protocol.as_deref(),
                }),
                attributes: attributes.as_ref(),
            },
            Registration::Refuse { err_no, err_msg } => Answer {
                err_no: if *err_no == 0 { 1 } else { *err_no },
                err_msg,
                websocket: None,
                attributes: None,
            },
        };
        // Only strings and integers: serializing cannot fail.
        serde_json::to_string(&answer).expect("register answers always serialize to JSON")
    }
}

/// The wire shape of the register answer; the field order is the contract's.
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(rename = "errNo")]
    err_no: i32,
    #[serde(rename = "errMsg")]
    err_msg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket: Option<AnswerWebSocket<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct AnswerWebSocket<'a> {
    action: &'a str,
    #[serde(rename = "secConnectionID")]
    sec_connection_id: &'a str,
    #[serde(
        rename = "secWebSocketProtocol",
        skip_serializing_if = "Option::is_none"
    )]
    sec_websocket_protocol: Option<&'a str>,
}

impl Default for Registration {
    /// Accept without a sub-protocol.
    fn default() -> Self {
        Registration::accept()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn accept_answers_the_contract_shape() {
        assert_eq!(
            parse(&Registration::accept().to_json("id")),
            json!({
                "errNo": 0,
                "errMsg": "ok",
                "websocket": {"action": "connecting", "secConnectionID": "id"}
            })
        );
        assert_eq!(
            parse(&Registration::accept_protocol("chat").to_json("id")),
            json!({
                "errNo": 0,
                "errMsg": "ok",
                "websocket": {
                    "action": "connecting",
                    "secConnectionID": "id",
                    "secWebSocketProtocol": "chat"
                }
            })
        );
    }

    #[test]
    fn fields_come_in_the_contract_order() {
        assert_eq!(
            Registration::accept().to_json("id"),
            r#"{"errNo":0,"errMsg":"ok","websocket":{"action":"connecting","secConnectionID":"id"}}"#
        );
        assert_eq!(
            Registration::refuse(7, "no").to_json("id"),
            r#"{"errNo":7,"errMsg":"no"}"#
        );
    }

    #[test]
    fn refusal_carries_only_err_no_and_err_msg() {
        assert_eq!(
            parse(&Registration::refuse(4001, "denied \"you\"").to_json("id")),
            json!({"errNo": 4001, "errMsg": "denied \"you\""})
        );
    }

    #[test]
    fn a_refusal_never_sends_err_no_zero() {
        assert_eq!(
            parse(&Registration::refuse(0, "no").to_json("id"))["errNo"],
            1
        );
        let hand_built = Registration::Refuse {
            err_no: 0,
            err_msg: "no".into(),
        };
        assert_eq!(parse(&hand_built.to_json("id"))["errNo"], 1);
    }
}
