//! The SDK's three small error types: a failed host call ([`GatewayError`]),
//! an event that cannot be read ([`EventError`]) and the failure a handler
//! method reports to the gateway ([`HandlerError`]).

use std::fmt;

/// The failure of a host call ([`push`](crate::push), [`close`](crate::close),
/// [`route`](crate::route)).
///
/// The numbers and messages are the ones the gateway's reverse-push endpoint
/// answers as `errNo`/`errMsg` (the table is in `docs/protocol.md` §7; each
/// number is a constant here): for example an unknown or already closed
/// connection, or a connection of another service, is
/// [`GatewayError::CONNECTION_NOT_FOUND`]. A host call never traps; it
/// answers this error instead.
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
    /// 2001: a `route` request is not JSON.
    pub const MALFORMED_JSON: i32 = 2001;
    /// 2002: a required field of a `route` request is missing or not a string.
    pub const MISSING_FIELD: i32 = 2002;
    /// 2003: unknown `action` (not `data send`, `data broadcast` or `closing`).
    pub const UNKNOWN_ACTION: i32 = 2003;
    /// 2004: `data` of a binary message is not standard Base64.
    pub const BAD_BASE64: i32 = 2004;
    /// 2005: unknown `dataType` (not `text` or `binary`).
    pub const UNKNOWN_DATA_TYPE: i32 = 2005;
    /// 2006: the message is larger than the service's `max_message_bytes`.
    pub const PAYLOAD_TOO_LARGE: i32 = 2006;
    /// 2007: attributes that are not a JSON object, or larger than 4096
    /// bytes.
    pub const INVALID_ATTRIBUTES: i32 = 2007;
    /// 2101: reverse push with a missing or wrong bearer token (HTTP only).
    pub const UNAUTHORIZED: i32 = 2101;
    /// 2102: reverse push from outside loopback to a service without
    /// `push_token` (HTTP only).
    pub const FORBIDDEN_REMOTE: i32 = 2102;
    /// 2103: an administration route called from outside loopback (HTTP only).
    pub const FORBIDDEN_ADMIN: i32 = 2103;
    /// 2104: a control POST whose body is not declared JSON (HTTP only).
    pub const WRONG_CONTENT_TYPE: i32 = 2104;
    /// 2105: a control request from a web page (`Origin`) to a service
    /// without `push_token` (HTTP only).
    pub const CROSS_ORIGIN: i32 = 2105;
    /// 2201: unknown service (HTTP only).
    pub const UNKNOWN_SERVICE: i32 = 2201;
    /// 2202: no live connection with that id in this service: unknown,
    /// already closed, or another service's.
    pub const CONNECTION_NOT_FOUND: i32 = 2202;
    /// 2203: the connection's outbound queue overflowed; it was closed with 1008.
    pub const QUEUE_FULL: i32 = 2203;
    /// 2204: no such route on this listener (HTTP only).
    pub const UNKNOWN_ROUTE: i32 = 2204;
    /// 2205: the gateway's outbound budget (all connections' queued bytes
    /// together) has no room for the message; the connection's own queue was
    /// empty, so it stays open and the message was not queued. Try later.
    pub const OUTBOUND_BUDGET_SPENT: i32 = 2205;
    /// 2206: cluster mode: the node holding the connection could not be
    /// asked (Redis unreachable, or no answer in time), or a group change or
    /// broadcast could not go through Redis; nothing was done. Try again.
    pub const CLUSTER_UNAVAILABLE: i32 = 2206;
    /// 2302: the register handler failed (an upgrade refused; HTTP only).
    pub const REGISTER_FAILED: i32 = 2302;
    /// 2303: the service is at `max_connections` (HTTP only).
    pub const TOO_MANY_CONNECTIONS: i32 = 2303;
    /// 2304: the gateway is shutting down (HTTP only).
    pub const SHUTTING_DOWN: i32 = 2304;
    /// 2305: not a valid WebSocket upgrade request (HTTP only).
    pub const BAD_UPGRADE: i32 = 2305;
    /// 2306: a handler file of the service has not loaded yet (HTTP only).
    pub const SERVICE_NOT_READY: i32 = 2306;
    /// 2307: the gateway is at its connection limit (HTTP only).
    pub const GATEWAY_FULL: i32 = 2307;
    /// 2308: the client's address is at its connection limit (HTTP only).
    pub const ADDRESS_FULL: i32 = 2308;
    /// 2309: the upgrade took longer than the handshake deadline (HTTP only).
    pub const HANDSHAKE_TIMEOUT: i32 = 2309;
    /// 2401: key-value key empty or longer than 512 bytes.
    pub const INVALID_KEY: i32 = 2401;
    /// 2402: key-value value larger than 1 MiB.
    pub const VALUE_TOO_LARGE: i32 = 2402;
    /// 2403: the service holds `kv_max_keys` keys.
    pub const KEY_QUOTA: i32 = 2403;
    /// 2404: `increment` of a value that is not a decimal counter, or an overflow.
    pub const NOT_A_COUNTER: i32 = 2404;
    /// 2405: the state store failed (disk full, I/O error).
    pub const STORAGE: i32 = 2405;
    /// 2406: group name empty or longer than 128 bytes.
    pub const INVALID_GROUP: i32 = 2406;
    /// 2407: the connection is already in 64 groups.
    pub const TOO_MANY_GROUPS: i32 = 2407;
    /// 2408: the write would take the service past `kv_max_bytes` bytes of
    /// keys and values.
    pub const BYTE_QUOTA: i32 = 2408;
    /// 2409: `get_many` of more than 1000 keys, or of values larger than
    /// 8 MiB together.
    pub const READ_TOO_LARGE: i32 = 2409;
    /// 2410: the key-value store is on Redis (cluster mode) and Redis cannot
    /// be reached now, or did not answer within 1 s. A write answered so may
    /// or may not have been applied: read before retrying an `increment`.
    pub const STORE_UNAVAILABLE: i32 = 2410;

    /// 2501: the `errNo` a host call answers when the code does not run
    /// inside a gateway, e.g. in a native unit test. The gateway uses the
    /// same number.
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

    /// 2601: the HTTP trigger's handler failed (trap, `err` result, memory
    /// limit); the HTTP client gets 502.
    pub const HTTP_HANDLER_FAILED: i32 = 2601;
    /// 2602: the HTTP trigger's handler ran past `timeout_ms`; the HTTP
    /// client gets 504.
    pub const HTTP_HANDLER_TIMEOUT: i32 = 2602;
    /// 2603: the service has no handler for the `http` role; the HTTP
    /// client gets 501.
    pub const NO_HTTP_HANDLER: i32 = 2603;
    /// 2604: no call slot of the service within `timeout_ms`; the HTTP
    /// client gets 503.
    pub const SERVICE_BUSY: i32 = 2604;
    /// 2605: the HTTP request's body did not arrive in time; 408.
    pub const BODY_TIMEOUT: i32 = 2605;
    /// 2606: the HTTP request's body is malformed (its chunked encoding
    /// does not parse); 400.
    pub const BAD_BODY: i32 = 2606;
}

/// The WebSocket close codes the gateway sends its clients, as in
/// `docs/protocol.md` §8. A cleanup handler sees why a connection ended in
/// [`CloseReason`](crate::CloseReason); these are what the client saw.
pub mod close_code {
    /// 1000: closed by the service (reverse push `closing`, the `close`
    /// host call) or by the idle timeout.
    pub const NORMAL: u16 = 1000;
    /// 1001: the gateway is shutting down, the service was removed, or the
    /// client answered no ping for a whole ping interval.
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_UTF8: u16 = 1007;
    /// 1008: the client did not read: its outbound queue overflowed.
    pub const SLOW_CLIENT: u16 = 1008;
    /// 1009: a message larger than the service's `max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// 1011: the transfer handler failed.
    pub const HANDLER_FAILED: u16 = 1011;
    /// 1013: the service was busy (at `max_concurrency` for longer than its
    /// time-out, or its transfer handler not loaded yet): try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// 1012: cluster mode: the gateway node lost its lease (it paused or
    /// was cut off from Redis too long); reconnect. A surviving node runs
    /// the cleanup, with `closeReason` `node_lost`.
    pub const NODE_LOST: u16 = 1012;
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
