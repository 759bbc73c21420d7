//! Calls from a handler into the gateway: push to or close a connection, route
//! a reverse-push request, write a log line.
//!
//! Every call acts on the calling handler's own service: a connection id of
//! another service is "not found", exactly as for the reverse-push endpoint.
//!
//! Outside a wasm gateway (a native `cargo test`), [`push`], [`close`] and
//! [`route`] answer [`GatewayError::NOT_IN_GATEWAY`] and [`log`] writes to
//! standard error, so handler code compiles and runs in unit tests.

use std::fmt;

use crate::{GatewayError, Payload};

/// Severity of a log line.
///
/// ```
/// use wasmgate_guest::LogLevel;
///
/// assert!(LogLevel::Warn > LogLevel::Info);
/// assert_eq!(LogLevel::Error.to_string(), "error");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the handler recovered from.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The level's name in lower case.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::LogLevel::Warn.as_str(), "warn");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sends a message to a connection of this service: text as a text frame,
/// bytes as a binary frame.
///
/// Same effect and errors as a reverse push `data send`.
///
/// ```no_run
/// use wasmgate_guest::Payload;
///
/// wasmgate_guest::push("q83vEjRWeJq83vEjRWeJqw==", Payload::Binary(vec![1, 2, 3]))?;
/// wasmgate_guest::push("q83vEjRWeJq83vEjRWeJqw==", "hello".into())?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn push(connection_id: &str, payload: Payload) -> Result<(), GatewayError> {
    imp::push(connection_id, payload)
}

/// Sends a text message to a connection of this service.
///
/// ```no_run
/// wasmgate_guest::push_text("q83vEjRWeJq83vEjRWeJqw==", "hello")?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn push_text(connection_id: &str, text: &str) -> Result<(), GatewayError> {
    push(connection_id, Payload::Text(text.to_owned()))
}

/// Sends a binary message to a connection of this service.
///
/// ```no_run
/// wasmgate_guest::push_binary("q83vEjRWeJq83vEjRWeJqw==", &[0xca, 0xfe])?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn push_binary(connection_id: &str, bytes: &[u8]) -> Result<(), GatewayError> {
    push(connection_id, Payload::Binary(bytes.to_vec()))
}

/// Closes a connection of this service; its cleanup handler then runs.
///
/// Same effect and errors as a reverse push `closing`.
///
/// ```no_run
/// wasmgate_guest::close("q83vEjRWeJq83vEjRWeJqw==")?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn close(connection_id: &str) -> Result<(), GatewayError> {
    imp::close(connection_id)
}

/// Routes a reverse-push request given as its JSON body, exactly as
/// `POST /push/<service>` would. Meant for handlers ported from the
/// cloud-function model that build the request JSON themselves;
/// [`DataSend::to_json`](crate::DataSend::to_json) and
/// [`Closing::to_json`](crate::Closing::to_json) build such requests too.
///
/// ```no_run
/// use wasmgate_guest::DataSend;
///
/// wasmgate_guest::route(&DataSend::new("q83vEjRWeJq83vEjRWeJqw==", "hi").to_json())?;
/// wasmgate_guest::route(
///     r#"{"websocket":{"action":"closing","secConnectionID":"q83vEjRWeJq83vEjRWeJqw=="}}"#,
/// )?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn route(request: &str) -> Result<(), GatewayError> {
    imp::route(request)
}

/// Replaces the attributes of the connection the current call is about:
/// a JSON object of at most 4096 bytes, sent as `attributes` in every later
/// transfer and cleanup event of the connection
/// ([`DataSend::attributes`](crate::DataSend::attributes),
/// [`Closing::attributes`](crate::Closing::attributes)) and shown by the
/// connection info route. An empty object removes them. Anything else
/// fails with errNo 2007 ([`GatewayError::INVALID_ATTRIBUTES`]).
///
/// ```no_run
/// use serde_json::json;
///
/// wasmgate_guest::set_attributes(&json!({"room": "kitchen", "user": "u1"}))?;
/// # Ok::<(), wasmgate_guest::GatewayError>(())
/// ```
pub fn set_attributes(attributes: &serde_json::Value) -> Result<(), GatewayError> {
    imp::set_attributes(&attributes.to_string())
}

/// Writes a line to the gateway's log, tagged with the service, role, request
/// id and connection id of the current call.
///
/// ```
/// use wasmgate_guest::LogLevel;
///
/// wasmgate_guest::log(LogLevel::Info, "user 42 joined room 7");
/// ```
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

#[cfg(target_arch = "wasm32")]
pub(crate) use imp::gateway_error;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use imp::not_in_gateway;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::LogLevel;
    use crate::bindings::wasmgate::gateway::host;
    use crate::bindings::wasmgate::gateway::types::{
        GatewayError as RawGatewayError, LogLevel as RawLogLevel, Payload as RawPayload,
    };
    use crate::{GatewayError, Payload};

    /// Converts the generated error type.
    pub(crate) fn gateway_error(error: RawGatewayError) -> GatewayError {
        GatewayError {
            err_no: error.err_no,
            err_msg: error.err_msg,
        }
    }

    pub(super) fn push(connection_id: &str, payload: Payload) -> Result<(), GatewayError> {
        let payload = match payload {
            Payload::Text(text) => RawPayload::Text(text),
            Payload::Binary(bytes) => RawPayload::Binary(bytes),
        };
        host::push(connection_id, &payload).map_err(gateway_error)
    }

    pub(super) fn close(connection_id: &str) -> Result<(), GatewayError> {
        host::close(connection_id).map_err(gateway_error)
    }

    pub(super) fn route(request: &str) -> Result<(), GatewayError> {
        host::route(request).map_err(gateway_error)
    }

    pub(super) fn set_attributes(attributes: &str) -> Result<(), GatewayError> {
        host::set_attributes(attributes).map_err(gateway_error)
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => RawLogLevel::Trace,
            LogLevel::Debug => RawLogLevel::Debug,
            LogLevel::Info => RawLogLevel::Info,
            LogLevel::Warn => RawLogLevel::Warn,
            LogLevel::Error => RawLogLevel::Error,
        };
        host::log(level, message)
    }
}

/// Stand-ins for native builds, where no gateway is there to call: the
/// generated imports exist only in a wasm component.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::LogLevel;
    use crate::{GatewayError, Payload};

    /// The error of a host call made outside a gateway.
    pub(crate) fn not_in_gateway() -> GatewayError {
        GatewayError {
            err_no: GatewayError::NOT_IN_GATEWAY,
            err_msg: "not running inside a gateway".to_owned(),
        }
    }

    pub(super) fn push(_connection_id: &str, _payload: Payload) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn close(_connection_id: &str) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn route(_request: &str) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn set_attributes(_attributes: &str) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        eprintln!("[{level}] {message}");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn host_calls_outside_a_gateway_fail_politely() {
        for result in [
            push("id", Payload::Text("hi".into())),
            push_text("id", "hi"),
            push_binary("id", &[1]),
            close("id"),
            route("{}"),
        ] {
            assert_eq!(result.unwrap_err().err_no, GatewayError::NOT_IN_GATEWAY);
        }
        log(LogLevel::Info, "written to standard error");
    }
}
