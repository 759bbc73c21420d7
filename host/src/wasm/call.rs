//! One event through a handler: a store (fresh, prepared ahead, or kept for
//! reuse), the guest's `handle` call under the service's limits, and the
//! reason a failed call failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::capture::{guest_text, OutputLine};
use super::epoch::EPOCH_TICK;
use super::host_calls::bindings::wasmgate::gateway::types as wit;
use super::reuse::{Reusable, ReuseKey};
use super::store::{EventState, LimitHit, StateAccess};
use super::world::Instance;
use super::{CallError, HandlerModule, Runtime, MAX_ANSWER_BYTES};
use crate::protocol::Role;
use crate::state::Broker;

/// A call that has run this long is treated as CPU-bound and niced: after
/// each further tick of guest time it sleeps [`NICE_SLEEP_TICKS`] ticks. Real
/// handlers answer well within it; a spinning or heavy one still finishes (or
/// times out) but takes at most about a tenth of a core meanwhile.
pub const NICE_AFTER: Duration = Duration::from_millis(3);

/// Ticks a niced call sleeps between ticks of guest time.
pub const NICE_SLEEP_TICKS: u32 = 9;

/// The CPU-bound calls of one service, shared by its calls: while one call
/// of a service is niced (past [`NICE_AFTER`]), its other calls are niced
/// from their first tick. A service that spins in call after call gets a
/// tenth of a core per call from the start, not 3 ms at full speed each
/// time; a call shorter than one tick is never slowed.
#[derive(Debug, Default)]
pub struct ServiceCpu {
    niced: AtomicUsize,
}

impl ServiceCpu {
    /// Calls of the service niced now.
    pub fn niced(&self) -> usize {
        self.niced.load(Ordering::Acquire)
    }
}

/// Whether one call has been counted as niced in its service's
/// [`ServiceCpu`]; the count is given back when the call ends.
struct NicedCall {
    cpu: Arc<ServiceCpu>,
    counted: AtomicBool,
}

impl NicedCall {
    fn count(&self) {
        if !self.counted.swap(true, Ordering::AcqRel) {
            self.cpu.niced.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn release(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.cpu.niced.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Releases a call's count in its service's [`ServiceCpu`] when the call
/// ends or is dropped; the store's epoch callback, which may outlive the
/// call in an idle reused instance, holds the count's other handle.
struct NicedGuard(Arc<NicedCall>);

impl Drop for NicedGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Everything a call needs besides the handler itself.
pub struct CallSpec {
    pub(crate) service: Arc<str>,
    pub(crate) role: Role,
    pub(crate) request_id: Arc<str>,
    pub(crate) connection_id: Arc<str>,
    pub(crate) event: String,
    pub(crate) timeout: Duration,
    pub(crate) memory_limit_bytes: usize,
    pub(crate) env: Arc<BTreeMap<String, String>>,
    /// Where the call's pushes, closes and group changes go.
    pub(crate) broker: Arc<dyn Broker>,
    /// The service's `max_message_bytes`.
    pub(crate) max_message_bytes: usize,
    /// Largest answer accepted: [`MAX_ANSWER_BYTES`], more for an HTTP
    /// response body (see [`max_answer_bytes`]).
    pub(crate) max_answer_bytes: usize,
    /// Events one instance may serve (`instance_reuse`); 0 = a fresh
    /// instance per event.
    pub(crate) instance_reuse: u32,
    /// Fresh-instance mode only: whether to instantiate the handler's next
    /// instance after this call (a gateway expects more events; a single
    /// `wasmgate invoke` does not).
    pub(crate) prepare_next: bool,
    pub(crate) state: StateAccess,
    /// The service's CPU-bound calls (see [`ServiceCpu`]).
    pub(crate) cpu: Arc<ServiceCpu>,
}

impl std::fmt::Debug for CallSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSpec")
            .field("service", &self.service)
            .field("role", &self.role)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
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

/// A store (with its WASI context and output captures, once the guest used
/// them) and its instance, once instantiated: what instance reuse keeps
/// between events.
pub(crate) struct Live {
    store: Store<EventState>,
    instance: Option<Instance>,
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

impl Runtime {
    /// A new store for `spec`'s service, without an instance yet.
    fn new_live(&self, spec: &CallSpec) -> Live {
        let state = EventState::new(
            spec.service.clone(),
            spec.env.clone(),
            spec.broker.clone(),
            spec.state.clone(),
            self.memory_budget.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        Live {
            store,
            instance: None,
        }
    }

    /// Creates a fresh store for `spec` and instantiates `module` in it,
    /// then drops both: the instantiation stage of a call on its own, for
    /// the per-event benchmarks.
    pub(crate) async fn instantiate_only(
        &self,
        module: &HandlerModule,
        spec: &CallSpec,
    ) -> Result<(), CallError> {
        let _ticking = self.ticker.hold();
        let mut live = self.new_live(spec);
        let _niced = begin_event(&mut live.store, spec, Instant::now());
        match module.pre.instantiate(&mut live.store).await {
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
    pub async fn call(&self, module: &HandlerModule, spec: CallSpec) -> CallOutcome {
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
        let niced = begin_event(&mut live.store, &spec, started);
        let deadline_ms = SystemTime::now()
            .checked_add(spec.timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let context = wit::Context {
            service: spec.service.to_string(),
            role: spec.role.into(),
            request_id: spec.request_id.to_string(),
            connection_id: spec.connection_id.to_string(),
            deadline_ms,
        };

        let store = &mut live.store;
        let slot = &mut live.instance;
        let run = async {
            if slot.is_none() {
                let instantiating = Instant::now();
                let instance = module
                    .pre
                    .instantiate(&mut *store)
                    .await
                    .map_err(|e| (true, e))?;
                crate::metrics::global().instantiated(instantiating.elapsed());
                *slot = Some(instance);
            }
            let instance = slot.as_ref().expect("instantiated above");
            instance
                .handle(&mut *store, &context, &spec.event)
                .await
                .map_err(|e| (false, e))
        };
        // The epoch deadline normally ends a long call; this outer bound also
        // covers time spent outside guest code.
        let outer = spec.timeout + EPOCH_TICK * 10;
        let result = match tokio::time::timeout(outer, run).await {
            Err(_) => Err(CallError::Timeout(spec.timeout)),
            Ok(Ok(Ok(answer))) if answer.len() > spec.max_answer_bytes => Err(
                CallError::AnswerTooLarge(answer.len(), spec.max_answer_bytes),
            ),
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(message))) => Err(CallError::Handler(guest_text(&message))),
            Ok(Err((instantiating, error))) => Err(classify(
                error,
                live.store.data().limiter.hit,
                spec.memory_limit_bytes,
                spec.timeout,
                instantiating,
            )),
        };
        drop(niced);
        let output = live.store.data_mut().take_output();
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
        if reuse == 0 && spec.prepare_next {
            self.prepare_next(module, &spec).await;
        }
        CallOutcome { result, output }
    }

    /// Fresh-instance mode: instantiates the instance the handler's next
    /// event will use, after this event's pushes have been sent, so
    /// instantiation is off the next event's path. The instance serves
    /// exactly one event, like any fresh one; at most one waits per loaded
    /// handler, within the gateway's idle budget (none is made while the
    /// budget is spent). Its start function runs
    /// under the same deadline and limits as any call, with pushes going
    /// nowhere; one that fails is retried, and reported, by the next
    /// event's own instantiation.
    async fn prepare_next(&self, module: &HandlerModule, spec: &CallSpec) {
        if !module.pool.is_empty() {
            return;
        }
        // The connection writers this call's pushes woke run first.
        tokio::task::yield_now().await;
        if !module.pool.is_empty() {
            return;
        }
        // The budget first: an instance made while every unit of it is
        // taken (more services busy at once than it has units) would only
        // be dropped again, an instantiation spent for nothing per event.
        let Some(token) = self.idle.acquire() else {
            return;
        };
        let mut live = self.new_live(spec);
        let _niced = begin_event(&mut live.store, spec, Instant::now());
        live.store.data_mut().broker = self.discard.clone();
        let outer = spec.timeout + EPOCH_TICK * 10;
        let instantiating = Instant::now();
        let instantiate = module.pre.instantiate(&mut live.store);
        if let Ok(Ok(instance)) = tokio::time::timeout(outer, instantiate).await {
            crate::metrics::global().instantiated(instantiating.elapsed());
            live.instance = Some(instance);
            module.pool.put_within(Reusable { live, uses: 0 }, token);
        }
    }
}

/// The largest answer of a call in `role`: an HTTP handler's integration
/// response may carry a body as large as the service takes in a request,
/// in Base64, with its headers.
pub(crate) fn max_answer_bytes(role: Role, max_http_body_bytes: usize) -> usize {
    match role {
        Role::Http => MAX_ANSWER_BYTES.max(max_http_body_bytes / 3 * 4 + (64 << 10)),
        _ => MAX_ANSWER_BYTES,
    }
}

/// Sets up a store, new or reused, for one event: its scope, empty output,
/// a cleared memory-limit flag and a new deadline.
fn begin_event(store: &mut Store<EventState>, spec: &CallSpec, started: Instant) -> NicedGuard {
    let state = store.data_mut();
    state.broker = spec.broker.clone();
    state.max_message_bytes = spec.max_message_bytes;
    state.connection_id = spec.connection_id.clone();
    state.state = spec.state.clone();
    state.clear_output();
    state.limiter.memory_limit = spec.memory_limit_bytes;
    state.limiter.hit = None;
    let deadline = started + spec.timeout;
    let niced = Arc::new(NicedCall {
        cpu: spec.cpu.clone(),
        counted: AtomicBool::new(false),
    });
    let call = niced.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if now >= deadline {
            return Err(Trap::Interrupt.into());
        }
        if now >= started + NICE_AFTER {
            call.count();
        }
        if call.cpu.niced() == 0 {
            // tokio's own yield puts this task behind every other ready
            // task; a plain self-wake could run it again at once and let
            // a spinning guest starve other services' events.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        } else {
            // A call past NICE_AFTER, or any call of a service that has
            // one, is CPU-bound: it keeps running, but at a tenth of a
            // core, so it cannot crowd out short events of other services
            // (or of its own) on a small machine.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(EPOCH_TICK * NICE_SLEEP_TICKS)),
            ))
        }
    });
    NicedGuard(niced)
}

/// Guest frames a trap's log line names, innermost first.
const BACKTRACE_FRAMES: usize = 12;

/// A trap's message with the guest functions it happened in, innermost
/// first, when the module has a name section (bounded and escaped: the
/// names are the guest's).
fn trap_text(trap: &Trap, error: &wasmtime::Error) -> String {
    let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return trap.to_string();
    };
    // Rust names are mangled in the name section; the panic and abort
    // machinery on top of a Rust panic names nothing of the handler.
    let frames: Vec<String> = backtrace
        .frames()
        .iter()
        .filter_map(|frame| frame.func_name())
        .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
        .skip_while(|name| {
            ["std::", "core::", "__rustc::", "__rust", "rust_", "abort"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .take(BACKTRACE_FRAMES)
        .collect();
    if frames.is_empty() {
        return trap.to_string();
    }
    guest_text(&format!("{trap}; guest backtrace: {}", frames.join(" < ")))
}

/// Turns a wasmtime error into the reason reported for the call.
fn classify(
    error: wasmtime::Error,
    limit_hit: Option<LimitHit>,
    memory_limit: usize,
    timeout: Duration,
    instantiating: bool,
) -> CallError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(timeout),
        _ if limit_hit == Some(LimitHit::Service) => CallError::OutOfMemory(memory_limit),
        _ if limit_hit == Some(LimitHit::Gateway) => CallError::GatewayMemory,
        Some(trap) if !instantiating => CallError::Trap(trap_text(trap, &error)),
        Some(trap) => CallError::Instantiate(trap_text(trap, &error)),
        // The chain may name guest functions (a backtrace) or carry a
        // guest's text: the log shows it bounded and escaped.
        None if instantiating => CallError::Instantiate(guest_text(&format!("{error:#}"))),
        None => CallError::Trap(guest_text(&format!("{error:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_as_niced_once_and_until_it_ends() {
        let cpu = Arc::new(ServiceCpu::default());
        let call = Arc::new(NicedCall {
            cpu: cpu.clone(),
            counted: AtomicBool::new(false),
        });
        // The epoch callback keeps its own handle (as an idle reused
        // store's does); the call's guard alone decides when it ends.
        let callback = call.clone();
        let guard = NicedGuard(call);
        callback.count();
        callback.count();
        assert_eq!(cpu.niced(), 1);
        drop(guard);
        assert_eq!(cpu.niced(), 0);
        drop(callback);
        assert_eq!(cpu.niced(), 0);
    }
}
