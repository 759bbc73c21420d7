//! The writer thread of the redb backend: it takes waiting writes in groups,
//! one write of each service in turn ([`FairQueue`]), applies a group in one
//! transaction and commits once, then answers each caller. Between groups
//! it removes expired rows, a bounded batch at a time.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use redb::Database;
use tokio::sync::oneshot;

use super::apply::apply;
use super::queue::FairQueue;
use super::SWEEP_EVERY;
use crate::protocol::ApiError;
use crate::state::kv::KvQuota;

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// Most writes of one service in one group. Another service's write waits
/// for the commit in progress and then for its own group's, so what bounds
/// its latency is how much one service can put into a group: a few writes
/// cost little more than one, while each still shares its `fsync`.
const MAX_GROUP_PER_SERVICE: usize = 16;

/// Most bytes of keys and values taken into one group (a group takes at
/// least one write). A service writing 1 MiB values cannot make every
/// group, and so every other service's commit, carry 512 MiB.
const MAX_GROUP_BYTES: usize = 8 << 20;

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

impl WriteOp {
    /// Bytes of key and values the write carries, for the group's budget.
    pub(super) fn size(&self) -> usize {
        match self {
            Self::Set { key, value, .. } => key.len() + value.len(),
            Self::Delete { key } | Self::Increment { key, .. } => key.len(),
            Self::CompareAndSwap {
                key,
                expected,
                value,
            } => key.len() + expected.as_ref().map_or(0, Vec::len) + value.len(),
        }
    }
}

/// A write waiting for the writer, with the service's quota and where to
/// send the answer.
pub(super) struct Job {
    pub(super) service: Arc<str>,
    pub(super) quota: KvQuota,
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<Result<Written, ApiError>>,
}

/// The writer thread: applies waiting writes in fair groups, one commit
/// each, and removes expired rows every [`SWEEP_EVERY`] (in batches of
/// [`SWEEP_BATCH`](super::apply::SWEEP_BATCH), one per transaction, until none is left). Returns once
/// every sender is gone and every queued write is answered.
pub(super) fn write_loop(db: &Database, receiver: &mpsc::Receiver<Job>) {
    let mut waiting = FairQueue::default();
    let mut open = true;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        if waiting.is_empty() {
            if !open {
                return;
            }
            let wait = next_sweep.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(job) => waiting.push(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // Everything that arrived meanwhile joins its service's queue, so the
        // next group is chosen among all waiting services.
        loop {
            match receiver.try_recv() {
                Ok(job) => waiting.push(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let jobs = waiting.take_group(MAX_GROUP, MAX_GROUP_PER_SERVICE, MAX_GROUP_BYTES);
        let sweep = Instant::now() >= next_sweep;
        if jobs.is_empty() && !sweep {
            continue;
        }
        match apply(db, &jobs, sweep) {
            Ok(applied) => {
                if sweep {
                    // A full batch may have left more: sweep again next round,
                    // after the writes that are waiting by then.
                    next_sweep = if applied.swept_all {
                        Instant::now() + SWEEP_EVERY
                    } else {
                        Instant::now()
                    };
                }
                for (job, result) in jobs.into_iter().zip(applied.results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = jobs.len(), "state store commit failed");
                if sweep {
                    next_sweep = Instant::now() + SWEEP_EVERY;
                }
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
