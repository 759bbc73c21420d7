//! Running handlers: one [`Runtime`] (engine, linker, epoch ticker) for the
//! whole gateway, one [`HandlerModule`] (a prepared `InstancePre`) per loaded
//! handler file, and a fresh `Store` for every event — or, for a service
//! that opts into `instance_reuse`, a store and instance kept from an
//! earlier event of the same loaded handler (see [`reuse`]).
//!
//! A call is bounded three ways: memory by a per-call resource limiter below
//! the pool's slot size, CPU by epoch interruption (the ticker advances the
//! epoch every [`EPOCH_TICK`]; a running guest yields to the async runtime
//! at each tick and traps once its deadline has passed), and wall time by a
//! tokio time-out around the whole call, host calls included.
//!
//! - `call.rs`: one event through a handler, with its limits.
//! - `store.rs`: what a store holds: the scope host calls act in, WASI,
//!   the memory limiter, the output.
//! - `host_calls/`: the imported interfaces, one file each.
//! - `epoch.rs`, `reuse.rs`, `cache.rs`, `core_module.rs`, `capture.rs`:
//!   the epoch ticker, instance reuse, the compile cache, core modules
//!   wrapped into components, bounded output capture.

pub(crate) mod cache;
mod call;
pub(crate) mod capture;
pub mod compiler;
pub mod core_module;
mod epoch;
mod host_calls;
mod reuse;
mod store;
mod world;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use self::cache::CompileCache;
use self::call::Live;
use self::compiler::{codegen_config, Compiler};
use self::epoch::EpochTicker;
use self::host_calls::bindings::Handler;
use self::reuse::{IdleBudget, InstancePool};
use self::store::{EventState, MemoryBudget, TABLE_ELEMENT_LIMIT};
use self::world::Prepared;
use crate::config::GatewayConfig;
use crate::state::{Broker, Recorder};

pub(crate) use self::call::max_answer_bytes;
pub use self::call::{CallOutcome, CallSpec, ServiceCpu};
pub use self::epoch::EPOCH_TICK;
pub(crate) use self::store::StateAccess;

/// Bytes of each freed memory and table slot reset in place (kept mapped)
/// rather than returned to the kernel; see [`Runtime::new`].
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Core instances one handler component may have. The Python example
/// (componentize-py: the interpreter, libc and their shims) has 16.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 20;

/// Linear memories one handler component may define: its own, and the
/// WASI preview-1 adapter's.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 2;

/// Tables one handler component may define.
pub const MAX_TABLES_PER_COMPONENT: u32 = 4;

/// Largest answer a handler may return (an HTTP handler's may be larger,
/// see `max_answer_bytes`).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a handler file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component, or it failed to compile.
    #[error("does not compile: {0:#}")]
    Compile(wasmtime::Error),
    /// A core module that cannot be wrapped into a handler component.
    #[error("{0}")]
    CoreModule(core_module::WrapError),
    /// A valid component that does not fit the `wasmgate:gateway/handler` world.
    #[error("does not match the wasmgate:gateway/handler world: {0:#}")]
    Link(wasmtime::Error),
    /// The compiler failed: refused the bytes (compiling in a child
    /// process), crashed, panicked or ran out of its limits.
    #[error("does not compile: {0}")]
    Compiler(String),
    /// The compile did not finish within its deadline.
    #[error("does not compile: not done within {0:?}")]
    CompileTimeout(Duration),
}

/// Why a handler call failed. The gateway applies its role's failure rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its time-out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The call tried to grow its memories and tables past the service's
    /// limit.
    #[error("exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The call tried to grow its memory while every instance of the
    /// gateway together holds its whole memory budget.
    #[error("could not grow its memory: the gateway's memory budget for handlers is used up")]
    GatewayMemory,
    /// The guest trapped (panic, unreachable, stack overflow, ...). Text
    /// that may carry the guest's words is escaped and cut (see
    /// `capture::guest_text`).
    #[error("trapped: {0}")]
    Trap(String),
    /// The handler returned its `err` result: the guest's string, escaped
    /// and cut to 1 KiB (see `capture::guest_text`).
    #[error("returned an error: {0}")]
    Handler(String),
    /// The answer is larger than the call's limit ([`MAX_ANSWER_BYTES`],
    /// more for an HTTP handler's response).
    #[error("answer of {0} bytes exceeds the limit of {1} bytes")]
    AnswerTooLarge(usize, usize),
    /// No instance could be created (pool exhausted, start function failed).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The service is at its concurrency limit for longer than the time-out.
    #[error("service busy: no concurrency slot within {0:?}")]
    Busy(Duration),
    /// A handler file of the service is on disk but has not loaded yet.
    #[error("not loaded yet: {0} is compiling or failed its first load")]
    NotReady(&'static str),
    /// The handler was built before this role existed (see `world.rs`).
    #[error("built before the {0} role existed: rebuild it against the current wit/gateway.wit")]
    RoleUnknown(crate::protocol::Role),
}

/// A compiled, linked handler, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct HandlerModule {
    pre: Prepared,
    /// Idle instances of this loaded handler, for services with
    /// `instance_reuse` (or the one prepared instance without it); a new
    /// load (hot reload) starts an empty pool.
    pool: Arc<InstancePool<Live>>,
    /// Keeps the compiled component in the runtime's table of shared
    /// components while this handler is loaded (see [`SharedComponents`]).
    _shared: Option<Arc<()>>,
    /// Whether the load found the compiled component in that table (another
    /// loaded handler had the same bytes): nothing was compiled or read.
    reused_code: bool,
}

impl std::fmt::Debug for HandlerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerModule").finish_non_exhaustive()
    }
}

impl HandlerModule {
    /// Whether an instance of this handler waits for an event (kept for
    /// reuse, or prepared ahead).
    pub fn has_idle_instance(&self) -> bool {
        !self.pool.is_empty()
    }

    /// Whether loading it reused the compiled code of another loaded
    /// handler with the same bytes (services that load one file share it).
    pub fn reused_code(&self) -> bool {
        self.reused_code
    }

    /// Whether the handler can be called in `role`: a handler built before
    /// the `http` and `timer` roles existed knows only the connection's
    /// three (see `world.rs`).
    pub fn handles(&self, role: crate::protocol::Role) -> bool {
        self.pre.handles(role)
    }

    /// The roles the handler can be called in.
    pub fn roles(&self) -> &'static [crate::protocol::Role] {
        self.pre.roles()
    }
}

/// The engine, linker and epoch ticker shared by every handler of the gateway.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    ticker: Arc<EpochTicker>,
    linker: Arc<Linker<EventState>>,
    idle: IdleBudget,
    compiler: Compiler,
    memory_budget: Arc<MemoryBudget>,
    shared: Arc<SharedComponents>,
    /// Where the start function of an instance prepared ahead of its event
    /// sends its pushes: nowhere.
    discard: Arc<dyn Broker>,
}

/// Compiled and linked components by the content hash of their file, for
/// as long as a loaded handler uses them: services that load the same bytes
/// share one compiled component (one copy of its machine code in memory, one module
/// to the instance pool, whose slots keep the memory image of the module
/// they last held) instead of one per service. Instances, stores and
/// everything they hold stay per call; only read-only code is shared.
///
/// Loads of one hash take turns ([`SharedComponents::turn`]): when many
/// services load the same file at once (a gateway starting on a folder of
/// copies), one compiles it and the others wait and reuse it, instead of
/// each compiling its own copy.
#[derive(Default)]
struct SharedComponents {
    by_hash: std::sync::Mutex<std::collections::HashMap<String, (Prepared, std::sync::Weak<()>)>>,
    loading: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>,
    >,
}

impl SharedComponents {
    /// Waits for the turn to load `hash`: no other load of the same hash
    /// runs while the guard is held. A load that fails passes the turn on
    /// (the next one tries for itself, and logs its own failure).
    async fn turn(&self, hash: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.retain(|_, lock| lock.strong_count() > 0);
            match loading.get(hash).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    loading.insert(hash.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// The linked component loaded from `hash`, if a loaded handler still
    /// holds it.
    fn get(&self, hash: &str) -> Option<(Prepared, Arc<()>)> {
        let by_hash = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let (prepared, holders) = by_hash.get(hash)?;
        Some((prepared.clone(), holders.upgrade()?))
    }

    /// Records `prepared` as the one for `hash`; the returned token keeps
    /// it there. Entries no handler holds any more are dropped.
    fn insert(&self, hash: &str, prepared: &Prepared) -> Arc<()> {
        let mut by_hash = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        by_hash.retain(|_, (_, holders)| holders.strong_count() > 0);
        if let Some(holder) = by_hash.get(hash).and_then(|(_, holders)| holders.upgrade()) {
            return holder;
        }
        let holder = Arc::new(());
        by_hash.insert(hash.to_owned(), (prepared.clone(), Arc::downgrade(&holder)));
        holder
    }
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
        // The totals are the per-component maxima times the slots, so any
        // `slots` components that load can all be instantiated at once; a
        // component over a maximum is refused at load, by name of the limit.
        pool.total_component_instances(slots)
            .total_core_instances(slots * MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * MAX_MEMORIES_PER_COMPONENT)
            .total_tables(slots * MAX_TABLES_PER_COMPONENT)
            .total_stacks(running)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
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
        let mut engine_config = codegen_config();
        engine_config
            .parallel_compilation(config.compiler.threads > 1)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Handler::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;

        let ticker = EpochTicker::spawn(&engine);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            ticker,
            idle: IdleBudget::new(idle_reserve as usize),
            compiler: Compiler::new(config.compiler.clone()),
            memory_budget: Arc::new(MemoryBudget::new(config.memory_budget_bytes)),
            shared: Arc::default(),
            discard: Arc::new(Recorder::discarding()),
        })
    }

    /// The memory all handler instances may hold together, and what they
    /// hold now.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.memory_budget
    }

    /// The engine, for compiling and caching.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component (or a core module, wrapped into one) in the
    /// compile queue, within its bounds (see [`compiler`]), and links it
    /// against the handler world.
    pub async fn load(&self, bytes: &[u8]) -> Result<HandlerModule, LoadError> {
        let component = self.compiler.compile(&self.engine, bytes.into()).await?;
        self.prepare(&component)
    }

    /// Compiles and links on the calling thread, outside the compile queue
    /// and its bounds: for trusted bytes (benchmarks, tests).
    pub fn load_blocking(&self, bytes: &[u8]) -> Result<HandlerModule, LoadError> {
        let component = compiler::compile_bytes(&self.engine, bytes)?;
        self.prepare(&component)
    }

    /// Like [`Runtime::load`], through the on-disk compile cache: returns the
    /// module and whether it came from the cache. `hash` is the content hash
    /// of `bytes`.
    pub(crate) async fn load_cached(
        &self,
        bytes: Arc<[u8]>,
        hash: &str,
        cache: Option<&CompileCache>,
    ) -> Result<(HandlerModule, bool), LoadError> {
        let shared = |(pre, holder)| HandlerModule {
            pre,
            pool: Arc::default(),
            _shared: Some(holder),
            reused_code: true,
        };
        if let Some(found) = self.shared.get(hash) {
            return Ok((shared(found), true));
        }
        let _turn = self.shared.turn(hash).await;
        // Another load of the same bytes may have finished while this one
        // waited for its turn.
        if let Some(found) = self.shared.get(hash) {
            return Ok((shared(found), true));
        }
        let (mut module, from_cache) = self.compile_cached(bytes, hash, cache).await?;
        module._shared = Some(self.shared.insert(hash, &module.pre));
        Ok((module, from_cache))
    }

    /// [`Runtime::load_cached`] without the table of shared components.
    async fn compile_cached(
        &self,
        bytes: Arc<[u8]>,
        hash: &str,
        cache: Option<&CompileCache>,
    ) -> Result<(HandlerModule, bool), LoadError> {
        if let Some(cache) = cache {
            let (cache, engine, key) = (cache.clone(), self.engine.clone(), hash.to_owned());
            let cached = tokio::task::spawn_blocking(move || cache.get(&engine, &key))
                .await
                .ok()
                .flatten();
            if let Some(component) = cached {
                return Ok((self.prepare(&component)?, true));
            }
        }
        let component = self.compiler.compile(&self.engine, bytes).await?;
        // Link before caching, so a component of the wrong world is not kept.
        let module = self.prepare(&component)?;
        if let Some(cache) = cache {
            let (cache, key) = (cache.clone(), hash.to_owned());
            let stored = tokio::task::spawn_blocking(move || cache.put(&key, &component)).await;
            if let Ok(Err(error)) = stored {
                tracing::warn!(%error, "could not write compile-cache entry");
            }
        }
        Ok((module, false))
    }

    /// How often a compile still running logs its progress.
    pub(crate) fn compile_progress_every(&self) -> std::time::Duration {
        self.compiler.progress_every()
    }

    /// Links an already compiled component against the handler world.
    pub fn prepare(&self, component: &Component) -> Result<HandlerModule, LoadError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(LoadError::Link)?;
        let pre = Prepared::new(instance_pre, component).map_err(|error| {
            // A component without the export is almost always a Rust
            // handler whose `handler!` line is missing.
            if format!("{error:#}").contains("handle") {
                LoadError::Link(error.context(
                    "the component exports no `handle` function of the handler world: \
                     a Rust handler needs `wasmgate_guest::handler!(YourType);`, other \
                     languages export `handle` as wit/gateway.wit declares it",
                ))
            } else {
                LoadError::Link(error)
            }
        })?;
        Ok(HandlerModule {
            pre,
            pool: Arc::default(),
            _shared: None,
            reused_code: false,
        })
    }
}
