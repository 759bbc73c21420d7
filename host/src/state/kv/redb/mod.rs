//! The embedded backend: every service's rows in one [redb] file.
//!
//! Why redb: an embedded, pure-Rust store with ACID transactions, crash
//! safety by copy-on-write B-trees and checksums, and no C toolchain or server
//! to install. SQLite would do as well but brings a C build and a query
//! language the gateway does not need.
//!
//! Rows live in one table keyed by `(service, key)`; beside it, the store
//! keeps what each service holds (rows and bytes, in the usage table) and
//! an expiry index keyed by `(expires at, service, key)`, all updated in
//! the transaction that changes the rows. Quotas are checked against the
//! usage table and expired rows are found through the index, so no write
//! ever scans a service's rows ([`apply`]).
//!
//! Reads run on the caller's thread in their own read transaction. Writes go
//! to one writer thread ([`writer`]) that commits them in groups: it takes
//! waiting writes, one of each service in turn ([`queue`]), applies them in
//! one transaction and commits once (one `fsync` for the group), and only
//! then answers each caller. So a write acknowledged to a handler is on
//! disk, atomic operations (`increment`, `compare-and-swap`) are atomic
//! because exactly one thread applies writes, and a service writing as fast
//! as it can delays another's write by at most one small group (at most 16
//! of its writes).
//!
//! Expiry is lazy: an expired key reads as absent at once, and its row is
//! removed by a sweep every [`SWEEP_EVERY`] (a bounded batch per
//! transaction, oldest first, until none is due), by a write to that key,
//! or to make room for a service at its quota.

mod apply;
mod queue;
mod writer;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};
use tokio::sync::oneshot;

use self::apply::{rebuild_index, usage_of};
use self::writer::{write_loop, Job, WriteOp, Written};

use super::{EntryPage, KeyPage, KvBackend, KvQuota, KvUsage, LIST_PAGE_KEYS, READ_MANY_BYTES};
use crate::protocol::{ApiError, ErrNo};
use crate::state::now_ms;

/// How often expired keys are removed from disk.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// `(service, key)` → `(expires_at_ms or 0, value)`.
pub(super) const ENTRIES: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("kv");

/// `service` → `(rows, bytes of keys and values)` it holds (expired rows
/// included until they are removed).
pub(super) const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("kv_usage");

/// `(expires_at_ms, service, key)` for every row with a time to live.
pub(super) const EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("kv_expiry");

/// Rows per service, as stores before the usage table counted them.
const LEGACY_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("kv_counts");

/// The redb backend. Cheap to clone.
#[derive(Clone)]
pub struct RedbBackend {
    db: Arc<Database>,
    writes: mpsc::Sender<Job>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

pub(super) fn storage(error: impl Into<redb::Error>) -> ApiError {
    ErrNo::STORAGE.with(error.into())
}

pub(super) fn live(expires_at_ms: u64, now: u64) -> bool {
    expires_at_ms == 0 || expires_at_ms > now
}

impl RedbBackend {
    /// Opens (or creates) the store in the file `path`. Fails when another
    /// process holds it open.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let db = Database::create(path)
            .map_err(|e| anyhow::anyhow!("opening the state store {}: {e}", path.display()))?;
        Self::start(db)
    }

    /// A store in memory, gone when the process ends.
    pub fn in_memory() -> anyhow::Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::start(db)
    }

    fn start(db: Database) -> anyhow::Result<Self> {
        let txn = db.begin_write()?;
        let indexed = txn.list_tables()?.any(|table| table.name() == USAGE.name());
        txn.open_table(ENTRIES)?;
        txn.open_table(USAGE)?;
        txn.open_table(EXPIRY)?;
        if !indexed {
            // A store from before the usage table and the expiry index: fill
            // both once, here, rather than scan on a write later.
            rebuild_index(&txn).map_err(|e| anyhow::anyhow!("indexing the state store: {e}"))?;
        }
        txn.delete_table(LEGACY_COUNTS)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (writes, receiver) = mpsc::channel();
        let writer_db = db.clone();
        // The thread ends, and lets go of the file, once every clone of the
        // backend is dropped.
        std::thread::Builder::new()
            .name("wasmgate-kv".into())
            .spawn(move || write_loop(&writer_db, &receiver))?;
        Ok(Self { db, writes })
    }

    async fn write(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        op: WriteOp,
    ) -> Result<Written, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Job {
                service: service.clone(),
                quota,
                op,
                reply,
            })
            .map_err(|_| ErrNo::STORAGE.with("the store is closed"))?;
        answer
            .await
            .map_err(|_| ErrNo::STORAGE.with("the store's writer stopped"))?
    }

    fn read<T>(
        &self,
        read: impl FnOnce(
            &redb::ReadOnlyTable<(&'static str, &'static str), (u64, &'static [u8])>,
            u64,
        ) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        read(&table, now_ms())
    }
}

/// Walks the live rows of `service` whose keys start with `prefix`, in key
/// order after `cursor`, handing each to `take` until it answers `false`
/// (the page is full). Returns whether it stopped so, i.e. whether a next
/// page may follow.
fn scan_page(
    table: &redb::ReadOnlyTable<(&'static str, &'static str), (u64, &'static [u8])>,
    now: u64,
    service: &str,
    prefix: &str,
    cursor: Option<&str>,
    mut take: impl FnMut(&str, &[u8]) -> bool,
) -> Result<bool, ApiError> {
    let start = match cursor {
        Some(cursor) if cursor >= prefix => cursor,
        _ => prefix,
    };
    for entry in table.range((service, start)..).map_err(storage)? {
        let (key, entry) = entry.map_err(storage)?;
        let (owner, key) = key.value();
        if owner != service || !key.starts_with(prefix) {
            break;
        }
        let (expires_at_ms, value) = entry.value();
        if Some(key) == cursor || !live(expires_at_ms, now) {
            continue;
        }
        if !take(key, value) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait::async_trait]
impl KvBackend for RedbBackend {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.read(|table, now| {
            Ok(table
                .get((service, key))
                .map_err(storage)?
                .and_then(|entry| {
                    let (expires_at_ms, value) = entry.value();
                    live(expires_at_ms, now).then(|| value.to_vec())
                }))
        })
    }

    async fn exists(&self, service: &str, key: &str) -> Result<bool, ApiError> {
        self.read(|table, now| {
            Ok(table
                .get((service, key))
                .map_err(storage)?
                .is_some_and(|entry| live(entry.value().0, now)))
        })
    }

    async fn list_keys(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, ApiError> {
        self.read(|table, now| {
            let mut keys = Vec::new();
            let full = scan_page(table, now, service, prefix, cursor, |key, _| {
                if keys.len() == LIST_PAGE_KEYS {
                    return false;
                }
                keys.push(key.to_owned());
                true
            })?;
            let cursor = if full { keys.last().cloned() } else { None };
            Ok(KeyPage { keys, cursor })
        })
    }

    async fn list_entries(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<EntryPage, ApiError> {
        self.read(|table, now| {
            let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
            let mut bytes = 0usize;
            let full = scan_page(table, now, service, prefix, cursor, |key, value| {
                if entries.len() == LIST_PAGE_KEYS
                    || (!entries.is_empty() && bytes + value.len() > READ_MANY_BYTES)
                {
                    return false;
                }
                bytes += value.len();
                entries.push((key.to_owned(), value.to_vec()));
                true
            })?;
            let cursor = if full {
                entries.last().map(|(key, _)| key.clone())
            } else {
                None
            };
            Ok(EntryPage { entries, cursor })
        })
    }

    async fn get_many(
        &self,
        service: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ApiError> {
        self.read(|table, now| {
            let mut bytes = 0usize;
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                let value = table
                    .get((service, key.as_str()))
                    .map_err(storage)?
                    .and_then(|entry| {
                        let (expires_at_ms, value) = entry.value();
                        live(expires_at_ms, now).then(|| value.to_vec())
                    });
                bytes += value.as_ref().map_or(0, Vec::len);
                if bytes > READ_MANY_BYTES {
                    return Err(ErrNo::READ_TOO_LARGE.with(format_args!(
                        "the values are larger than {READ_MANY_BYTES} bytes together"
                    )));
                }
                values.push(value);
            }
            Ok(values)
        })
    }

    async fn usage(&self, service: &str) -> Result<KvUsage, ApiError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let usage = txn.open_table(USAGE).map_err(storage)?;
        usage_of(&usage, service)
    }

    async fn set(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), ApiError> {
        let expires_at_ms = match ttl {
            None => 0,
            Some(ttl) => now_ms()
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                .max(1),
        };
        self.write(
            service,
            quota,
            WriteOp::Set {
                key,
                value,
                expires_at_ms,
            },
        )
        .await
        .map(|_| ())
    }

    async fn delete(&self, service: &Arc<str>, key: String) -> Result<bool, ApiError> {
        match self
            .write(service, KvQuota::UNLIMITED, WriteOp::Delete { key })
            .await?
        {
            Written::Existed(existed) => Ok(existed),
            other => unreachable!("delete answered {other:?}"),
        }
    }

    async fn increment(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        delta: i64,
    ) -> Result<i64, ApiError> {
        match self
            .write(service, quota, WriteOp::Increment { key, delta })
            .await?
        {
            Written::Counter(value) => Ok(value),
            other => unreachable!("increment answered {other:?}"),
        }
    }

    async fn compare_and_swap(
        &self,
        service: &Arc<str>,
        quota: KvQuota,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, ApiError> {
        match self
            .write(
                service,
                quota,
                WriteOp::CompareAndSwap {
                    key,
                    expected,
                    value,
                },
            )
            .await?
        {
            Written::Swapped(swapped) => Ok(swapped),
            other => unreachable!("compare-and-swap answered {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests;
