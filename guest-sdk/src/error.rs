//! The SDK's three small error types: a failed host call ([`GatewayError`]),
//! an event that cannot be read ([`EventError`]) and the failure a handler
//! method reports to the gateway ([`HandlerError`]).

use std::fmt;

/// The failure of a host call ([`push`](crate::push), [`close`](crate::close),
/// [`route`](crate::route)).
///
/// The numbers and messages are the ones the gateway's reverse-push endpoint
/// answers as `errNo`/`errMsg`: for example an unknown or already closed
/// connection, or a connection of another service, is "not found". A host call
/// never traps; it answers this error instead.
///
/// ```
/// use wasmgate_guest::GatewayError;
///
/// let error = GatewayError { err_no: 2202, err_msg: "no live connection x".into() };
/// assert_eq!(error.to_string(), "errNo 2202: no live connection x");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("errNo {err_no}: {err_msg}")]
pub struct GatewayError {
    /// The non-zero error number (`errNo`).
    pub err_no: i32,
    /// A readable description of the problem (`errMsg`).
    pub err_msg: String,
}

impl GatewayError {
    /// The `errNo` a host call answers when the code does not run inside a
    /// gateway, e.g. in a native unit test. The gateway uses the same number.
    ///
    /// ```
    /// use wasmgate_guest::GatewayError;
    ///
    /// # #[cfg(not(target_arch = "wasm32"))]
    /// assert_eq!(
    ///     wasmgate_guest::close("anyone").unwrap_err().err_no,
    ///     GatewayError::NOT_IN_GATEWAY,
    /// );
    /// ```
    pub const NOT_IN_GATEWAY: i32 = 2501;
}

/// An event that cannot be read: its JSON does not match the event type, or
/// the Base64 of a binary message is invalid.
///
/// ```
/// use wasmgate_guest::{DataSend, EventError};
///
/// let error = DataSend::from_json("{}").unwrap_err();
/// assert!(matches!(error, EventError::Json { event: "data send", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The JSON is malformed or lacks a required field.
    #[error("malformed {event} event: {source}")]
    Json {
        /// Which event was being read (`connecting`, `data send`, `closing`).
        event: &'static str,
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// `data` of a binary message is not standard Base64.
    #[error("binary data is not valid Base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// Why a handler method failed.
///
/// When a [`Handler`](crate::Handler) method returns it, the call fails: the
/// gateway logs the message and treats it like a trap (a register is refused,
/// a failed transfer closes the connection). Errors of the SDK convert into it
/// with `?`, and so do strings:
///
/// ```
/// use wasmgate_guest::HandlerError;
///
/// fn check(name: &str) -> Result<(), HandlerError> {
///     if name.is_empty() {
///         return Err("empty name".into());
///     }
///     let _value: serde_json::Value = serde_json::from_str(name)?;
///     Ok(())
/// }
///
/// assert_eq!(check("").unwrap_err().to_string(), "empty name");
/// assert!(check("{").is_err());
/// assert!(check("1").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with this message.
    ///
    /// ```
    /// let error = wasmgate_guest::HandlerError::new("database unavailable");
    /// assert_eq!(error.message(), "database unavailable");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message the gateway logs.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::HandlerError::from("oops").message(), "oops");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<GatewayError> for HandlerError {
    fn from(error: GatewayError) -> Self {
        Self::new(format!("host call failed: {error}"))
    }
}

impl From<EventError> for HandlerError {
    fn from(error: EventError) -> Self {
        Self::new(error.to_string())
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(error: serde_json::Error) -> Self {
        Self::new(format!("JSON error: {error}"))
    }
}

impl From<base64::DecodeError> for HandlerError {
    fn from(error: base64::DecodeError) -> Self {
        Self::new(format!("Base64 error: {error}"))
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(error: std::io::Error) -> Self {
        Self::new(format!("I/O error: {error}"))
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_error_reads_like_the_push_endpoint() {
        let error = GatewayError {
            err_no: 2202,
            err_msg: "no live connection abc in this service".into(),
        };
        assert_eq!(
            error.to_string(),
            "errNo 2202: no live connection abc in this service"
        );
        assert_eq!(
            HandlerError::from(error).message(),
            "host call failed: errNo 2202: no live connection abc in this service"
        );
    }

    #[test]
    fn event_error_names_the_event() {
        let source = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let error = EventError::Json {
            event: "closing",
            source,
        };
        assert!(error.to_string().starts_with("malformed closing event: "));
        assert!(std::error::Error::source(&error).is_some());
    }
}
