//! The `errNo` table: every error number the gateway answers, each with its
//! HTTP status and meaning, in one place.
//!
//! The same numbers answer a reverse-push caller (as the JSON body
//! `{"errNo", "errMsg"}` with the row's status) and a handler's host call (as
//! its `gateway-error`). A test keeps `docs/protocol.md`, the README and the
//! guest SDK's constants in step with [`ErrNo::ALL`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One row of the `errNo` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrNo {
    /// The `errNo` value.
    pub number: i32,
    /// The HTTP status an error of this number answers with.
    pub status: StatusCode,
    /// What it means: the `errMsg`, or its start when a detail follows.
    pub meaning: &'static str,
}

const fn row(number: i32, status: StatusCode, meaning: &'static str) -> ErrNo {
    ErrNo {
        number,
        status,
        meaning,
    }
}

impl ErrNo {
    /// Success.
    pub const OK: Self = row(0, StatusCode::OK, "ok");
    /// The request body is not JSON.
    pub const MALFORMED_JSON: Self = row(2001, StatusCode::BAD_REQUEST, "malformed JSON");
    /// A required field is missing or has the wrong type.
    pub const MISSING_FIELD: Self = row(2002, StatusCode::BAD_REQUEST, "missing or invalid field");
    /// `websocket.action` is not `data send`, `data broadcast` or `closing`.
    pub const UNKNOWN_ACTION: Self = row(
        2003,
        StatusCode::BAD_REQUEST,
        "unknown action (expected \"data send\", \"data broadcast\" or \"closing\")",
    );
    /// `data` of a binary push is not standard Base64.
    pub const BAD_BASE64: Self = row(2004, StatusCode::BAD_REQUEST, "data is not valid Base64");
    /// `dataType` is neither `text` nor `binary`.
    pub const UNKNOWN_DATA_TYPE: Self = row(
        2005,
        StatusCode::BAD_REQUEST,
        "unknown dataType (expected \"text\" or \"binary\")",
    );
    /// The request or the message it carries is larger than allowed.
    pub const PAYLOAD_TOO_LARGE: Self = row(
        2006,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload larger than the limit",
    );
    /// Connection attributes (a register answer's `attributes`, or the
    /// `set-attributes` host call) that are not a JSON object, or whose
    /// compact JSON is longer than [`MAX_ATTRIBUTES_BYTES`](crate::protocol::MAX_ATTRIBUTES_BYTES).
    pub const INVALID_ATTRIBUTES: Self = row(
        2007,
        StatusCode::BAD_REQUEST,
        "attributes must be a JSON object of at most 4096 bytes",
    );
    /// The service requires a bearer token and none or a wrong one was given.
    pub const UNAUTHORIZED: Self = row(
        2101,
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token",
    );
    /// The service has no token and the caller is not on loopback.
    pub const FORBIDDEN_REMOTE: Self = row(
        2102,
        StatusCode::FORBIDDEN,
        "reverse push without push_token is only allowed from loopback",
    );
    /// The administration routes are only open to loopback callers.
    pub const FORBIDDEN_ADMIN: Self = row(
        2103,
        StatusCode::FORBIDDEN,
        "administration routes are only allowed from loopback",
    );
    /// A control route's POST body is not declared `application/json`: a
    /// browser may send `text/plain` across origins without asking first.
    pub const WRONG_CONTENT_TYPE: Self = row(
        2104,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be sent as Content-Type: application/json",
    );
    /// A control request from a web page (it has an `Origin` header) to a
    /// service without `push_token`: loopback alone does not vouch for it.
    pub const CROSS_ORIGIN: Self = row(
        2105,
        StatusCode::FORBIDDEN,
        "a request with an Origin header needs the service's push_token",
    );
    /// No service of that name is loaded.
    pub const UNKNOWN_SERVICE: Self = row(2201, StatusCode::NOT_FOUND, "unknown service");
    /// No live connection of this service has that id (also for ids of
    /// other services: they are never revealed).
    pub const CONNECTION_NOT_FOUND: Self = row(
        2202,
        StatusCode::NOT_FOUND,
        "no live connection with this id in this service",
    );
    /// No such route on this listener (the public and the control listener
    /// serve different routes).
    pub const UNKNOWN_ROUTE: Self = row(
        2204,
        StatusCode::NOT_FOUND,
        "no such route on this listener",
    );
    /// The client reads too slowly; its outbound queue overflowed and it was
    /// closed.
    pub const QUEUE_FULL: Self = row(
        2203,
        StatusCode::SERVICE_UNAVAILABLE,
        "outbound queue full; the connection was closed",
    );
    /// The gateway's outbound budget (`--outbound-budget-mb`, every
    /// connection's queued bytes together) has no room for the message; the
    /// connection's own queue was empty, so it stays open and the message
    /// was not queued.
    pub const OUTBOUND_BUDGET_SPENT: Self = row(
        2205,
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway's outbound budget is spent; the message was not queued",
    );
    /// Cluster mode: the node that holds the connection could not be asked
    /// (Redis is unreachable, or the node did not answer in time), or a
    /// group change or broadcast could not go through Redis. The request
    /// may be retried; nothing was done.
    pub const CLUSTER_UNAVAILABLE: Self = row(
        2206,
        StatusCode::SERVICE_UNAVAILABLE,
        "the cluster cannot be reached now; try again",
    );
    /// The register handler failed: trap, time-out or malformed answer.
    pub const REGISTER_FAILED: Self = row(
        2302,
        StatusCode::SERVICE_UNAVAILABLE,
        "register handler failed",
    );
    /// The service holds its maximum number of connections.
    pub const TOO_MANY_CONNECTIONS: Self = row(
        2303,
        StatusCode::SERVICE_UNAVAILABLE,
        "service is at its connection limit (max_connections)",
    );
    /// The gateway is shutting down and accepts no new connections.
    pub const SHUTTING_DOWN: Self = row(
        2304,
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway is shutting down",
    );
    /// The request is not a valid WebSocket upgrade. Answered with the
    /// status the upgrade check chose (400, 405, 426, ...).
    pub const BAD_UPGRADE: Self = row(2305, StatusCode::BAD_REQUEST, "bad WebSocket upgrade");
    /// A handler file of the service is on disk but no version of it has
    /// loaded yet (it is compiling, or its first load failed): the service
    /// refuses clients rather than skip the check it asked for.
    pub const SERVICE_NOT_READY: Self = row(
        2306,
        StatusCode::SERVICE_UNAVAILABLE,
        "service not ready: a handler file has not loaded",
    );
    /// The public listener holds its maximum number of sockets.
    pub const GATEWAY_FULL: Self = row(
        2307,
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway is at its connection limit",
    );
    /// The client's source address (its IPv6 /64) holds its maximum number
    /// of sockets.
    pub const ADDRESS_FULL: Self = row(
        2308,
        StatusCode::SERVICE_UNAVAILABLE,
        "this source address is at its connection limit",
    );
    /// The upgrade, register included, took longer than the handshake
    /// deadline.
    pub const HANDSHAKE_TIMEOUT: Self = row(
        2309,
        StatusCode::SERVICE_UNAVAILABLE,
        "the upgrade took longer than the handshake deadline",
    );
    /// A key-value key is empty or longer than the limit.
    pub const INVALID_KEY: Self = row(2401, StatusCode::BAD_REQUEST, "invalid key");
    /// A key-value value is larger than the limit.
    pub const VALUE_TOO_LARGE: Self = row(
        2402,
        StatusCode::PAYLOAD_TOO_LARGE,
        "value larger than the limit",
    );
    /// The service holds its maximum number of keys.
    pub const KEY_QUOTA: Self = row(
        2403,
        StatusCode::INSUFFICIENT_STORAGE,
        "service is at its key limit (kv_max_keys)",
    );
    /// `increment` on a value that is not a decimal counter, or an overflow.
    pub const NOT_A_COUNTER: Self = row(2404, StatusCode::CONFLICT, "not a counter");
    /// The state store failed (disk full, I/O error, closed store).
    pub const STORAGE: Self = row(
        2405,
        StatusCode::INTERNAL_SERVER_ERROR,
        "state store failed",
    );
    /// A group name is empty or longer than the limit.
    pub const INVALID_GROUP: Self = row(2406, StatusCode::BAD_REQUEST, "invalid group");
    /// A connection is already in the maximum number of groups.
    pub const TOO_MANY_GROUPS: Self = row(
        2407,
        StatusCode::CONFLICT,
        "connection is in as many groups as allowed",
    );
    /// The write would take the service's keys and values past its byte
    /// limit.
    pub const BYTE_QUOTA: Self = row(
        2408,
        StatusCode::INSUFFICIENT_STORAGE,
        "service is at its byte limit (kv_max_bytes)",
    );
    /// A key-value read of many keys would answer too much: more than 1000
    /// keys, or more than 8 MiB of values together.
    pub const READ_TOO_LARGE: Self = row(
        2409,
        StatusCode::PAYLOAD_TOO_LARGE,
        "read too large: at most 1000 keys and 8 MiB of values at once",
    );
    /// The key-value store on Redis cannot serve now: Redis is unreachable,
    /// loading or busy, or did not answer within 1 s. A write answered so
    /// may or may not have been applied.
    pub const STORE_UNAVAILABLE: Self = row(
        2410,
        StatusCode::SERVICE_UNAVAILABLE,
        "the state store (Redis) cannot be reached now; try again (a write may or may not have been applied)",
    );
    /// A host call that only exists inside a running gateway (the guest SDK
    /// answers it itself outside one, e.g. in a native unit test).
    pub const NO_GATEWAY: Self = row(
        2501,
        StatusCode::SERVICE_UNAVAILABLE,
        "not running inside a gateway",
    );
    /// The HTTP trigger's handler failed: trap, `err` result, memory limit,
    /// an answer over the limit, or no instance. (A malformed answer gets
    /// the model's own body instead; see [`crate::protocol::MALFORMED_RESPONSE_BODY`].)
    pub const HTTP_HANDLER_FAILED: Self = row(
        2601,
        StatusCode::BAD_GATEWAY,
        "the service's http handler failed",
    );
    /// The HTTP trigger's handler ran past the service's `timeout_ms`.
    pub const HTTP_HANDLER_TIMEOUT: Self = row(
        2602,
        StatusCode::GATEWAY_TIMEOUT,
        "the service's http handler timed out",
    );
    /// The service has no handler for the `http` role: neither `http.wasm`
    /// nor `handler.wasm`, or one built before the role existed.
    pub const NO_HTTP_HANDLER: Self = row(
        2603,
        StatusCode::NOT_IMPLEMENTED,
        "the service does not handle HTTP requests",
    );
    /// The service's calls used every slot it may have for longer than its
    /// `timeout_ms`.
    pub const SERVICE_BUSY: Self = row(
        2604,
        StatusCode::SERVICE_UNAVAILABLE,
        "service busy: no call slot within timeout_ms",
    );
    /// The request body did not arrive within the header timeout.
    pub const BODY_TIMEOUT: Self = row(
        2605,
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time",
    );
    /// The request body could not be read: its chunked encoding is
    /// malformed.
    pub const BAD_BODY: Self = row(
        2606,
        StatusCode::BAD_REQUEST,
        "the request body is malformed",
    );

    /// Every row, in number order.
    pub const ALL: [Self; 44] = [
        Self::OK,
        Self::MALFORMED_JSON,
        Self::MISSING_FIELD,
        Self::UNKNOWN_ACTION,
        Self::BAD_BASE64,
        Self::UNKNOWN_DATA_TYPE,
        Self::PAYLOAD_TOO_LARGE,
        Self::INVALID_ATTRIBUTES,
        Self::UNAUTHORIZED,
        Self::FORBIDDEN_REMOTE,
        Self::FORBIDDEN_ADMIN,
        Self::WRONG_CONTENT_TYPE,
        Self::CROSS_ORIGIN,
        Self::UNKNOWN_SERVICE,
        Self::CONNECTION_NOT_FOUND,
        Self::QUEUE_FULL,
        Self::UNKNOWN_ROUTE,
        Self::OUTBOUND_BUDGET_SPENT,
        Self::CLUSTER_UNAVAILABLE,
        Self::REGISTER_FAILED,
        Self::TOO_MANY_CONNECTIONS,
        Self::SHUTTING_DOWN,
        Self::BAD_UPGRADE,
        Self::SERVICE_NOT_READY,
        Self::GATEWAY_FULL,
        Self::ADDRESS_FULL,
        Self::HANDSHAKE_TIMEOUT,
        Self::INVALID_KEY,
        Self::VALUE_TOO_LARGE,
        Self::KEY_QUOTA,
        Self::NOT_A_COUNTER,
        Self::STORAGE,
        Self::INVALID_GROUP,
        Self::TOO_MANY_GROUPS,
        Self::BYTE_QUOTA,
        Self::READ_TOO_LARGE,
        Self::STORE_UNAVAILABLE,
        Self::NO_GATEWAY,
        Self::HTTP_HANDLER_FAILED,
        Self::HTTP_HANDLER_TIMEOUT,
        Self::NO_HTTP_HANDLER,
        Self::SERVICE_BUSY,
        Self::BODY_TIMEOUT,
        Self::BAD_BODY,
    ];

    /// An error of this number whose message is the meaning alone.
    pub fn error(self) -> ApiError {
        ApiError {
            status: self.status,
            code: self.number,
            message: self.meaning.to_owned(),
        }
    }

    /// An error of this number whose message is the meaning, then `detail`
    /// (the subject: a field, an id, a size).
    pub fn with(self, detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: self.status,
            code: self.number,
            message: format!("{}: {detail}", self.meaning),
        }
    }

    /// A size above a limit, said the same way for every limit.
    pub fn over_limit(self, size: usize, limit: usize) -> ApiError {
        self.with(format_args!("{size} bytes, the limit is {limit}"))
    }
}

/// An error answered to a reverse-push caller or a handler's host call: an
/// HTTP status plus the `errNo`/`errMsg` pair, made from a row of [`ErrNo`]
/// (or, for a register refusal, the handler's own pair).
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
    /// A refusal by the register handler, carrying its own `errNo`/`errMsg`.
    pub fn refused(code: i32, message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code,
            message,
        }
    }

    /// The same error answered with another HTTP status (an upgrade refused
    /// for a reason the upgrade check chose the status of).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The JSON body `{"errNo", "errMsg"}`.
    pub fn body(&self) -> Value {
        json!({ "errNo": self.code, "errMsg": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// The body of a successful reverse push: `{"errNo": 0, "errMsg": "ok"}`.
pub fn ok_body() -> Value {
    ErrNo::OK.error().body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_in_order() {
        for pair in ErrNo::ALL.windows(2) {
            assert!(pair[0].number < pair[1].number, "{pair:?}");
        }
    }

    #[test]
    fn messages_start_with_the_meaning() {
        let error = ErrNo::CONNECTION_NOT_FOUND.with("abc");
        assert_eq!(error.code, 2202);
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(
            error.message,
            "no live connection with this id in this service: abc"
        );
        assert_eq!(
            ErrNo::PAYLOAD_TOO_LARGE.over_limit(10, 4).message,
            "payload larger than the limit: 10 bytes, the limit is 4"
        );
        assert_eq!(ok_body(), json!({"errNo": 0, "errMsg": "ok"}));
    }
}
