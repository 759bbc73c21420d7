//! Durable key-value state of the handler's service.
//!
//! Keys belong to the service: another service can neither read nor change
//! them. Keys are 1 to 512 bytes of UTF-8, values up to 1 MiB of bytes. On
//! a single gateway a write returns once it is on disk, so it survives a
//! crash of the gateway; on a cluster the store is Redis, shared by every
//! node and as durable as Redis's persistence, and a call may fail with
//! [`GatewayError::STORE_UNAVAILABLE`](crate::GatewayError::STORE_UNAVAILABLE)
//! while Redis cannot be reached.
//! Counters ([`increment`]) are stored as decimal text.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmgate_guest::kv;
//!
//! kv::set("greeting", b"hello")?;
//! assert_eq!(kv::get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! kv::set_with_ttl("session/abc", b"token", Duration::from_secs(60))?;
//! let visits = kv::increment("visits", 1)?;
//! let names = kv::keys("session/")?;
//! # Ok::<(), wasmgate_guest::GatewayError>(())
//! ```
//!
//! Outside a wasm gateway every call answers
//! [`GatewayError::NOT_IN_GATEWAY`](crate::GatewayError::NOT_IN_GATEWAY).

use std::time::Duration;

use crate::GatewayError;

/// One page of keys from [`list_keys`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

/// The value of `key`, or `None` when it is absent or expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, GatewayError> {
    imp::get(key)
}

/// The value of `key` as text (invalid UTF-8 is replaced), or `None`.
pub fn get_string(key: &str) -> Result<Option<String>, GatewayError> {
    Ok(get(key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Sets `key` to `value`; it never expires.
pub fn set(key: &str, value: &[u8]) -> Result<(), GatewayError> {
    imp::set(key, value, None)
}

/// Sets `key` to `value`; it expires after `ttl` (millisecond precision).
pub fn set_with_ttl(key: &str, value: &[u8], ttl: Duration) -> Result<(), GatewayError> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    imp::set(key, value, Some(ttl_ms))
}

/// Removes `key`; `true` when it existed.
pub fn delete(key: &str) -> Result<bool, GatewayError> {
    imp::delete(key)
}

/// Whether `key` holds a value.
pub fn exists(key: &str) -> Result<bool, GatewayError> {
    imp::exists(key)
}

/// One page (at most 1000) of the keys that start with `prefix`, in byte
/// order; pass the previous page's cursor to continue.
pub fn list_keys(prefix: &str, cursor: Option<&str>) -> Result<KeyPage, GatewayError> {
    imp::list_keys(prefix, cursor)
}

/// Every key that starts with `prefix`, reading page after page.
pub fn keys(prefix: &str) -> Result<Vec<String>, GatewayError> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_keys(prefix, cursor.as_deref())?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

/// One page of keys with their values from [`list_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryPage {
    /// Keys and values in key byte order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

/// One page of the keys that start with `prefix` with their values, in
/// byte order, from one snapshot: at most 1000 entries and 8 MiB of values
/// (at least one entry); pass the previous page's cursor to continue.
pub fn list_entries(prefix: &str, cursor: Option<&str>) -> Result<EntryPage, GatewayError> {
    imp::list_entries(prefix, cursor)
}

/// Every key that starts with `prefix` with its value, reading page after
/// page (each page one snapshot).
pub fn entries(prefix: &str) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_entries(prefix, cursor.as_deref())?;
        entries.extend(page.entries);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}

/// The values of `keys`, in their order (`None`: absent), from one
/// snapshot: at most 1000 keys and 8 MiB of values, else
/// [`GatewayError::READ_TOO_LARGE`].
pub fn get_many(keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GatewayError> {
    imp::get_many(keys)
}

/// Atomically adds `delta` to the counter at `key` (absent counts as 0);
/// returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, GatewayError> {
    imp::increment(key, delta)
}

/// Atomically sets `key` to `value` if it now holds `expected` (`None`: if
/// it is absent); returns whether it did.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    value: &[u8],
) -> Result<bool, GatewayError> {
    imp::compare_and_swap(key, expected, value)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{EntryPage, KeyPage};
    use crate::bindings::wasmgate::gateway::kv;
    use crate::host::gateway_error;
    use crate::GatewayError;

    pub(super) fn get(key: &str) -> Result<Option<Vec<u8>>, GatewayError> {
        kv::get(key).map_err(gateway_error)
    }

    pub(super) fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), GatewayError> {
        kv::set(key, value, ttl_ms).map_err(gateway_error)
    }

    pub(super) fn delete(key: &str) -> Result<bool, GatewayError> {
        kv::delete(key).map_err(gateway_error)
    }

    pub(super) fn exists(key: &str) -> Result<bool, GatewayError> {
        kv::exists(key).map_err(gateway_error)
    }

    pub(super) fn list_keys(prefix: &str, cursor: Option<&str>) -> Result<KeyPage, GatewayError> {
        let page = kv::list_keys(prefix, cursor).map_err(gateway_error)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    pub(super) fn increment(key: &str, delta: i64) -> Result<i64, GatewayError> {
        kv::increment(key, delta).map_err(gateway_error)
    }

    pub(super) fn list_entries(
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<EntryPage, GatewayError> {
        let page = kv::list_entries(prefix, cursor).map_err(gateway_error)?;
        Ok(EntryPage {
            entries: page
                .entries
                .into_iter()
                .map(|entry| (entry.key, entry.value))
                .collect(),
            cursor: page.cursor,
        })
    }

    pub(super) fn get_many(keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GatewayError> {
        let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        kv::get_many(&keys).map_err(gateway_error)
    }

    pub(super) fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, GatewayError> {
        kv::compare_and_swap(key, expected, value).map_err(gateway_error)
    }
}

/// Stand-ins for native builds: there is no gateway to hold the state.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{EntryPage, KeyPage};
    use crate::host::not_in_gateway;
    use crate::GatewayError;

    pub(super) fn get(_key: &str) -> Result<Option<Vec<u8>>, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn set(_key: &str, _value: &[u8], _ttl_ms: Option<u64>) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn delete(_key: &str) -> Result<bool, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn exists(_key: &str) -> Result<bool, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn list_keys(_prefix: &str, _cursor: Option<&str>) -> Result<KeyPage, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn increment(_key: &str, _delta: i64) -> Result<i64, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn list_entries(
        _prefix: &str,
        _cursor: Option<&str>,
    ) -> Result<EntryPage, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn get_many(_keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn compare_and_swap(
        _key: &str,
        _expected: Option<&[u8]>,
        _value: &[u8],
    ) -> Result<bool, GatewayError> {
        Err(not_in_gateway())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn calls_outside_a_gateway_fail_politely() {
        let code = GatewayError::NOT_IN_GATEWAY;
        assert_eq!(get("k").unwrap_err().err_no, code);
        assert_eq!(set("k", b"v").unwrap_err().err_no, code);
        assert_eq!(keys("").unwrap_err().err_no, code);
        assert_eq!(increment("n", 1).unwrap_err().err_no, code);
    }
}
