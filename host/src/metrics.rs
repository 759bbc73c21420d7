//! The gateway's Prometheus metrics, served as text by the control
//! listener's `GET /metrics`.
//!
//! One registry per process ([`global`]): Prometheus scrapes a process, and
//! the counters are touched from every layer (sessions, dispatch, the
//! compile path, the key-value store, host calls) without threading a
//! handle through each. Several [`crate::Gateway`]s in one process (tests)
//! therefore add up in the same series.
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust
//! client: label sets are typed structs, a label set's counter can be
//! resolved once and kept (a clone shares the value), there is no global
//! recorder to install, and it writes the Prometheus text format that
//! `promtool` checks.
//!
//! **Cost on the per-event path.** A service resolves its series once
//! ([`ServiceMetrics`], kept by the service): an event then costs one atomic
//! add for its counter and one short uncontended lock for its histogram,
//! with no label hashing. Only rarer events (refusals, closes, key-value
//! operations, loads) look their series up by label.
//!
//! **Cardinality.** No label carries a connection id, a request id, a key,
//! or a code a guest or client chose; codes are those of the gateway's own
//! tables. Service names are bounded by the plugins folder, and further by
//! [`MAX_SERVICE_LABELS`]: names beyond it share the label value `_other`.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::protocol::{ApiError, ErrNo, Role};

/// Distinct service names that get a label value of their own; the rest
/// share `_other`. A gateway with more service folders than this still
/// works, with their series merged.
pub const MAX_SERVICE_LABELS: usize = 1000;

/// The label value of the services beyond [`MAX_SERVICE_LABELS`].
pub const OTHER_SERVICE: &str = "_other";

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the buckets of handler and key-value
/// latency: 50 us to 10 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds, in seconds, of the buckets of handler-file loads: a cache
/// hit takes milliseconds, a large compile tens of seconds.
const LOAD_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0, 180.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn load_histogram() -> Histogram {
    Histogram::new(LOAD_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectLabels {
    service: String,
    result: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    service: String,
    role: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceRole {
    service: String,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    source: &'static str,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvLabels {
    operation: &'static str,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvOperation {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    from: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What a handler call came to, as the `outcome` label of
/// `wasmgate_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler answered.
    Ok,
    /// The handler failed (trap, time-out, memory limit, error result,
    /// oversized answer, instantiation).
    Failed,
    /// No concurrency slot within the service's time-out.
    Busy,
    /// The handler file has not loaded yet.
    NotReady,
}

impl Outcome {
    const ALL: [Self; 4] = [Self::Ok, Self::Failed, Self::Busy, Self::NotReady];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Busy => "busy",
            Outcome::NotReady => "not_ready",
        }
    }
}

/// Where a push came from, as the `source` label of `wasmgate_pushes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushSource {
    /// `POST /push/<service>` on the control listener.
    Http,
    /// A handler's `push`, `close`, `route` or `broadcast` host call.
    HostCall,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections_open: Family<ServiceLabel, Gauge>,
    connects: Family<ConnectLabels, Counter>,
    events: Family<EventLabels, Counter>,
    handler_seconds: Family<ServiceRole, Histogram, fn() -> Histogram>,
    instantiate_seconds: Histogram,
    closes: Family<CloseLabels, Counter>,
    pushes: Family<PushLabels, Counter>,
    /// The common case of the per-event path, resolved once.
    host_call_pushes_ok: Counter,
    queue_overflows: Family<ServiceLabel, Counter>,
    kv_operations: Family<KvLabels, Counter>,
    kv_seconds: Family<KvOperation, Histogram, fn() -> Histogram>,
    load_seconds: Family<LoadLabels, Histogram, fn() -> Histogram>,
    compile_cache: Family<ResultLabel, Counter>,
    slots_in_use: Gauge,
    slots: Gauge,
    /// Service names with a label value of their own.
    service_labels: Mutex<HashSet<Arc<str>>>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Every metric, in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut text = String::new();
    // Writing to a String does not fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &global().registry);
    text
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let connections_open = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "wasmgate_connections_open",
            "WebSocket connections open now, per service",
            connections_open.clone(),
        );
        let connects = Family::<ConnectLabels, Counter>::default();
        registry.register(
            "wasmgate_connects",
            "WebSocket upgrade requests by service, result (accepted, refused) and reason (the errNo of a refusal, `handler` when register refused, `none` when accepted)",
            connects.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "wasmgate_events",
            "Handler calls by service, role and outcome (ok, failed, busy, not_ready)",
            events.clone(),
        );
        let handler_seconds =
            Family::<ServiceRole, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "wasmgate_handler_duration_seconds",
            "Time of a handler call, from taking its slots to its answer, by service and role",
            handler_seconds.clone(),
        );
        let instantiate_seconds = latency_histogram();
        registry.register(
            "wasmgate_instantiate_duration_seconds",
            "Time to instantiate a handler in a fresh store (on an event's path or prepared ahead of it)",
            instantiate_seconds.clone(),
        );
        let closes = Family::<CloseLabels, Counter>::default();
        registry.register(
            "wasmgate_closes",
            "Connections ended, by close code (the gateway's, the client's standard code, `other` or `none`) and closeReason",
            closes.clone(),
        );
        let pushes = Family::<PushLabels, Counter>::default();
        registry.register(
            "wasmgate_pushes",
            "Push, close and broadcast requests by source (http, host_call) and result (ok or the errNo)",
            pushes.clone(),
        );
        let host_call_pushes_ok = pushes
            .get_or_create(&PushLabels {
                source: "host_call",
                result: "ok".into(),
            })
            .clone();
        let queue_overflows = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "wasmgate_queue_overflows",
            "Connections closed because their outbound queue or the gateway's outbound budget overflowed, per service",
            queue_overflows.clone(),
        );
        let kv_operations = Family::<KvLabels, Counter>::default();
        registry.register(
            "wasmgate_kv_operations",
            "Key-value operations by operation and result (ok or the errNo)",
            kv_operations.clone(),
        );
        let kv_seconds = Family::<KvOperation, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "wasmgate_kv_operation_duration_seconds",
            "Time of a key-value operation (a write: until durable), by operation",
            kv_seconds.clone(),
        );
        let load_seconds = Family::<LoadLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            load_histogram,
        );
        registry.register(
            "wasmgate_handler_load_duration_seconds",
            "Time to load a handler file, by where it came from (cache, compile, failed)",
            load_seconds.clone(),
        );
        let compile_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "wasmgate_compile_cache_lookups",
            "Compile-cache lookups by result (hit, miss)",
            compile_cache.clone(),
        );
        let slots_in_use = Gauge::default();
        registry.register(
            "wasmgate_call_slots_in_use",
            "The gateway's handler-call slots (--max-concurrency) held by running calls",
            slots_in_use.clone(),
        );
        let slots = Gauge::default();
        registry.register(
            "wasmgate_call_slots",
            "The gateway's handler-call slots (--max-concurrency)",
            slots.clone(),
        );
        registry.register(
            "wasmgate_build",
            "The gateway's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            connections_open,
            connects,
            events,
            handler_seconds,
            instantiate_seconds,
            closes,
            pushes,
            host_call_pushes_ok,
            queue_overflows,
            kv_operations,
            kv_seconds,
            load_seconds,
            compile_cache,
            slots_in_use,
            slots,
            service_labels: Mutex::default(),
        }
    }

    /// The label value of `service`: its name while fewer than
    /// [`MAX_SERVICE_LABELS`] names have one, else [`OTHER_SERVICE`].
    fn service_label(&self, service: &str) -> String {
        // A std mutex: held for a set lookup, never across an await.
        let mut names = self
            .service_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if names.contains(service) {
            return service.to_owned();
        }
        if names.len() < MAX_SERVICE_LABELS {
            names.insert(service.into());
            return service.to_owned();
        }
        OTHER_SERVICE.to_owned()
    }

    /// The series of one service, resolved once.
    pub(crate) fn service(&self, service: &str) -> ServiceMetrics {
        let label = self.service_label(service);
        let events = Role::ALL.map(|role| {
            Outcome::ALL.map(|outcome| {
                self.events
                    .get_or_create(&EventLabels {
                        service: label.clone(),
                        role: role.as_str(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            })
        });
        let durations = Role::ALL.map(|role| {
            self.handler_seconds
                .get_or_create(&ServiceRole {
                    service: label.clone(),
                    role: role.as_str(),
                })
                .clone()
        });
        let service = ServiceLabel { service: label };
        ServiceMetrics {
            connections_open: self.connections_open.get_or_create(&service).clone(),
            queue_overflows: self.queue_overflows.get_or_create(&service).clone(),
            events,
            durations,
            label: service.service,
        }
    }

    /// An upgrade request was refused with `error` (`service` as the
    /// client named it, counted only if it is a loaded service).
    pub(crate) fn connect_refused(&self, service: Option<&str>, error: &ApiError) {
        let reason = if ErrNo::ALL.iter().any(|row| row.number == error.code) {
            error.code.to_string()
        } else {
            "handler".to_owned()
        };
        self.connects
            .get_or_create(&ConnectLabels {
                service: service.map_or_else(String::new, |name| self.service_label(name)),
                result: "refused",
                reason,
            })
            .inc();
    }

    /// A connection ended: `sent` is the gateway's close code, `client`
    /// the code of the client's close frame; `reason` its closeReason.
    pub(crate) fn closed(&self, sent: Option<u16>, client: Option<u16>, reason: &'static str) {
        let code = match (sent, client) {
            (Some(code), _) => code.to_string(),
            // Client codes are the client's choice: only the standard ones
            // get a value of their own.
            (None, Some(code @ 1000..=1015)) => code.to_string(),
            (None, Some(_)) => "other".to_owned(),
            (None, None) => "none".to_owned(),
        };
        self.closes
            .get_or_create(&CloseLabels { code, reason })
            .inc();
    }

    /// A push, close or broadcast request from `source` came to `result`.
    pub(crate) fn push<T>(&self, source: PushSource, result: &Result<T, ApiError>) {
        match (source, result) {
            (PushSource::HostCall, Ok(_)) => {
                self.host_call_pushes_ok.inc();
            }
            (source, result) => {
                let source = match source {
                    PushSource::Http => "http",
                    PushSource::HostCall => "host_call",
                };
                let result = match result {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error.code.to_string(),
                };
                self.pushes
                    .get_or_create(&PushLabels { source, result })
                    .inc();
            }
        }
    }

    /// One instantiation took `elapsed`.
    pub(crate) fn instantiated(&self, elapsed: Duration) {
        self.instantiate_seconds.observe(elapsed.as_secs_f64());
    }

    /// A key-value `operation` took `elapsed` and came to `result`.
    pub(crate) fn kv<T>(
        &self,
        operation: &'static str,
        elapsed: Duration,
        result: &Result<T, ApiError>,
    ) {
        let result = match result {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.code.to_string(),
        };
        self.kv_operations
            .get_or_create(&KvLabels { operation, result })
            .inc();
        self.kv_seconds
            .get_or_create(&KvOperation { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// A handler file loaded (`Some(from_cache)`) or failed (`None`) in
    /// `elapsed`; `cached` is whether a compile cache was asked.
    pub(crate) fn handler_loaded(&self, from_cache: Option<bool>, cached: bool, elapsed: Duration) {
        let from = match from_cache {
            Some(true) => "cache",
            Some(false) => "compile",
            None => "failed",
        };
        self.load_seconds
            .get_or_create(&LoadLabels { from })
            .observe(elapsed.as_secs_f64());
        if cached {
            let result = if from_cache == Some(true) {
                "hit"
            } else {
                "miss"
            };
            self.compile_cache
                .get_or_create(&ResultLabel { result })
                .inc();
        }
    }

    /// A gateway's `total` call slots were created (`added`) or dropped.
    pub(crate) fn add_call_slots(&self, total: usize, added: bool) {
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        if added {
            self.slots.inc_by(total);
        } else {
            self.slots.dec_by(total);
        }
    }

    /// A call took one of the gateway's slots.
    pub(crate) fn slot_taken(&self) {
        self.slots_in_use.inc();
    }

    /// A call gave its slot back.
    pub(crate) fn slot_returned(&self) {
        self.slots_in_use.dec();
    }
}

/// One service's series, resolved once when the service is created, so the
/// per-event path does no label lookup.
#[derive(Debug)]
pub(crate) struct ServiceMetrics {
    /// The service's label value (its name, or `_other`).
    label: String,
    connections_open: Gauge,
    queue_overflows: Counter,
    /// Per role (in [`Role::ALL`] order), per outcome (in [`Outcome::ALL`]
    /// order).
    events: [[Counter; Outcome::ALL.len()]; Role::ALL.len()],
    durations: [Histogram; Role::ALL.len()],
}

fn role_index(role: Role) -> usize {
    Role::ALL.iter().position(|r| *r == role).unwrap_or(0)
}

impl ServiceMetrics {
    /// One call of `role` came to `outcome`; `elapsed` is its time when it
    /// ran.
    pub(crate) fn event(&self, role: Role, outcome: Outcome, elapsed: Option<Duration>) {
        let role = role_index(role);
        let outcome_index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.events[role][outcome_index].inc();
        if let Some(elapsed) = elapsed {
            self.durations[role].observe(elapsed.as_secs_f64());
        }
    }

    /// A connection of the service was accepted and is open.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
        global()
            .connects
            .get_or_create(&ConnectLabels {
                service: self.label.clone(),
                result: "accepted",
                reason: "none".to_owned(),
            })
            .inc();
    }

    /// A connection of the service that was open has ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A connection of the service was closed for an overflowing queue.
    pub(crate) fn queue_overflow(&self) {
        self.queue_overflows.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_beyond_the_cap_share_one_label() {
        let metrics = Metrics::new();
        for n in 0..MAX_SERVICE_LABELS {
            assert_eq!(metrics.service_label(&format!("s{n}")), format!("s{n}"));
        }
        assert_eq!(metrics.service_label("one-too-many"), OTHER_SERVICE);
        // A name that has a label keeps it.
        assert_eq!(metrics.service_label("s0"), "s0");
    }

    #[test]
    fn a_services_resolved_series_are_the_ones_rendered() {
        let metrics = Metrics::new();
        let echo = metrics.service("echo");
        echo.event(Role::Transfer, Outcome::Ok, Some(Duration::from_micros(80)));
        echo.event(Role::Transfer, Outcome::Ok, Some(Duration::from_micros(80)));
        echo.event(Role::Register, Outcome::Busy, None);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text
            .contains(r#"wasmgate_events_total{service="echo",role="transfer",outcome="ok"} 2"#));
        assert!(text
            .contains(r#"wasmgate_events_total{service="echo",role="register",outcome="busy"} 1"#));
        assert!(text.contains(
            r#"wasmgate_handler_duration_seconds_count{service="echo",role="transfer"} 2"#
        ));
        assert!(text.contains(r#"wasmgate_build_info{version=""#));
    }
}
