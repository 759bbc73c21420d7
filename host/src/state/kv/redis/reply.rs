//! Reading what Redis answers: script replies, and failures as errNos.

use redis::{RedisError, RetryMethod, Value};

use super::super::{byte_quota_refusal, key_quota_refusal, KvQuota};
use crate::protocol::{ApiError, ErrNo};

/// What a failed command answers: 2410 when Redis cannot serve now (down,
/// unreachable, loading, busy), 2405 for any other failure.
pub(super) fn failed(error: &RedisError) -> ApiError {
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.code() == Some("BUSY")
        || matches!(
            error.retry_method(),
            RetryMethod::Reconnect | RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry
        );
    if transient {
        ErrNo::STORE_UNAVAILABLE.with(error)
    } else {
        ErrNo::STORAGE.with(error)
    }
}

/// A script's reply that is not what the script answers.
pub(super) fn unexpected(reply: &[Value]) -> ApiError {
    ErrNo::STORAGE.with(format_args!("unexpected answer from Redis: {reply:?}"))
}

pub(super) fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

pub(super) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

pub(super) fn text(value: Value) -> Option<String> {
    String::from_utf8(bytes(value)?).ok()
}

/// The first element of a write script's reply: `Ok` after 0, else the
/// quota refusal it names.
pub(super) fn status(reply: &[Value], quota: KvQuota) -> Result<(), ApiError> {
    match integer(reply.first()) {
        Some(0) => Ok(()),
        Some(2403) => Err(key_quota_refusal(quota)),
        Some(2408) => match integer(reply.get(1)) {
            Some(after) => Err(byte_quota_refusal(after.unsigned_abs(), quota)),
            None => Err(unexpected(reply)),
        },
        _ => Err(unexpected(reply)),
    }
}
