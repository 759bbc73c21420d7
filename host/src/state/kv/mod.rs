//! Durable key-value state per service, behind the `kv` interface of the
//! handler world.
//!
//! [`KvStore`] is what handlers reach: it checks the limits every backend
//! shares (key and value sizes; the service's [`KvQuota`] of keys and bytes
//! is passed down, to be enforced where the write is applied) and hands the
//! operation to a [`KvBackend`]. Two backends implement it, chosen in the
//! gateway's configuration (`[kv] type`), never per handler: redb
//! ([`redb`]), embedded in the gateway's process, one file per node; and
//! Redis ([`redis`]), shared by several gateway nodes, the default of a
//! clustered node. Both answer the same errNos; the tests of this module
//! run against both.
//!
//! Rows are always addressed by `(service, key)`, so a service can only
//! ever reach its own keys, whatever the backend.

mod redb;
mod redis;
#[cfg(test)]
#[path = "../../../tests/common/redis.rs"]
mod redis_server;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{ApiError, ErrNo};

pub use self::redb::{RedbBackend, SWEEP_EVERY};
pub use self::redis::{RedisBackend, IN_FLIGHT_PER_SERVICE};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most keys returned by one `list-keys` page.
pub const LIST_PAGE_KEYS: usize = 1000;

/// Most keys one `get_many` reads.
pub const GET_MANY_KEYS: usize = 1000;

/// Most bytes of values one `get_many` answers, or one page of
/// `list_entries` holds (a page always holds at least one entry).
pub const READ_MANY_BYTES: usize = 8 << 20;

/// A page of keys with their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPage {
    /// Keys and values, in key byte order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// The last key of a full page, to continue after; `None` on the last page.
    pub cursor: Option<String>,
}

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// The last key of a full page, to continue after; `None` on the last page.
    pub cursor: Option<String>,
}

/// What a service may hold in the store, from its `kv_max_keys` and
/// `kv_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Most rows.
    pub max_keys: u64,
    /// Most bytes of keys and values together.
    pub max_bytes: u64,
}

impl KvQuota {
    /// No limit: for tests and tools that hold the whole store.
    pub const UNLIMITED: Self = Self {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
    };
}

/// What a service holds in the store, as counted by the store itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Rows (expired ones count until they are removed).
    pub keys: u64,
    /// Bytes of keys and values of those rows.
    pub bytes: u64,
}

/// Where a service's rows are stored. Keys and values reaching a backend
/// have been checked against [`MAX_KEY_BYTES`] and [`MAX_VALUE_BYTES`].
///
/// Contract: a write returns once it is durable as far as the backend
/// promises; `increment` and `compare_and_swap` are atomic against every
/// other write of the same key; an expired key reads as absent at once;
/// a new row is refused with errNo 2403 when the service already holds
/// `max_keys` rows, and a write that would take its keys and values past
/// `max_bytes` with errNo 2408. Both are counted, never found by a scan.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + std::fmt::Debug {
    /// The value of `key`, if present and not expired.
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, ApiError>;

    /// Whether `key` is present and not expired.
    async fn exists(&self, service: &str, key: &str) -> Result<bool, ApiError>;

    /// Keys starting with `prefix` after `cursor`, at most
    /// [`LIST_PAGE_KEYS`], in byte order.
    async fn list_keys(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, ApiError>;

    /// Keys starting with `prefix` after `cursor`, with their values, in
    /// byte order: at most [`LIST_PAGE_KEYS`] entries and
    /// [`READ_MANY_BYTES`] of values (but at least one entry), read from
    /// one snapshot.
    async fn list_entries(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<EntryPage, ApiError>;

    /// The values of `keys` (already checked, at most [`GET_MANY_KEYS`]),
    /// in their order, from one snapshot: `None` for an absent key. Values
    /// of more than [`READ_MANY_BYTES`] together fail with errNo 2409.
    async fn get_many(
        &self,
        service: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ApiError>;

    /// Rows and bytes the service holds (expired rows may count until
    /// they are removed).
    async fn usage(&self, service: &str) -> Result<KvUsage, ApiError>;

    /// Sets `key`, with an optional time to live.
    async fn set(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), ApiError>;

    /// Removes `key`; whether it existed (and had not expired).
    async fn delete(&self, service: &Arc<str>, key: String) -> Result<bool, ApiError>;

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0);
    /// the new value.
    async fn increment(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        delta: i64,
    ) -> Result<i64, ApiError>;

    /// Sets `key` to `value` if it currently holds `expected` (`None`:
    /// absent); whether it did.
    async fn compare_and_swap(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, ApiError>;
}

/// The refusal of a new key past `max_keys` (2403), the same from every
/// backend.
fn key_quota_refusal(quota: KvQuota) -> ApiError {
    ErrNo::KEY_QUOTA.with(quota.max_keys)
}

/// The refusal of a write that would take the service to `after` bytes,
/// past `max_bytes` (2408).
fn byte_quota_refusal(after: u64, quota: KvQuota) -> ApiError {
    ErrNo::BYTE_QUOTA.with(format_args!(
        "{after} bytes of keys and values, more than {}",
        quota.max_bytes
    ))
}

/// `increment` of a value that is no decimal integer (2404).
fn not_a_counter(key: &str) -> ApiError {
    ErrNo::NOT_A_COUNTER.with(format!("the value of {key:?} is not a decimal integer"))
}

/// `increment` past the 64-bit range (2404).
fn counter_overflow(counter: impl std::fmt::Display, delta: i64) -> ApiError {
    ErrNo::NOT_A_COUNTER.with(format!("{counter} + {delta} overflows a 64-bit counter"))
}

/// Checks a key against the limits.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ErrNo::INVALID_KEY.with("empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ErrNo::INVALID_KEY.with(format_args!(
            "{} bytes, longer than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ErrNo::VALUE_TOO_LARGE.over_limit(value.len(), MAX_VALUE_BYTES));
    }
    Ok(())
}

/// The gateway's key-value store: the limits, then the backend. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct KvStore {
    backend: Arc<dyn KvBackend>,
}

impl KvStore {
    /// A store on `backend`.
    pub fn new(backend: Arc<dyn KvBackend>) -> Self {
        Self { backend }
    }

    /// The redb store in the file `path`, created if needed. Fails when
    /// another process holds it open.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::new(Arc::new(RedbBackend::open(path)?)))
    }

    /// A redb store in memory, gone when the process ends (for `wasmgate
    /// invoke` and tests that do not need durability).
    pub fn in_memory() -> anyhow::Result<Self> {
        Ok(Self::new(Arc::new(RedbBackend::in_memory()?)))
    }

    /// The store on the Redis at `url`, shared with every node that uses it.
    /// It connects at its first command.
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        Ok(Self::new(Arc::new(RedisBackend::open(url)?)))
    }

    /// The value of `key`, if present and not expired.
    pub async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        timed("get", async {
            check_key(key)?;
            self.backend.get(service, key).await
        })
        .await
    }

    /// Whether `key` is present and not expired, without copying its value.
    pub async fn exists(&self, service: &str, key: &str) -> Result<bool, ApiError> {
        timed("exists", async {
            check_key(key)?;
            self.backend.exists(service, key).await
        })
        .await
    }

    /// Keys of `service` starting with `prefix`, after `cursor`.
    pub async fn list_keys(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, ApiError> {
        timed("list_keys", self.backend.list_keys(service, prefix, cursor)).await
    }

    /// Keys of `service` starting with `prefix`, after `cursor`, with their
    /// values.
    pub async fn list_entries(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<EntryPage, ApiError> {
        timed(
            "list_entries",
            self.backend.list_entries(service, prefix, cursor),
        )
        .await
    }

    /// The values of `keys`, in their order (`None`: absent), from one
    /// snapshot; at most [`GET_MANY_KEYS`] keys and [`READ_MANY_BYTES`] of
    /// values.
    pub async fn get_many(
        &self,
        service: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ApiError> {
        timed("get_many", async {
            if keys.len() > GET_MANY_KEYS {
                return Err(ErrNo::READ_TOO_LARGE.with(format_args!(
                    "{} keys, more than {GET_MANY_KEYS}",
                    keys.len()
                )));
            }
            keys.iter().try_for_each(|key| check_key(key))?;
            self.backend.get_many(service, keys).await
        })
        .await
    }

    /// Rows and bytes `service` holds (expired rows until they are removed).
    pub async fn usage(&self, service: &str) -> Result<KvUsage, ApiError> {
        self.backend.usage(service).await
    }

    /// Sets `key`, with an optional time to live; returns once durable.
    pub async fn set(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), ApiError> {
        timed("set", async {
            check_key(&key)?;
            check_value(&value)?;
            self.backend.set(service, quota, key, value, ttl).await
        })
        .await
    }

    /// Removes `key`; whether it existed (and had not expired).
    pub async fn delete(&self, service: &Arc<str>, key: String) -> Result<bool, ApiError> {
        timed("delete", async {
            check_key(&key)?;
            self.backend.delete(service, key).await
        })
        .await
    }

    /// Adds `delta` to the decimal counter at `key`; the new value.
    pub async fn increment(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        delta: i64,
    ) -> Result<i64, ApiError> {
        timed("increment", async {
            check_key(&key)?;
            self.backend.increment(service, quota, key, delta).await
        })
        .await
    }

    /// Sets `key` to `value` if it currently holds `expected`.
    pub async fn compare_and_swap(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, ApiError> {
        timed("compare_and_swap", async {
            check_key(&key)?;
            check_value(&value)?;
            self.backend
                .compare_and_swap(service, quota, key, expected, value)
                .await
        })
        .await
    }
}

/// Runs one key-value `operation`, counting it and its time in the metrics.
async fn timed<T>(
    operation: &'static str,
    run: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = std::time::Instant::now();
    let result = run.await;
    crate::metrics::global().kv(operation, started.elapsed(), &result);
    result
}
