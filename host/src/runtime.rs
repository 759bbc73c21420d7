//! The wasm runtime: one [`Runtime`] (engine, linker, epoch ticker) for the
//! whole gateway, one [`HandlerModule`] (a prepared `InstancePre`) per loaded
//! handler file, and a fresh `Store` for every event — or, for a service that
//! opts into `instance_reuse`, a store and instance kept from an earlier event
//! of the same loaded handler (see [`crate::reuse`]).
//!
//! A call is bounded three ways: memory by a per-call resource limiter below the
//! pool's slot size, CPU by epoch interruption (the ticker advances the epoch
//! every [`EPOCH_TICK`]; a running guest yields to the async runtime at each tick
//! and traps once its deadline has passed), and wall time by a tokio time-out
//! around the whole call, host calls included.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::cache::CompileCache;
use crate::capture::{Capture, LogLevel, OutputLine, OutputSource};
use crate::config::GatewayConfig;
use crate::kv::KvStore;
use crate::protocol::{ApiError, Payload, PushRequest};
use crate::reuse::{IdleBudget, InstancePool, Reusable, ReuseKey};
use crate::router::{Outbound, Router};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        exports: { default: async },
        // Writes wait for the state store's commit (an fsync), so they must
        // not block the async runtime's thread.
        imports: {
            "wasmgate:gateway/kv.set": async,
            "wasmgate:gateway/kv.delete": async,
            "wasmgate:gateway/kv.increment": async,
            "wasmgate:gateway/kv.compare-and-swap": async,
        },
    });
}

use bindings::wasmgate::gateway::groups as groups_wit;
use bindings::wasmgate::gateway::kv as kv_wit;
use bindings::wasmgate::gateway::types as wit;
pub(crate) use bindings::HandlerPre;

/// How often the epoch advances: the granularity of handler time-outs and how
/// long a busy guest runs before it lets other tasks on its thread proceed.
pub const EPOCH_TICK: Duration = Duration::from_micros(250);

/// A call that has run this long is treated as CPU-bound and niced: after
/// each further tick of guest time it sleeps [`NICE_SLEEP_TICKS`] ticks. Real
/// handlers answer well within it; a spinning or heavy one still finishes (or
/// times out) but takes at most about a tenth of a core meanwhile.
pub const NICE_AFTER: Duration = Duration::from_millis(3);

/// Ticks a niced call sleeps between ticks of guest time.
pub const NICE_SLEEP_TICKS: u32 = 9;

/// Bytes of each freed memory and table slot reset in place (kept mapped)
/// rather than returned to the kernel; see [`Runtime::new`].
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Largest answer a handler may return.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The lifecycle role a handler is called in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A client asks to connect.
    Register,
    /// A client sent a message.
    Transfer,
    /// A connection ended.
    Cleanup,
}

impl Role {
    /// All roles, in lifecycle order.
    pub const ALL: [Role; 3] = [Role::Register, Role::Transfer, Role::Cleanup];

    /// The lower-case name, as in role file names and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Register => "register",
            Role::Transfer => "transfer",
            Role::Cleanup => "cleanup",
        }
    }

    fn to_wit(self) -> wit::Role {
        match self {
            Role::Register => wit::Role::Register,
            Role::Transfer => wit::Role::Transfer,
            Role::Cleanup => wit::Role::Cleanup,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a handler file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component, or it failed to compile.
    #[error("does not compile: {0:#}")]
    Compile(wasmtime::Error),
    /// A core module that cannot be wrapped into a handler component.
    #[error("{0}")]
    CoreModule(crate::core_module::WrapError),
    /// A valid component that does not fit the `wasmgate:gateway/handler` world.
    #[error("does not match the wasmgate:gateway/handler world: {0:#}")]
    Link(wasmtime::Error),
}

/// Why a handler call failed. The gateway applies its role's failure rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its time-out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The call tried to grow its memory past the service's limit.
    #[error("exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The handler returned its `err` result.
    #[error("returned an error: {0}")]
    Handler(String),
    /// The answer is larger than [`MAX_ANSWER_BYTES`].
    #[error("answer of {0} bytes exceeds the limit of {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge(usize),
    /// No instance could be created (pool exhausted, start function failed).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The service is at its concurrency limit for longer than the time-out.
    #[error("service busy: no concurrency slot within {0:?}")]
    Busy(Duration),
}

/// A compiled, linked handler, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct HandlerModule {
    pre: HandlerPre<EventState>,
    /// Idle instances of this loaded handler, for services with
    /// `instance_reuse`; a new load (hot reload) starts an empty pool.
    pool: Arc<InstancePool<Live>>,
}

impl std::fmt::Debug for HandlerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerModule").finish_non_exhaustive()
    }
}

/// Where a call's host pushes go.
#[derive(Clone)]
pub(crate) enum Routing {
    /// Into the gateway's router, for this service only.
    Gateway {
        /// The connection registry.
        router: Router,
        /// The service's message size limit.
        max_message_bytes: usize,
    },
    /// Nowhere: pushes are recorded as output lines (`wasmgate invoke`).
    Record,
}

/// Everything a call needs besides the handler itself.
pub(crate) struct CallSpec {
    pub service: Arc<str>,
    pub role: Role,
    pub request_id: String,
    pub connection_id: Arc<str>,
    pub event: String,
    pub timeout: Duration,
    pub memory_limit_bytes: usize,
    pub env: Arc<BTreeMap<String, String>>,
    pub routing: Routing,
    /// Events one instance may serve (`instance_reuse`); 0 = a fresh
    /// instance per event.
    pub instance_reuse: u32,
    pub state: StateAccess,
}

/// What a call may reach of the service's state.
#[derive(Clone)]
pub(crate) struct StateAccess {
    /// The key-value store (the service's own keys only).
    pub kv: KvStore,
    /// The service's `kv_max_keys`.
    pub kv_max_keys: u64,
    /// For cleanup: the groups the connection was in when it ended.
    pub departed_groups: Option<Vec<Arc<str>>>,
}

/// The result of a call: the answer or the failure, and what the handler printed.
#[derive(Debug)]
pub struct CallOutcome {
    /// The answer JSON, or why the call failed.
    pub result: Result<String, CallError>,
    /// Lines the handler wrote to stdout/stderr or logged, and, under
    /// `wasmgate invoke`, the pushes it made.
    pub output: Vec<OutputLine>,
}

/// Per-store state: WASI (no files, sockets or inherited environment), the
/// memory limiter, and the scope host calls act in.
pub(crate) struct EventState {
    /// Built on the guest's first WASI call: most events of most handlers
    /// make none, and a fresh store per event would otherwise pay for a
    /// context (random generators seeded, output captures) it never uses.
    wasi: Option<LazyWasi>,
    /// The service's environment variables, the only ones the guest sees.
    env: Arc<BTreeMap<String, String>>,
    table: ResourceTable,
    limiter: MemoryLimiter,
    service: Arc<str>,
    connection_id: Arc<str>,
    routing: Routing,
    state: StateAccess,
    output: Vec<OutputLine>,
    logged_bytes: usize,
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

impl EventState {
    /// Moves what the guest printed since the last call into `output`.
    fn take_printed(&self, output: &mut Vec<OutputLine>) {
        if let Some(wasi) = &self.wasi {
            wasi.stdout.take_lines(OutputSource::Stdout, output);
            wasi.stderr.take_lines(OutputSource::Stderr, output);
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
struct MemoryLimiter {
    memory_limit: usize,
    hit: bool,
}

/// Table elements a call may reach (function tables of large guests such as
/// Python need tens of thousands).
const TABLE_ELEMENT_LIMIT: usize = 200_000;

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

/// Bytes of `log` host-call text kept per call.
const LOG_LIMIT: usize = 64 << 10;

impl EventState {
    fn record(&mut self, source: OutputSource, text: String) {
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

    fn route(&mut self, request: PushRequest) -> Result<(), wit::GatewayError> {
        match &self.routing {
            Routing::Gateway { router, .. } => router.route(&self.service, request).map(|_| ()),
            Routing::Record => {
                let line = match &request {
                    PushRequest::Send {
                        connection_id,
                        payload: Payload::Text(text),
                    } => format!("push {connection_id} text {text}"),
                    PushRequest::Send {
                        connection_id,
                        payload: Payload::Binary(bytes),
                    } => format!("push {connection_id} binary {} bytes", bytes.len()),
                    PushRequest::Close { connection_id } => format!("close {connection_id}"),
                    PushRequest::Broadcast { group, .. } => format!("broadcast {group}"),
                };
                self.record(OutputSource::Log(LogLevel::Info), line);
                Ok(())
            }
        }
        .map_err(to_wit_error)
    }

    fn max_message_bytes(&self) -> usize {
        match &self.routing {
            Routing::Gateway {
                max_message_bytes, ..
            } => *max_message_bytes,
            Routing::Record => usize::MAX,
        }
    }
}

fn to_wit_error(error: ApiError) -> wit::GatewayError {
    wit::GatewayError {
        err_no: error.code,
        err_msg: error.message,
    }
}

impl wit::Host for EventState {}

impl bindings::wasmgate::gateway::host::Host for EventState {
    fn push(&mut self, connection_id: String, data: wit::Payload) -> Result<(), wit::GatewayError> {
        let payload = to_payload(data);
        let limit = self.max_message_bytes();
        if payload.len() > limit {
            return Err(to_wit_error(ApiError::payload_too_large(
                payload.len(),
                limit,
            )));
        }
        self.route(PushRequest::Send {
            connection_id,
            payload,
        })
    }

    fn close(&mut self, connection_id: String) -> Result<(), wit::GatewayError> {
        self.route(PushRequest::Close { connection_id })
    }

    fn route(&mut self, request: String) -> Result<(), wit::GatewayError> {
        let request = PushRequest::parse(request.as_bytes(), self.max_message_bytes())
            .map_err(to_wit_error)?;
        EventState::route(self, request)
    }

    fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => LogLevel::Trace,
            wit::LogLevel::Debug => LogLevel::Debug,
            wit::LogLevel::Info => LogLevel::Info,
            wit::LogLevel::Warn => LogLevel::Warn,
            wit::LogLevel::Error => LogLevel::Error,
        };
        self.record(OutputSource::Log(level), message);
    }
}

fn to_payload(data: wit::Payload) -> Payload {
    match data {
        wit::Payload::Text(text) => Payload::Text(text),
        wit::Payload::Binary(bytes) => Payload::Binary(bytes.into()),
    }
}

impl kv_wit::Host for EventState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, wit::GatewayError> {
        self.state.kv.get(&self.service, &key).map_err(to_wit_error)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), wit::GatewayError> {
        let ttl = ttl_ms.map(Duration::from_millis);
        self.state
            .kv
            .set(&self.service, self.state.kv_max_keys, key, value, ttl)
            .await
            .map_err(to_wit_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .delete(&self.service, key)
            .await
            .map_err(to_wit_error)
    }

    fn exists(&mut self, key: String) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .exists(&self.service, &key)
            .map_err(to_wit_error)
    }

    fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<kv_wit::KeyPage, wit::GatewayError> {
        let page = self
            .state
            .kv
            .list_keys(&self.service, &prefix, cursor.as_deref())
            .map_err(to_wit_error)?;
        Ok(kv_wit::KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, wit::GatewayError> {
        self.state
            .kv
            .increment(&self.service, self.state.kv_max_keys, key, delta)
            .await
            .map_err(to_wit_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, wit::GatewayError> {
        self.state
            .kv
            .compare_and_swap(&self.service, self.state.kv_max_keys, key, expected, value)
            .await
            .map_err(to_wit_error)
    }
}

impl groups_wit::Host for EventState {
    fn join(&mut self, group: String, connection_id: String) -> Result<(), wit::GatewayError> {
        match &self.routing {
            Routing::Gateway { router, .. } => router.join(&self.service, &group, &connection_id),
            Routing::Record => {
                self.record(
                    OutputSource::Log(LogLevel::Info),
                    format!("join {group} {connection_id}"),
                );
                Ok(())
            }
        }
        .map_err(to_wit_error)
    }

    fn leave(&mut self, group: String, connection_id: String) -> Result<bool, wit::GatewayError> {
        match &self.routing {
            Routing::Gateway { router, .. } => router.leave(&self.service, &group, &connection_id),
            Routing::Record => {
                self.record(
                    OutputSource::Log(LogLevel::Info),
                    format!("leave {group} {connection_id}"),
                );
                Ok(false)
            }
        }
        .map_err(to_wit_error)
    }

    fn members(&mut self, group: String) -> Result<Vec<String>, wit::GatewayError> {
        match &self.routing {
            Routing::Gateway { router, .. } => router.members(&self.service, &group),
            Routing::Record => crate::router::check_group(&group).map(|()| Vec::new()),
        }
        .map_err(to_wit_error)
    }

    fn groups_of(&mut self, connection_id: String) -> Result<Vec<String>, wit::GatewayError> {
        // In cleanup the connection has left its groups already; it still
        // learns which they were.
        if let Some(departed) = &self.state.departed_groups {
            if *connection_id == *self.connection_id {
                let mut groups: Vec<String> = departed.iter().map(|g| g.to_string()).collect();
                groups.sort();
                return Ok(groups);
            }
        }
        match &self.routing {
            Routing::Gateway { router, .. } => router.groups_of(&self.service, &connection_id),
            Routing::Record => Ok(Vec::new()),
        }
        .map_err(to_wit_error)
    }

    fn broadcast(
        &mut self,
        group: String,
        data: wit::Payload,
        except_id: Option<String>,
    ) -> Result<u32, wit::GatewayError> {
        let payload = to_payload(data);
        let limit = self.max_message_bytes();
        if payload.len() > limit {
            return Err(to_wit_error(ApiError::payload_too_large(
                payload.len(),
                limit,
            )));
        }
        match &self.routing {
            Routing::Gateway { router, .. } => router
                .broadcast(
                    &self.service,
                    &group,
                    Outbound::from(payload),
                    except_id.as_deref(),
                )
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            Routing::Record => {
                self.record(
                    OutputSource::Log(LogLevel::Info),
                    format!("broadcast {group} {} bytes", payload.len()),
                );
                Ok(0)
            }
        }
        .map_err(to_wit_error)
    }
}

/// The engine, linker and epoch ticker shared by every handler of the gateway.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    ticker: Arc<EpochTicker>,
    linker: Arc<Linker<EventState>>,
    idle: IdleBudget,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator sized from `config`, epoch
    /// interruption) and the linker, and starts the epoch ticker.
    pub fn new(config: &GatewayConfig) -> wasmtime::Result<Self> {
        // Instances idling for reuse keep their slots: reserve extra ones
        // for them, so running calls always find a slot.
        let idle_reserve = config.max_concurrency.div_ceil(4).max(1);
        let running = config.max_concurrency.max(1);
        let slots = running + idle_reserve;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .total_memories(slots * 2)
            .total_tables(slots * 8)
            .total_stacks(running)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .table_elements(TABLE_ELEMENT_LIMIT)
            .max_memory_size((config.max_memory_mb as usize) << 20)
            // Reset a freed slot by writing back only the pages the last
            // instance dirtied (found with Linux's PAGEMAP_SCAN where the
            // kernel has it), keeping them mapped: the next instance in the
            // slot starts without page faults, and no madvise/TLB flush runs
            // per event. Contents are restored all the same.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
        let mut engine_config = Config::new();
        engine_config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Handler::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;

        let ticker = EpochTicker::spawn(&engine);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            ticker,
            idle: IdleBudget::new(idle_reserve as usize),
        })
    }

    /// The engine, for compiling and caching.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component (or a core module, wrapped into one) and links
    /// it against the handler world. Blocking and CPU-heavy: call it off the
    /// async runtime.
    pub fn load(&self, bytes: &[u8]) -> Result<HandlerModule, LoadError> {
        let component = self.compile(bytes)?;
        self.prepare(&component)
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        if crate::core_module::is_core_module(bytes) {
            let wrapped = crate::core_module::wrap(bytes).map_err(LoadError::CoreModule)?;
            return Component::new(&self.engine, wrapped).map_err(LoadError::Compile);
        }
        Component::new(&self.engine, bytes).map_err(LoadError::Compile)
    }

    /// Like [`Runtime::load`], through the on-disk compile cache: returns the
    /// module and whether it came from the cache. `hash` is the content hash
    /// of `bytes`.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        hash: &str,
        cache: Option<&CompileCache>,
    ) -> Result<(HandlerModule, bool), LoadError> {
        if let Some(component) = cache.and_then(|cache| cache.get(&self.engine, hash)) {
            return Ok((self.prepare(&component)?, true));
        }
        let component = self.compile(bytes)?;
        // Link before caching, so a component of the wrong world is not kept.
        let module = self.prepare(&component)?;
        if let Some(cache) = cache {
            cache.put(hash, &component);
        }
        Ok((module, false))
    }

    /// Links an already compiled component against the handler world.
    pub fn prepare(&self, component: &Component) -> Result<HandlerModule, LoadError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(LoadError::Link)?;
        let pre = HandlerPre::new(instance_pre).map_err(LoadError::Link)?;
        Ok(HandlerModule {
            pre,
            pool: Arc::default(),
        })
    }

    /// A new store for `spec`'s service, without an instance yet.
    fn new_live(&self, spec: &CallSpec) -> Live {
        let state = EventState {
            wasi: None,
            env: spec.env.clone(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory_limit: spec.memory_limit_bytes,
                hit: false,
            },
            service: spec.service.clone(),
            connection_id: spec.connection_id.clone(),
            routing: Routing::Record,
            state: spec.state.clone(),
            output: Vec::new(),
            logged_bytes: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        Live {
            store,
            instance: None,
        }
    }

    /// Creates a fresh store for `spec` and instantiates `module` in it,
    /// then drops both: the instantiation stage of a call on its own, for
    /// [`crate::stages`].
    pub(crate) async fn instantiate_only(
        &self,
        module: &HandlerModule,
        spec: &CallSpec,
    ) -> Result<(), CallError> {
        let _ticking = self.ticker.hold();
        let mut live = self.new_live(spec);
        begin_event(&mut live.store, spec, Instant::now());
        match module.pre.instantiate_async(&mut live.store).await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(
                error,
                live.store.data().limiter.hit,
                spec.memory_limit_bytes,
                spec.timeout,
                true,
            )),
        }
    }

    /// Runs one event through a handler: in a fresh store, or, when the
    /// service reuses instances, in an idle one of this handler if there is.
    pub(crate) async fn call(&self, module: &HandlerModule, spec: CallSpec) -> CallOutcome {
        // The epoch advances only while some call runs.
        let _ticking = self.ticker.hold();
        let reuse = spec.instance_reuse;
        let key = LiveKey {
            env: spec.env.clone(),
            memory_limit_bytes: spec.memory_limit_bytes,
        };
        // Without reuse, only a prepared, never-used instance qualifies.
        let taken = module.pool.take(&key, reuse.max(1));
        let (mut live, uses) = match taken {
            Some(reusable) => (reusable.live, reusable.uses),
            None => (self.new_live(&spec), 0),
        };
        let started = Instant::now();
        begin_event(&mut live.store, &spec, started);
        let deadline_ms = SystemTime::now()
            .checked_add(spec.timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let context = wit::Context {
            service: spec.service.to_string(),
            role: spec.role.to_wit(),
            request_id: spec.request_id.clone(),
            connection_id: spec.connection_id.to_string(),
            deadline_ms,
        };

        let store = &mut live.store;
        let slot = &mut live.instance;
        let run = async {
            if slot.is_none() {
                let instance = module
                    .pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|e| (true, e))?;
                *slot = Some(instance);
            }
            let instance = slot.as_ref().expect("instantiated above");
            instance
                .call_handle(&mut *store, &context, &spec.event)
                .await
                .map_err(|e| (false, e))
        };
        // The epoch deadline normally ends a long call; this outer bound also
        // covers time spent outside guest code.
        let outer = spec.timeout + EPOCH_TICK * 10;
        let result = match tokio::time::timeout(outer, run).await {
            Err(_) => Err(CallError::Timeout(spec.timeout)),
            Ok(Ok(Ok(answer))) if answer.len() > MAX_ANSWER_BYTES => {
                Err(CallError::AnswerTooLarge(answer.len()))
            }
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(message))) => Err(CallError::Handler(message)),
            Ok(Err((instantiating, error))) => Err(classify(
                error,
                live.store.data().limiter.hit,
                spec.memory_limit_bytes,
                spec.timeout,
                instantiating,
            )),
        };
        let mut output = std::mem::take(&mut live.store.data_mut().output);
        live.store.data().take_printed(&mut output);
        // Only an instance whose call succeeded serves again; any failure
        // retires it with its store.
        if reuse > 0 && result.is_ok() {
            module.pool.put(
                Reusable {
                    live,
                    uses: uses + 1,
                },
                reuse,
                &self.idle,
            );
        } else {
            drop(live);
        }
        if reuse == 0 {
            self.prepare_next(module, &spec).await;
        }
        CallOutcome { result, output }
    }

    /// Fresh-instance mode: instantiates the instance the handler's next
    /// event will use, after this event's pushes have been sent, so
    /// instantiation is off the next event's path. The instance serves
    /// exactly one event, like any fresh one; at most one waits per loaded
    /// handler, within the gateway's idle budget. Its start function runs
    /// under the same deadline and limits as any call, with pushes only
    /// recorded (and discarded); one that fails is retried, and reported,
    /// by the next event's own instantiation.
    async fn prepare_next(&self, module: &HandlerModule, spec: &CallSpec) {
        if !module.pool.is_empty() {
            return;
        }
        // The connection writers this call's pushes woke run first.
        tokio::task::yield_now().await;
        if !module.pool.is_empty() {
            return;
        }
        let mut live = self.new_live(spec);
        begin_event(&mut live.store, spec, Instant::now());
        live.store.data_mut().routing = Routing::Record;
        let outer = spec.timeout + EPOCH_TICK * 10;
        let instantiate = module.pre.instantiate_async(&mut live.store);
        if let Ok(Ok(instance)) = tokio::time::timeout(outer, instantiate).await {
            live.instance = Some(instance);
            module.pool.put(Reusable { live, uses: 0 }, 1, &self.idle);
        }
    }
}

/// A store (with its WASI context and output captures, once the guest used
/// them) and its instance, once instantiated: what instance reuse keeps
/// between events.
pub(crate) struct Live {
    store: Store<EventState>,
    instance: Option<bindings::Handler>,
}

/// The per-store settings a reused instance must share with the event.
pub(crate) struct LiveKey {
    env: Arc<BTreeMap<String, String>>,
    memory_limit_bytes: usize,
}

impl ReuseKey for Live {
    type Key = LiveKey;

    /// Read from the store's own state: its environment is fixed when the
    /// store is made, and its memory limit, set again for every event, only
    /// ever takes the one value this check lets through.
    fn fits(&self, key: &LiveKey) -> bool {
        let state = self.store.data();
        (Arc::ptr_eq(&state.env, &key.env) || state.env == key.env)
            && state.limiter.memory_limit == key.memory_limit_bytes
    }
}

/// Sets up a store, new or reused, for one event: fresh routing, empty
/// output, a cleared memory-limit flag and a new deadline.
fn begin_event(store: &mut Store<EventState>, spec: &CallSpec, started: Instant) {
    let state = store.data_mut();
    state.routing = spec.routing.clone();
    state.connection_id = spec.connection_id.clone();
    state.state = spec.state.clone();
    state.output.clear();
    state.logged_bytes = 0;
    state.limiter.memory_limit = spec.memory_limit_bytes;
    state.limiter.hit = false;
    let deadline = started + spec.timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if now >= deadline {
            Err(Trap::Interrupt.into())
        } else if now < started + NICE_AFTER {
            // tokio's own yield puts this task behind every other ready
            // task; a plain self-wake could run it again at once and let
            // a spinning guest starve other services' events.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        } else {
            // A call past NICE_AFTER is CPU-bound: it keeps running, but
            // at a tenth of a core, so it cannot crowd out short events
            // of other services (or of its own) on a small machine.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(EPOCH_TICK * NICE_SLEEP_TICKS)),
            ))
        }
    });
}

/// Turns a wasmtime error into the reason reported for the call.
fn classify(
    error: wasmtime::Error,
    memory_limit_hit: bool,
    memory_limit: usize,
    timeout: Duration,
    instantiating: bool,
) -> CallError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(timeout),
        _ if memory_limit_hit => CallError::OutOfMemory(memory_limit),
        Some(trap) if !instantiating => CallError::Trap(trap.to_string()),
        Some(trap) => CallError::Instantiate(trap.to_string()),
        None if instantiating => CallError::Instantiate(format!("{error:#}")),
        None => CallError::Trap(format!("{error:#}")),
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`] while
/// calls run. It goes on ticking for [`TICKER_LINGER`] ticks after the last
/// call ends, so a steady stream of short events does not pay a thread
/// wake-up each, and then sleeps (parked, no wake-ups), so an idle or
/// push-only gateway does not pay for 4,000 wake-ups a second. It holds
/// only a weak handle to the engine and ends when the engine is dropped.
struct EpochTicker {
    /// Calls running now.
    active: AtomicUsize,
    /// Set while the ticker thread is parked (or about to park).
    parked: AtomicBool,
    /// The ticker thread, to unpark when a call starts while it sleeps.
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// Ticks the ticker keeps running after the last call ends (10 ms).
const TICKER_LINGER: u32 = 40;

/// Keeps the ticker running while alive (one per running call).
struct Ticking<'a>(&'a EpochTicker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EpochTicker {
    fn spawn(engine: &Engine) -> Arc<Self> {
        let ticker = Arc::new(Self {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let weak = engine.weak();
        let state = Arc::downgrade(&ticker);
        let thread = std::thread::Builder::new()
            .name("wasmgate-epoch".into())
            .spawn(move || {
                let mut idle_ticks = 0u32;
                loop {
                    let Some(ticker) = state.upgrade() else { break };
                    if ticker.active.load(Ordering::Acquire) > 0 {
                        idle_ticks = 0;
                    } else {
                        idle_ticks = idle_ticks.saturating_add(1);
                    }
                    if idle_ticks > TICKER_LINGER {
                        ticker.parked.store(true, Ordering::SeqCst);
                        // A call that started before `parked` was set is
                        // seen here; one that starts after it unparks us
                        // (an unpark that comes before the park is kept).
                        if ticker.active.load(Ordering::SeqCst) == 0 {
                            drop(ticker);
                            std::thread::park_timeout(Duration::from_secs(1));
                        } else {
                            ticker.parked.store(false, Ordering::SeqCst);
                        }
                        // Woken by a call: `active` is above 0 at the top
                        // of the loop. Timed out: still idle, park again.
                        continue;
                    }
                    drop(ticker);
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn epoch ticker thread");
        let _ = ticker.thread.set(thread.thread().clone());
        ticker
    }

    /// Marks a call as running until the guard is dropped.
    fn hold(&self) -> Ticking<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        Ticking(self)
    }
}
