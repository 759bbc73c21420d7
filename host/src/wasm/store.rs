//! What one store holds besides the guest: [`EventState`], the scope its
//! host calls act in (service, connection, broker, key-value store), the
//! memory limiter, the WASI context, and the output the guest produced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::capture::{escape_for_log, Capture, LineBudget, OutputLine, OutputSource};
use crate::state::kv::{KvQuota, KvStore};
use crate::state::Broker;

/// Table elements a call may reach (function tables of large guests such as
/// Python need tens of thousands).
pub(crate) const TABLE_ELEMENT_LIMIT: usize = 200_000;

/// What a call may reach of the service's state.
#[derive(Clone)]
pub(crate) struct StateAccess {
    /// The key-value store (the service's own keys only).
    pub kv: KvStore,
    /// The service's `kv_max_keys` and `kv_max_bytes`.
    pub kv_quota: KvQuota,
    /// For cleanup: the groups the connection was in when it ended.
    pub departed_groups: Option<Vec<Arc<str>>>,
    /// The connection the event is about, for `set-attributes`; none under
    /// `wasmgate invoke`. Weak: a reused store must not keep a closed
    /// connection (and its outbound queue) alive until its next event.
    pub connection: Option<std::sync::Weak<crate::state::Connection>>,
}

/// Per-store state: WASI (no files, sockets or inherited environment), the
/// memory limiter, and the scope host calls act in. Everything but the WASI
/// context and the environment is set afresh for every event.
pub(crate) struct EventState {
    /// Built on the guest's first WASI call: most events of most handlers
    /// make none, and a fresh store per event would otherwise pay for a
    /// context (random generators seeded, output captures) it never uses.
    wasi: Option<LazyWasi>,
    /// The service's environment variables, the only ones the guest sees.
    pub(super) env: Arc<BTreeMap<String, String>>,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(crate) service: Arc<str>,
    pub(crate) connection_id: Arc<str>,
    /// Where pushes, closes and group changes go.
    pub(crate) broker: Arc<dyn Broker>,
    /// The service's `max_message_bytes`, for pushes and broadcasts.
    pub(crate) max_message_bytes: usize,
    pub(crate) state: StateAccess,
    output: Vec<OutputLine>,
    /// What the `log` host calls of this event may still add to `output`.
    log_budget: LineBudget,
}

impl EventState {
    /// A store's state for `service`, before its first event.
    pub(super) fn new(
        service: Arc<str>,
        env: Arc<BTreeMap<String, String>>,
        broker: Arc<dyn Broker>,
        state: StateAccess,
        budget: Arc<MemoryBudget>,
    ) -> Self {
        Self {
            wasi: None,
            env,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(budget),
            service,
            connection_id: "".into(),
            broker,
            max_message_bytes: 0,
            state,
            output: Vec::new(),
            log_budget: LineBudget::default(),
        }
    }

    /// Forgets what the previous event logged.
    pub(super) fn clear_output(&mut self) {
        self.output.clear();
        self.log_budget = LineBudget::default();
    }

    /// Keeps one `log` call's text, escaped, within the call's log budget;
    /// past it the call is only counted.
    pub(crate) fn record(&mut self, source: OutputSource, text: &str) {
        let text = escape_for_log(text);
        if self.log_budget.admit(text.len()) {
            self.output.push(OutputLine {
                source,
                text: text.into_owned(),
            });
        }
    }

    /// Everything this event logged and printed, with one note per stream
    /// of what was dropped; the store starts afresh.
    pub(super) fn take_output(&mut self) -> Vec<OutputLine> {
        let mut output = std::mem::take(&mut self.output);
        let dropped = self.log_budget.dropped();
        if dropped > 0 {
            output.push(OutputLine {
                source: OutputSource::Log(super::capture::LogLevel::Warn),
                text: format!("[{dropped} more log lines of this call dropped]"),
            });
        }
        self.log_budget = LineBudget::default();
        if let Some(wasi) = &self.wasi {
            wasi.stdout.take_lines(OutputSource::Stdout, &mut output);
            wasi.stderr.take_lines(OutputSource::Stderr, &mut output);
        }
        output
    }
}

/// A store's WASI context with the captures of its stdout and stderr.
struct LazyWasi {
    ctx: WasiCtx,
    stdout: Capture,
    stderr: Capture,
}

impl LazyWasi {
    /// Nothing granted but `env` and the two output captures.
    fn new(env: &BTreeMap<String, String>) -> Self {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let env: Vec<(&String, &String)> = env.iter().collect();
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&env)
            .build();
        Self {
            ctx,
            stdout,
            stderr,
        }
    }
}

impl WasiView for EventState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let env = &self.env;
        let wasi = self.wasi.get_or_insert_with(|| LazyWasi::new(env));
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

/// The memory all handler instances of the gateway may hold together:
/// linear memories and tables of every live store, running or idle.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `bytes` from the budget if that many are left.
    fn try_charge(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes a table element is counted as (a function reference).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Which limit a grow ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// The service's `memory_limit_mb`, counted over every memory and table
    /// of the store.
    Service,
    /// The gateway-wide [`MemoryBudget`].
    Gateway,
}

/// Limits the memories and tables of one store, together, to the service's
/// `memory_limit_mb` and charges them to the gateway's [`MemoryBudget`]
/// (given back when the store is dropped); remembers which limit a failed
/// grow hit, so it is reported as such and not as a generic trap.
pub(crate) struct MemoryLimiter {
    pub(super) memory_limit: usize,
    pub(super) hit: Option<LimitHit>,
    /// Bytes of every memory and table of the store.
    used: usize,
    budget: Arc<MemoryBudget>,
}

impl MemoryLimiter {
    fn new(budget: Arc<MemoryBudget>) -> Self {
        Self {
            memory_limit: 0,
            hit: None,
            used: 0,
            budget,
        }
    }

    /// Grows the store's total from `current` to `desired` bytes of one
    /// memory or table, if both limits allow.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.memory_limit {
            self.hit = Some(LimitHit::Service);
            return false;
        }
        if !self.budget.try_charge(more) {
            self.hit = Some(LimitHit::Gateway);
            return false;
        }
        self.used = total;
        true
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.release(self.used);
    }
}

impl ResourceLimiter for MemoryLimiter {
    /// Also called with `current` 0 when a memory is created.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENT_LIMIT {
            return Ok(false);
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_count_together_against_both_limits() {
        let budget = Arc::new(MemoryBudget::new(10_000));
        let mut limiter = MemoryLimiter::new(budget.clone());
        limiter.memory_limit = 6_000;
        // Two memories of 2,000 and a table of 250 elements: 6,000.
        assert!(limiter.memory_growing(0, 2_000, None).unwrap());
        assert!(limiter.memory_growing(0, 2_000, None).unwrap());
        assert!(limiter.table_growing(0, 250, None).unwrap());
        assert_eq!(limiter.hit, None);
        // One byte more of any of them is over the service's limit.
        assert!(!limiter.memory_growing(2_000, 2_001, None).unwrap());
        assert_eq!(limiter.hit, Some(LimitHit::Service));
        assert_eq!(budget.used(), 6_000);
        // A second store finds only 4,000 left of the gateway's budget.
        let mut other = MemoryLimiter::new(budget.clone());
        other.memory_limit = 6_000;
        assert!(!other.memory_growing(0, 5_000, None).unwrap());
        assert_eq!(other.hit, Some(LimitHit::Gateway));
        assert!(other.memory_growing(0, 4_000, None).unwrap());
        drop(limiter);
        drop(other);
        assert_eq!(budget.used(), 0);
    }
}
