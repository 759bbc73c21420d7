//! The writer thread of the redb backend: it applies every waiting write
//! in one transaction and commits once, then answers each caller.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::{live, storage, COUNTS, ENTRIES, SWEEP_EVERY};
use crate::protocol::{ApiError, ErrNo};
use crate::state::now_ms;

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// What a write did, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
    Done,
    Existed(bool),
    Counter(i64),
    Swapped(bool),
}

/// One write, applied by the writer thread.
#[derive(Debug)]
pub(super) enum WriteOp {
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

pub(super) struct Job {
    pub(super) service: Arc<str>,
    pub(super) max_keys: u64,
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<Result<Written, ApiError>>,
}

/// The writer thread: applies waiting writes in groups, one commit each,
/// and sweeps expired rows every [`SWEEP_EVERY`].
pub(super) fn write_loop(db: &Database, receiver: &mpsc::Receiver<Job>) {
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
                    return Ok(Err(ErrNo::KEY_QUOTA.with(job.max_keys)));
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
                            return Ok(Err(ErrNo::NOT_A_COUNTER
                                .with(format!("the value of {key:?} is not a decimal integer"))))
                        }
                    }
                }
                _ => (0, 0),
            };
            match old.checked_add(*delta) {
                None => Err(ErrNo::NOT_A_COUNTER
                    .with(format!("{old} + {delta} overflows a 64-bit counter"))),
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
pub(super) fn count_of(
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
