//! One write transaction of the redb backend: a group of writes, each
//! checked against its service's quota from the usage table, and a bounded
//! removal of expired rows found through the expiry index.
//!
//! No write reads more than the row it writes and its service's usage row:
//! a service's keys are counted, never scanned, and expired rows are found
//! by time in the expiry index, never by reading the rows themselves.

use std::collections::HashMap;

use redb::{Database, ReadableTable};

use super::writer::{Job, WriteOp, Written};
use super::{live, storage, ENTRIES, EXPIRY, USAGE};
use crate::protocol::ApiError;
use crate::state::kv::{
    byte_quota_refusal, counter_overflow, key_quota_refusal, not_a_counter, KvQuota, KvUsage,
};
use crate::state::now_ms;

/// Most expired rows one periodic sweep removes in one transaction; the
/// writer sweeps again after the writes waiting by then.
pub(super) const SWEEP_BATCH: usize = 1000;

/// Most expired rows a write at its service's quota removes to make room
/// (they count until removed), so such a write costs little more than any.
const QUOTA_SWEEP_BATCH: usize = 64;

/// What one transaction did.
pub(super) struct Applied {
    /// Each write's own answer, in order.
    pub(super) results: Vec<Result<Written, ApiError>>,
    /// Whether the sweep (if one ran) left no expired row behind.
    pub(super) swept_all: bool,
}

/// Applies a group of writes in one transaction and commits it; first
/// removes up to [`SWEEP_BATCH`] expired rows if `sweep`.
pub(super) fn apply(db: &Database, jobs: &[Job], sweep: bool) -> Result<Applied, ApiError> {
    let txn = db.begin_write().map_err(storage)?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut swept_all = true;
    {
        let mut tables = Tables {
            entries: txn.open_table(ENTRIES).map_err(storage)?,
            usage: txn.open_table(USAGE).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
            usage_changes: HashMap::new(),
        };
        let now = now_ms();
        if sweep {
            swept_all = tables.sweep_expired(now, SWEEP_BATCH)? < SWEEP_BATCH;
        }
        for job in jobs {
            results.push(tables.apply_one(job, now)?);
        }
        tables.write_usage()?;
    }
    txn.commit().map_err(storage)?;
    Ok(Applied { results, swept_all })
}

/// Fills the usage table and the expiry index from the rows, for a store
/// written before they existed. Reads every row once.
pub(super) fn rebuild_index(txn: &redb::WriteTransaction) -> Result<(), ApiError> {
    let entries = txn.open_table(ENTRIES).map_err(storage)?;
    let mut usage_table = txn.open_table(USAGE).map_err(storage)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
    let mut usage: HashMap<String, KvUsage> = HashMap::new();
    for row in entries.iter().map_err(storage)? {
        let (address, entry) = row.map_err(storage)?;
        let (service, key) = address.value();
        let (expires_at_ms, value) = entry.value();
        let used = usage.entry(service.to_owned()).or_default();
        used.keys += 1;
        used.bytes += row_bytes(key, value.len());
        if expires_at_ms != 0 {
            expiry
                .insert((expires_at_ms, service, key), ())
                .map_err(storage)?;
        }
    }
    for (service, used) in usage {
        usage_table
            .insert(service.as_str(), (used.keys, used.bytes))
            .map_err(storage)?;
    }
    Ok(())
}

/// Bytes a row counts against its service: its key and its value.
fn row_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// The usage of `service`, per the usage table.
pub(super) fn usage_of(
    usage: &impl ReadableTable<&'static str, (u64, u64)>,
    service: &str,
) -> Result<KvUsage, ApiError> {
    Ok(usage
        .get(service)
        .map_err(storage)?
        .map_or_else(KvUsage::default, |row| {
            let (keys, bytes) = row.value();
            KvUsage { keys, bytes }
        }))
}

type Entries<'t> = redb::Table<'t, (&'static str, &'static str), (u64, &'static [u8])>;
type Usage<'t> = redb::Table<'t, &'static str, (u64, u64)>;
type Expiry<'t> = redb::Table<'t, (u64, &'static str, &'static str), ()>;

/// A row as a write finds it: when it expires and how long its value is.
#[derive(Clone, Copy)]
struct OldRow {
    expires_at_ms: u64,
    value_len: usize,
}

/// The tables of one write transaction.
struct Tables<'t> {
    entries: Entries<'t>,
    usage: Usage<'t>,
    expiry: Expiry<'t>,
    /// Usage changed by this transaction, per service: kept here and written
    /// to the usage table once before the commit, rather than read and
    /// rewritten by every write of a group.
    usage_changes: HashMap<String, KvUsage>,
}

impl Tables<'_> {
    /// What `service` holds, with this transaction's writes so far.
    fn usage_of(&self, service: &str) -> Result<KvUsage, ApiError> {
        match self.usage_changes.get(service) {
            Some(used) => Ok(*used),
            None => usage_of(&self.usage, service),
        }
    }

    fn set_usage(&mut self, service: &str, used: KvUsage) {
        match self.usage_changes.get_mut(service) {
            Some(entry) => *entry = used,
            None => {
                self.usage_changes.insert(service.to_owned(), used);
            }
        }
    }

    /// Writes the usage this transaction changed to the usage table.
    fn write_usage(&mut self) -> Result<(), ApiError> {
        for (service, used) in std::mem::take(&mut self.usage_changes) {
            if used.keys == 0 {
                self.usage.remove(service.as_str()).map_err(storage)?;
            } else {
                self.usage
                    .insert(service.as_str(), (used.keys, used.bytes))
                    .map_err(storage)?;
            }
        }
        Ok(())
    }

    /// Removes the row of `key`; what it was.
    fn remove_row(&mut self, service: &str, key: &str) -> Result<Option<OldRow>, ApiError> {
        let Some(old) = self.entries.remove((service, key)).map_err(storage)? else {
            return Ok(None);
        };
        let (expires_at_ms, value) = old.value();
        let row = OldRow {
            expires_at_ms,
            value_len: value.len(),
        };
        drop(old);
        if row.expires_at_ms != 0 {
            self.expiry
                .remove((row.expires_at_ms, service, key))
                .map_err(storage)?;
        }
        let mut used = self.usage_of(service)?;
        used.keys = used.keys.saturating_sub(1);
        used.bytes = used.bytes.saturating_sub(row_bytes(key, row.value_len));
        self.set_usage(service, used);
        Ok(Some(row))
    }

    /// The live row of `key`, with its value if `with_value`. An expired
    /// row is removed here, so that the write treats the key as new.
    fn live_row(
        &mut self,
        service: &str,
        key: &str,
        now: u64,
        with_value: bool,
    ) -> Result<Option<(OldRow, Vec<u8>)>, ApiError> {
        let found = self
            .entries
            .get((service, key))
            .map_err(storage)?
            .map(|entry| {
                let (expires_at_ms, value) = entry.value();
                let row = OldRow {
                    expires_at_ms,
                    value_len: value.len(),
                };
                (
                    row,
                    if with_value {
                        value.to_vec()
                    } else {
                        Vec::new()
                    },
                )
            });
        match found {
            Some((row, _)) if !live(row.expires_at_ms, now) => {
                self.remove_row(service, key)?;
                Ok(None)
            }
            found => Ok(found),
        }
    }

    /// Writes `value` under `key` over the live row `old` (if any), within
    /// the service's quota. The outer error aborts the group; the inner one
    /// is this write's answer.
    fn put(
        &mut self,
        job: &Job,
        key: &str,
        expires_at_ms: u64,
        value: &[u8],
        old: Option<OldRow>,
        now: u64,
    ) -> Result<Result<(), ApiError>, ApiError> {
        let service: &str = &job.service;
        let new_bytes = row_bytes(key, value.len());
        let old_bytes = old.map_or(0, |old| row_bytes(key, old.value_len));
        let mut used = self.usage_of(service)?;
        if let Some(refusal) = over_quota(job.quota, used, old.is_none(), old_bytes, new_bytes) {
            // Expired rows count until they are removed: remove the oldest
            // few (of any service; all are due) and look again.
            if self.sweep_expired(now, QUOTA_SWEEP_BATCH)? == 0 {
                return Ok(Err(refusal));
            }
            used = self.usage_of(service)?;
            if let Some(refusal) = over_quota(job.quota, used, old.is_none(), old_bytes, new_bytes)
            {
                return Ok(Err(refusal));
            }
        }
        if let Some(old) = old {
            if old.expires_at_ms != 0 && old.expires_at_ms != expires_at_ms {
                self.expiry
                    .remove((old.expires_at_ms, service, key))
                    .map_err(storage)?;
            }
        }
        if expires_at_ms != 0 {
            self.expiry
                .insert((expires_at_ms, service, key), ())
                .map_err(storage)?;
        }
        self.entries
            .insert((service, key), (expires_at_ms, value))
            .map_err(storage)?;
        used.keys += u64::from(old.is_none());
        used.bytes = used.bytes.saturating_sub(old_bytes) + new_bytes;
        self.set_usage(service, used);
        Ok(Ok(()))
    }

    /// Applies one write. The outer error aborts the whole group (a storage
    /// failure); the inner one is this write's own answer.
    fn apply_one(&mut self, job: &Job, now: u64) -> Result<Result<Written, ApiError>, ApiError> {
        let service: &str = &job.service;
        Ok(match &job.op {
            WriteOp::Set {
                key,
                value,
                expires_at_ms,
            } => {
                // Only the row's length is needed, not its value.
                let old = self.live_row(service, key, now, false)?;
                self.put(
                    job,
                    key,
                    *expires_at_ms,
                    value,
                    old.map(|(row, _)| row),
                    now,
                )?
                .map(|()| Written::Done)
            }
            WriteOp::Delete { key } => {
                let removed = self.remove_row(service, key)?;
                Ok(Written::Existed(
                    removed.is_some_and(|row| live(row.expires_at_ms, now)),
                ))
            }
            WriteOp::Increment { key, delta } => {
                let old = self.live_row(service, key, now, true)?;
                let (expires_at_ms, counter) = match &old {
                    None => (0, 0),
                    Some((row, value)) => {
                        let counter = std::str::from_utf8(value)
                            .ok()
                            .and_then(|text| text.parse::<i64>().ok());
                        match counter {
                            Some(counter) => (row.expires_at_ms, counter),
                            None => return Ok(Err(not_a_counter(key))),
                        }
                    }
                };
                match counter.checked_add(*delta) {
                    None => Err(counter_overflow(counter, *delta)),
                    Some(new) => {
                        let text = new.to_string();
                        let old = old.map(|(row, _)| row);
                        self.put(job, key, expires_at_ms, text.as_bytes(), old, now)?
                            .map(|()| Written::Counter(new))
                    }
                }
            }
            WriteOp::CompareAndSwap {
                key,
                expected,
                value,
            } => {
                let old = self.live_row(service, key, now, true)?;
                let current = old.as_ref().map(|(_, value)| value);
                if current != expected.as_ref() {
                    Ok(Written::Swapped(false))
                } else {
                    let old = old.map(|(row, _)| row);
                    self.put(job, key, 0, value, old, now)?
                        .map(|()| Written::Swapped(true))
                }
            }
        })
    }

    /// Removes up to `batch` expired rows, oldest expiry first, found through
    /// the expiry index; how many it removed.
    fn sweep_expired(&mut self, now: u64, batch: usize) -> Result<usize, ApiError> {
        let mut due: Vec<(u64, String, String)> = Vec::new();
        for row in self
            .expiry
            .range(..(now.saturating_add(1), "", ""))
            .map_err(storage)?
            .take(batch)
        {
            let (due_row, _) = row.map_err(storage)?;
            let (expires_at_ms, service, key) = due_row.value();
            due.push((expires_at_ms, service.to_owned(), key.to_owned()));
        }
        for (expires_at_ms, service, key) in &due {
            let row_expiry = self
                .entries
                .get((service.as_str(), key.as_str()))
                .map_err(storage)?
                .map(|entry| entry.value().0);
            if row_expiry == Some(*expires_at_ms) {
                self.remove_row(service, key)?;
            } else {
                // An index entry without its row: nothing else to remove.
                self.expiry
                    .remove((*expires_at_ms, service.as_str(), key.as_str()))
                    .map_err(storage)?;
            }
        }
        Ok(due.len())
    }
}

/// Why a write would take the service past its quota, if it would: a new
/// row past `max_keys` (2403), or a row growing the service past `max_bytes`
/// (2408). A write that does not grow what the service holds is never
/// refused, so a service over a lowered limit can still shrink.
fn over_quota(
    quota: KvQuota,
    used: KvUsage,
    new_row: bool,
    old_bytes: u64,
    new_bytes: u64,
) -> Option<ApiError> {
    if new_row && used.keys >= quota.max_keys {
        return Some(key_quota_refusal(quota));
    }
    let after = used
        .bytes
        .saturating_sub(old_bytes)
        .saturating_add(new_bytes);
    if new_bytes > old_bytes && after > quota.max_bytes {
        return Some(byte_quota_refusal(after, quota));
    }
    None
}
