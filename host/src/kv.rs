//! Durable key-value state per service, on [redb].
//!
//! Why redb: an embedded, pure-Rust store with ACID transactions, crash
//! safety by copy-on-write B-trees and checksums, and no C toolchain or server
//! to install; one file holds every service's keys. SQLite would do as well
//! but brings a C build and a query language the gateway does not need.
//!
//! Keys live in one table keyed by `(service, key)`, so a service can only
//! ever address its own rows. Reads run on the caller's thread in their own
//! read transaction. Writes go to one writer thread that commits them in
//! groups: it takes every write that is waiting, applies them in order in one
//! transaction and commits once (one `fsync` for the group), and only then
//! answers each caller. So a write acknowledged to a handler is on disk, and
//! atomic operations (`increment`, `compare-and-swap`) are atomic because
//! exactly one thread applies writes.
//!
//! Expiry is lazy: an expired key reads as absent at once, and its row is
//! removed by a sweep (every [`SWEEP_EVERY`], and for a service that reaches
//! its key limit before the limit is enforced).

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::protocol::ApiError;
use crate::router::now_ms;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most keys returned by one `list-keys` page.
pub const LIST_PAGE_KEYS: usize = 1000;

/// How often expired keys are removed from disk.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// `(service, key)` → `(expires_at_ms or 0, value)`.
const ENTRIES: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("kv");

/// `service` → number of rows it holds (expired rows included until swept).
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("kv_counts");

/// What a write did, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    Done,
    Existed(bool),
    Counter(i64),
    Swapped(bool),
}

/// One write, applied by the writer thread.
#[derive(Debug)]
enum WriteOp {
    Set {
        key: String,
        value: Vec<u8>,
        expires_at_ms: u64,
    },
    Delete {
        key: String,
    },
    Increment {
        key: String,
        delta: i64,
    },
    CompareAndSwap {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

struct Job {
    service: Arc<str>,
    max_keys: u64,
    op: WriteOp,
    reply: oneshot::Sender<Result<Written, ApiError>>,
}

/// The gateway's key-value store. Cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Job>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// The last key of a full page, to continue after; `None` on the last page.
    pub cursor: Option<String>,
}

fn storage(error: impl Into<redb::Error>) -> ApiError {
    ApiError::storage(error.into())
}

fn live(expires_at_ms: u64, now: u64) -> bool {
    expires_at_ms == 0 || expires_at_ms > now
}

/// Checks a key against the limits.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid_key("empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_key(format!(
            "{} bytes, longer than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::value_too_large(value.len(), MAX_VALUE_BYTES));
    }
    Ok(())
}

impl KvStore {
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

    /// A store in memory, gone when the process ends (for `wasmgate invoke`
    /// and tests that do not need durability).
    pub fn in_memory() -> anyhow::Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::start(db)
    }

    fn start(db: Database) -> anyhow::Result<Self> {
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(COUNTS)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (writes, receiver) = mpsc::channel();
        let writer_db = db.clone();
        // The thread ends, and lets go of the file, once every clone of the
        // store is dropped.
        std::thread::Builder::new()
            .name("wasmgate-kv".into())
            .spawn(move || write_loop(&writer_db, &receiver))?;
        Ok(Self { db, writes })
    }

    async fn write(
        &self,
        service: &Arc<str>,
        max_keys: u64,
        op: WriteOp,
    ) -> Result<Written, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Job {
                service: service.clone(),
                max_keys,
                op,
                reply,
            })
            .map_err(|_| ApiError::storage("the store is closed"))?;
        answer
            .await
            .map_err(|_| ApiError::storage("the store's writer stopped"))?
    }

    /// The value of `key`, if present and not expired.
    pub fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        check_key(key)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let now = now_ms();
        Ok(table
            .get((service, key))
            .map_err(storage)?
            .and_then(|entry| {
                let (expires_at_ms, value) = entry.value();
                live(expires_at_ms, now).then(|| value.to_vec())
            }))
    }

    /// Whether `key` is present and not expired, without copying its value.
    pub fn exists(&self, service: &str, key: &str) -> Result<bool, ApiError> {
        check_key(key)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let now = now_ms();
        Ok(table
            .get((service, key))
            .map_err(storage)?
            .is_some_and(|entry| live(entry.value().0, now)))
    }

    /// Keys of `service` starting with `prefix`, after `cursor`.
    pub fn list_keys(
        &self,
        service: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, ApiError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let now = now_ms();
        let start = match cursor {
            Some(cursor) if cursor >= prefix => cursor,
            _ => prefix,
        };
        let mut keys = Vec::new();
        let mut full = false;
        for entry in table.range((service, start)..).map_err(storage)? {
            let (key, entry) = entry.map_err(storage)?;
            let (owner, key) = key.value();
            if owner != service || !key.starts_with(prefix) {
                break;
            }
            if Some(key) == cursor || !live(entry.value().0, now) {
                continue;
            }
            if keys.len() == LIST_PAGE_KEYS {
                full = true;
                break;
            }
            keys.push(key.to_owned());
        }
        let cursor = if full { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, cursor })
    }

    /// Number of rows `service` holds (expired ones until they are swept).
    pub fn count(&self, service: &str) -> Result<u64, ApiError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let counts = txn.open_table(COUNTS).map_err(storage)?;
        count_of(&counts, service)
    }

    /// Sets `key`, with an optional time to live; returns once on disk.
    pub async fn set(
        &self,
        service: &Arc<str>,
        max_keys: u64,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), ApiError> {
        check_key(&key)?;
        check_value(&value)?;
        let expires_at_ms = match ttl {
            None => 0,
            Some(ttl) => now_ms()
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                .max(1),
        };
        self.write(
            service,
            max_keys,
            WriteOp::Set {
                key,
                value,
                expires_at_ms,
            },
        )
        .await
        .map(|_| ())
    }

    /// Removes `key`; whether it existed (and had not expired).
    pub async fn delete(&self, service: &Arc<str>, key: String) -> Result<bool, ApiError> {
        check_key(&key)?;
        match self.write(service, 0, WriteOp::Delete { key }).await? {
            Written::Existed(existed) => Ok(existed),
            other => unreachable!("delete answered {other:?}"),
        }
    }

    /// Adds `delta` to the decimal counter at `key`; the new value.
    pub async fn increment(
        &self,
        service: &Arc<str>,
        max_keys: u64,
        key: String,
        delta: i64,
    ) -> Result<i64, ApiError> {
        check_key(&key)?;
        match self
            .write(service, max_keys, WriteOp::Increment { key, delta })
            .await?
        {
            Written::Counter(value) => Ok(value),
            other => unreachable!("increment answered {other:?}"),
        }
    }

    /// Sets `key` to `value` if it currently holds `expected`.
    pub async fn compare_and_swap(
        &self,
        service: &Arc<str>,
        max_keys: u64,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, ApiError> {
        check_key(&key)?;
        check_value(&value)?;
        match self
            .write(
                service,
                max_keys,
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

/// The writer thread: applies waiting writes in groups, one commit each,
/// and sweeps expired rows every [`SWEEP_EVERY`].
fn write_loop(db: &Database, receiver: &mpsc::Receiver<Job>) {
    let mut last_sweep = Instant::now();
    loop {
        let wait = SWEEP_EVERY.saturating_sub(last_sweep.elapsed());
        let mut jobs = Vec::new();
        match receiver.recv_timeout(wait) {
            Ok(job) => jobs.push(job),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while jobs.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let sweep = last_sweep.elapsed() >= SWEEP_EVERY;
        if sweep {
            last_sweep = Instant::now();
        }
        match apply(db, &jobs, sweep) {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = jobs.len(), "state store commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies a group of writes in one transaction and commits it.
fn apply(
    db: &Database,
    jobs: &[Job],
    sweep: bool,
) -> Result<Vec<Result<Written, ApiError>>, ApiError> {
    let txn = db.begin_write().map_err(storage)?;
    let mut results = Vec::with_capacity(jobs.len());
    {
        let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
        let mut counts = txn.open_table(COUNTS).map_err(storage)?;
        let now = now_ms();
        if sweep {
            sweep_expired(&mut entries, &mut counts, None, now)?;
        }
        for job in jobs {
            results.push(apply_one(&mut entries, &mut counts, job, now)?);
        }
    }
    txn.commit().map_err(storage)?;
    Ok(results)
}

type Entries<'t> = redb::Table<'t, (&'static str, &'static str), (u64, &'static [u8])>;
type Counts<'t> = redb::Table<'t, &'static str, u64>;

/// Applies one write. The outer error aborts the whole group (a storage
/// failure); the inner one is this write's own answer.
fn apply_one(
    entries: &mut Entries<'_>,
    counts: &mut Counts<'_>,
    job: &Job,
    now: u64,
) -> Result<Result<Written, ApiError>, ApiError> {
    let service: &str = &job.service;
    let current = |entries: &Entries<'_>, key: &str| -> Result<Option<(u64, Vec<u8>)>, ApiError> {
        Ok(entries.get((service, key)).map_err(storage)?.map(|entry| {
            let (expires_at_ms, value) = entry.value();
            (expires_at_ms, value.to_vec())
        }))
    };
    // Writes `value` under `key`, counting a new row against the quota.
    let put = |entries: &mut Entries<'_>,
               counts: &mut Counts<'_>,
               key: &str,
               expires_at_ms: u64,
               value: &[u8],
               existed: bool|
     -> Result<Result<(), ApiError>, ApiError> {
        if !existed {
            let mut count = count_of(counts, service)?;
            if count >= job.max_keys {
                sweep_expired(entries, counts, Some(service), now)?;
                count = count_of(counts, service)?;
                if count >= job.max_keys {
                    return Ok(Err(ApiError::key_quota(job.max_keys)));
                }
            }
            counts.insert(service, count + 1).map_err(storage)?;
        }
        entries
            .insert((service, key), (expires_at_ms, value))
            .map_err(storage)?;
        Ok(Ok(()))
    };
    Ok(match &job.op {
        WriteOp::Set {
            key,
            value,
            expires_at_ms,
        } => {
            // Only whether a row is there; its value is not needed.
            let existed = entries
                .get((service, key.as_str()))
                .map_err(storage)?
                .is_some();
            put(entries, counts, key, *expires_at_ms, value, existed)?.map(|()| Written::Done)
        }
        WriteOp::Delete { key } => {
            match entries.remove((service, key.as_str())).map_err(storage)? {
                None => Ok(Written::Existed(false)),
                Some(old) => {
                    let was_live = live(old.value().0, now);
                    drop(old);
                    decrement(counts, service, 1)?;
                    Ok(Written::Existed(was_live))
                }
            }
        }
        WriteOp::Increment { key, delta } => {
            let row = current(entries, key)?;
            let existed = row.is_some();
            let (expires_at_ms, old) = match row {
                Some((expires_at_ms, value)) if live(expires_at_ms, now) => {
                    let text = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok());
                    match text {
                        Some(old) => (expires_at_ms, old),
                        None => {
                            return Ok(Err(ApiError::not_a_counter(format!(
                                "the value of {key:?} is not a decimal integer"
                            ))))
                        }
                    }
                }
                _ => (0, 0),
            };
            match old.checked_add(*delta) {
                None => Err(ApiError::not_a_counter(format!(
                    "{old} + {delta} overflows a 64-bit counter"
                ))),
                Some(new) => put(
                    entries,
                    counts,
                    key,
                    expires_at_ms,
                    new.to_string().as_bytes(),
                    existed,
                )?
                .map(|()| Written::Counter(new)),
            }
        }
        WriteOp::CompareAndSwap {
            key,
            expected,
            value,
        } => {
            let row = current(entries, key)?;
            let existed = row.is_some();
            let live_value =
                row.and_then(|(expires_at_ms, value)| live(expires_at_ms, now).then_some(value));
            if live_value != *expected {
                Ok(Written::Swapped(false))
            } else {
                put(entries, counts, key, 0, value, existed)?.map(|()| Written::Swapped(true))
            }
        }
    })
}

/// Rows `service` holds, per the count table.
fn count_of(
    counts: &impl ReadableTable<&'static str, u64>,
    service: &str,
) -> Result<u64, ApiError> {
    Ok(counts
        .get(service)
        .map_err(storage)?
        .map_or(0, |c| c.value()))
}

fn decrement(counts: &mut Counts<'_>, service: &str, by: u64) -> Result<(), ApiError> {
    let count = count_of(counts, service)?.saturating_sub(by);
    if count == 0 {
        counts.remove(service).map_err(storage)?;
    } else {
        counts.insert(service, count).map_err(storage)?;
    }
    Ok(())
}

/// Removes expired rows, of one service or of all.
fn sweep_expired(
    entries: &mut Entries<'_>,
    counts: &mut Counts<'_>,
    service: Option<&str>,
    now: u64,
) -> Result<(), ApiError> {
    let mut expired: Vec<(String, String)> = Vec::new();
    let range = match service {
        Some(service) => entries.range((service, "")..).map_err(storage)?,
        None => entries.iter().map_err(storage)?,
    };
    for entry in range {
        let (key, value) = entry.map_err(storage)?;
        let (owner, key) = key.value();
        if service.is_some_and(|service| service != owner) {
            break;
        }
        if !live(value.value().0, now) {
            expired.push((owner.to_owned(), key.to_owned()));
        }
    }
    for (owner, key) in &expired {
        entries
            .remove((owner.as_str(), key.as_str()))
            .map_err(storage)?;
        decrement(counts, owner, 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> Arc<str> {
        name.into()
    }

    #[tokio::test]
    async fn set_get_delete_and_namespaces() {
        let kv = KvStore::in_memory().unwrap();
        let (a, b) = (svc("a"), svc("b"));
        kv.set(&a, 10, "k".into(), b"1".to_vec(), None)
            .await
            .unwrap();
        kv.set(&b, 10, "k".into(), b"2".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(kv.get("a", "k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get("b", "k").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(kv.exists("a", "k").unwrap());
        assert!(!kv.exists("c", "k").unwrap());
        assert!(kv.delete(&a, "k".into()).await.unwrap());
        assert!(!kv.exists("a", "k").unwrap());
        assert!(!kv.delete(&a, "k".into()).await.unwrap());
        assert_eq!(kv.get("a", "k").unwrap(), None);
        assert_eq!(kv.get("b", "k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(kv.count("a").unwrap(), 0);
        assert_eq!(kv.count("b").unwrap(), 1);
    }

    #[tokio::test]
    async fn lists_by_prefix_in_pages_within_the_service() {
        let kv = KvStore::in_memory().unwrap();
        let a = svc("a");
        for i in 0..(LIST_PAGE_KEYS + 5) {
            kv.set(&a, u64::MAX, format!("user/{i:05}"), vec![], None)
                .await
                .unwrap();
        }
        kv.set(&a, u64::MAX, "users".into(), vec![], None)
            .await
            .unwrap();
        kv.set(&svc("a2"), 9, "user/x".into(), vec![], None)
            .await
            .unwrap();
        let first = kv.list_keys("a", "user/", None).unwrap();
        assert_eq!(first.keys.len(), LIST_PAGE_KEYS);
        assert_eq!(first.keys[0], "user/00000");
        let second = kv.list_keys("a", "user/", first.cursor.as_deref()).unwrap();
        assert_eq!(second.keys.len(), 5);
        assert_eq!(second.cursor, None);
        assert!(second.keys.iter().all(|k| k.starts_with("user/0")));
    }

    #[tokio::test]
    async fn counters_and_compare_and_swap_are_atomic() {
        let kv = KvStore::in_memory().unwrap();
        let a = svc("a");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (kv, a) = (kv.clone(), a.clone());
                tokio::spawn(async move { kv.increment(&a, 10, "n".into(), 2).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(kv.get("a", "n").unwrap().as_deref(), Some(&b"100"[..]));
        kv.set(&a, 10, "s".into(), b"x".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(
            kv.increment(&a, 10, "s".into(), 1).await.unwrap_err().code,
            2404
        );
        assert!(!kv
            .compare_and_swap(&a, 10, "s".into(), None, b"y".to_vec())
            .await
            .unwrap());
        assert!(kv
            .compare_and_swap(&a, 10, "s".into(), Some(b"x".to_vec()), b"y".to_vec())
            .await
            .unwrap());
        assert!(kv
            .compare_and_swap(&a, 10, "new".into(), None, b"1".to_vec())
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn expiry_limits_and_quota() {
        let kv = KvStore::in_memory().unwrap();
        let a = svc("a");
        kv.set(
            &a,
            2,
            "t".into(),
            b"v".to_vec(),
            Some(Duration::from_millis(30)),
        )
        .await
        .unwrap();
        kv.set(&a, 2, "u".into(), b"v".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(
            kv.set(&a, 2, "w".into(), vec![], None)
                .await
                .unwrap_err()
                .code,
            2403
        );
        assert!(kv.exists("a", "t").unwrap());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(kv.get("a", "t").unwrap(), None);
        assert!(!kv.exists("a", "t").unwrap());
        // The expired row is swept to make room.
        kv.set(&a, 2, "w".into(), vec![], None).await.unwrap();
        assert_eq!(kv.count("a").unwrap(), 2);
        assert_eq!(
            kv.set(&a, 2, String::new(), vec![], None)
                .await
                .unwrap_err()
                .code,
            2401
        );
        assert_eq!(
            kv.set(&a, 2, "k".repeat(MAX_KEY_BYTES + 1), vec![], None)
                .await
                .unwrap_err()
                .code,
            2401
        );
        assert_eq!(
            kv.set(&a, 2, "u".into(), vec![0; MAX_VALUE_BYTES + 1], None)
                .await
                .unwrap_err()
                .code,
            2402
        );
    }

    #[tokio::test]
    async fn survives_reopening() {
        let dir = std::env::temp_dir().join(format!("wasmgate-kv-{}", std::process::id()));
        let path = dir.join("state.redb");
        let _ = std::fs::remove_dir_all(&dir);
        {
            let kv = KvStore::open(&path).unwrap();
            kv.set(&svc("a"), 10, "k".into(), b"kept".to_vec(), None)
                .await
                .unwrap();
        }
        // The writer thread lets go of the file once its channel closes.
        let mut reopened = None;
        for _ in 0..100 {
            match KvStore::open(&path) {
                Ok(kv) => {
                    reopened = Some(kv);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let kv = reopened.expect("the store reopens");
        assert_eq!(kv.get("a", "k").unwrap().as_deref(), Some(&b"kept"[..]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
