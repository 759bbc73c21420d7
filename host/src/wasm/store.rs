//! What one store holds besides the guest: [`EventState`], the scope its
//! host calls act in (service, connection, broker, key-value store), the
//! memory limiter, the WASI context, and the output the guest produced.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::capture::{Capture, OutputLine, OutputSource};
use crate::state::kv::{KvQuota, KvStore};
use crate::state::Broker;

/// Table elements a call may reach (function tables of large guests such as
/// Python need tens of thousands).
pub(crate) const TABLE_ELEMENT_LIMIT: usize = 200_000;

/// Bytes of `log` host-call text kept per call.
const LOG_LIMIT: usize = 64 << 10;

/// What a call may reach of the service's state.
#[derive(Clone)]
pub(crate) struct StateAccess {
    /// The key-value store (the service's own keys only).
    pub kv: KvStore,
    /// The service's `kv_max_keys` and `kv_max_bytes`.
    pub kv_quota: KvQuota,
    /// For cleanup: the groups the connection was in when it ended.
    pub departed_groups: Option<Vec<Arc<str>>>,
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
    pub(super) output: Vec<OutputLine>,
    logged_bytes: usize,
}

impl EventState {
    /// A store's state for `service`, before its first event.
    pub(super) fn new(
        service: Arc<str>,
        env: Arc<BTreeMap<String, String>>,
        broker: Arc<dyn Broker>,
        state: StateAccess,
    ) -> Self {
        Self {
            wasi: None,
            env,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory_limit: 0,
                hit: false,
            },
            service,
            connection_id: "".into(),
            broker,
            max_message_bytes: 0,
            state,
            output: Vec::new(),
            logged_bytes: 0,
        }
    }

    /// Forgets what the previous event logged.
    pub(super) fn clear_output(&mut self) {
        self.output.clear();
        self.logged_bytes = 0;
    }

    /// Keeps one line of output, within the call's log budget.
    pub(crate) fn record(&mut self, source: OutputSource, text: String) {
        if self.logged_bytes > LOG_LIMIT {
            return;
        }
        self.logged_bytes += text.len();
        let text = if self.logged_bytes > LOG_LIMIT {
            "[further log lines of this call dropped]".to_owned()
        } else {
            text
        };
        self.output.push(OutputLine { source, text });
    }

    /// Moves what the guest printed since the last call into `output`.
    pub(super) fn take_printed(&self, output: &mut Vec<OutputLine>) {
        if let Some(wasi) = &self.wasi {
            wasi.stdout.take_lines(OutputSource::Stdout, output);
            wasi.stderr.take_lines(OutputSource::Stderr, output);
        }
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

/// Limits linear memory and tables per call and remembers whether the memory
/// limit was hit, so a failed allocation is reported as such and not as a
/// generic trap.
pub(crate) struct MemoryLimiter {
    pub(super) memory_limit: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENT_LIMIT)
    }
}
