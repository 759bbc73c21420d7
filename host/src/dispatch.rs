//! The gateway's shared state ([`Gateway`]) and handler dispatch: calling a
//! service's handler for one event within its concurrency caps, and logging
//! what the handler printed and why it failed, tagged with service, role,
//! request id and connection id.
//!
//! Dispatch sits between the edges (`http`, `session`) and the core
//! (`plugins`, `wasm`, `state`); it imports neither edge.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cleaner, ClusterNode, LostConnection};
use crate::config::{GatewayConfig, KvConfig, ServiceConfig};
use crate::metrics::Outcome;
use crate::plugins::{CapPermit, PluginWatcher, Service, Services, Slot};
use crate::protocol::{closing_event, CloseCause, CloseReason, Role};
use crate::state::kv::{KvQuota, KvStore};
use crate::state::{Broker, OutboundBudget, Router};
use crate::wasm::capture::{LogLevel, OutputSource};
use crate::wasm::{CallError, CallSpec, Runtime, StateAccess};

/// Everything the gateway shares between requests, connections and handler
/// calls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// A [`Gateway`] that does not keep it alive: for tasks that outlive no
/// gateway (the timer scheduler).
#[derive(Clone, Debug)]
pub(crate) struct WeakGateway(std::sync::Weak<Inner>);

impl WeakGateway {
    /// The gateway, if it is still there.
    pub(crate) fn upgrade(&self) -> Option<Gateway> {
        self.0.upgrade().map(|inner| Gateway { inner })
    }
}

#[derive(Debug)]
struct Inner {
    config: GatewayConfig,
    runtime: Runtime,
    services: Services,
    /// This node's connections.
    router: Router,
    /// Where routed requests go: on a single node, the router itself; in
    /// cluster mode, the cluster broker.
    broker: Arc<dyn Broker>,
    /// Cluster mode: this node's membership.
    cluster: Option<ClusterNode>,
    /// Durable key-value state of every service.
    kv: KvStore,
    /// Cancelled when shutdown starts: no new connections are accepted.
    shutting_down: CancellationToken,
    /// Every connection task, so shutdown can wait for their cleanups.
    connections: TaskTracker,
    /// Reloads changed plugins while alive.
    _watcher: Option<PluginWatcher>,
    /// Stops the timer scheduler when the gateway goes.
    _timers: tokio_util::sync::DropGuard,
    /// Becomes true once every handler file found at start-up has loaded
    /// or failed.
    loaded: tokio::sync::watch::Receiver<bool>,
}

/// One event for a handler.
#[derive(Debug)]
pub(crate) struct Event {
    /// The connection it is about.
    pub connection_id: Arc<str>,
    /// The id of this call, the same in the event (register), the
    /// handler's context and every log line.
    pub request_id: Arc<str>,
    /// The event JSON.
    pub json: String,
    /// For cleanup: the groups the connection was in.
    pub departed_groups: Option<Vec<Arc<str>>>,
    /// The connection itself, for `set-attributes`.
    pub connection: Option<std::sync::Weak<crate::state::Connection>>,
}

/// A fresh request id.
pub(crate) fn new_request_id() -> Arc<str> {
    uuid::Uuid::new_v4().to_string().into()
}

impl Gateway {
    /// Builds the runtime and loads every service of `config.plugins_dir`.
    pub async fn new(config: GatewayConfig) -> anyhow::Result<Self> {
        config.check().map_err(anyhow::Error::msg)?;
        let kv = match &config.kv {
            KvConfig::Redb { file: Some(path) } => KvStore::open(path)?,
            KvConfig::Redb { file: None } => KvStore::in_memory()?,
            KvConfig::Redis { url } => KvStore::redis(url)?,
        };
        let runtime = Runtime::new(&config)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .context("creating the wasm engine")?;
        report_lowered_defaults(&config);
        let router = Router::new(OutboundBudget::new(config.outbound_budget_bytes));
        let cluster = match &config.cluster {
            Some(url) => Some(ClusterNode::new(url, router.clone())?),
            None => None,
        };
        let broker: Arc<dyn Broker> = match &cluster {
            Some(cluster) => Arc::new(cluster.broker()),
            None => Arc::new(router.clone()),
        };
        let services = Services::new(runtime.clone(), config.clone());
        // Every folder becomes a service at once, refusing clients until its
        // handlers have loaded; compiling goes on while the gateway listens.
        let loading = services
            .start_all(&router)
            .await
            .with_context(|| format!("reading plugins folder {}", config.plugins_dir.display()))?;
        let (loaded_tx, loaded) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            loading.finish().await;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "every handler file found at start-up has loaded or failed"
            );
            let _ = loaded_tx.send(true);
        });
        let shutting_down = CancellationToken::new();
        let watcher = if config.watch {
            let watcher = crate::plugins::watch(
                services.clone(),
                router.clone(),
                config.reload_debounce,
                shutting_down.clone(),
            )
            .with_context(|| format!("watching plugins folder {}", config.plugins_dir.display()))?;
            Some(watcher)
        } else {
            None
        };
        let timers = shutting_down.child_token();
        let gateway = Self {
            inner: Arc::new(Inner {
                config,
                runtime,
                services,
                broker,
                cluster,
                router,
                kv,
                shutting_down,
                connections: TaskTracker::new(),
                _watcher: watcher,
                _timers: timers.clone().drop_guard(),
                loaded,
            }),
        };
        crate::timers::spawn(&gateway, gateway.services().timers_changed(), timers);
        if let Some(cluster) = &gateway.inner.cluster {
            let runner = gateway.clone();
            let cleaner: Cleaner = Arc::new(
                move |lost: LostConnection| -> futures_util::future::BoxFuture<'static, ()> {
                    let gateway = runner.clone();
                    Box::pin(async move { gateway.cleanup_lost(lost).await })
                },
            );
            cluster.start(cleaner);
        }
        Ok(gateway)
    }

    /// A handle that does not keep the gateway alive.
    pub(crate) fn downgrade(&self) -> WeakGateway {
        WeakGateway(Arc::downgrade(&self.inner))
    }

    /// Cluster mode: this node's membership.
    pub fn cluster(&self) -> Option<&ClusterNode> {
        self.inner.cluster.as_ref()
    }

    /// Runs the cleanup of a connection that lived on a node that died or
    /// lost its lease (cluster mode), with `closeReason` `node_lost`, its
    /// attributes, and its groups for `groups-of`, as the registry in Redis
    /// kept them.
    pub(crate) async fn cleanup_lost(&self, lost: LostConnection) {
        let LostConnection {
            service,
            id,
            groups,
            attributes,
        } = lost;
        let id = id.as_str();
        let Some(service) = self.services().get(&service) else {
            tracing::warn!(
                service = %service,
                conn = id,
                "a lost node's connection: no such service here; its cleanup is skipped"
            );
            return;
        };
        let connection_id: Arc<str> = id.into();
        let request_id = new_request_id();
        let event = Event {
            connection_id: connection_id.clone(),
            request_id: request_id.clone(),
            json: closing_event(id, CloseReason::NodeLost, None, attributes.as_deref()),
            departed_groups: Some(groups.iter().map(|group| group.as_str().into()).collect()),
            connection: None,
        };
        let cleanup = match Box::pin(self.call(&service, Role::Cleanup, event)).await {
            None => "none",
            Some(Ok(_)) => "ok",
            Some(Err(_)) => "failed",
        };
        tracing::info!(
            service = %service.name,
            role = %Role::Cleanup,
            request_id = %request_id,
            conn = %connection_id,
            reason = CloseReason::NodeLost.as_str(),
            cleanup,
            "connection closed"
        );
    }

    /// Waits until every handler file found at start-up has loaded or
    /// failed (each service refuses clients until its own files have).
    pub async fn loaded(&self) {
        let mut loaded = self.inner.loaded.clone();
        let _ = loaded.wait_for(|done| *done).await;
    }

    /// Whether every handler file found at start-up has loaded or failed.
    pub fn is_loaded(&self) -> bool {
        *self.inner.loaded.borrow()
    }

    /// This node's connection registry.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Where routed requests go (reverse push, host calls, info routes).
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The key-value store of every service's state.
    pub fn kv(&self) -> &KvStore {
        &self.inner.kv
    }

    /// The loaded services.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// The gateway-wide settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Every connection task, for shutdown to wait on.
    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.inner.connections
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.is_cancelled()
    }

    /// A permit of the service's cap and one of the gateway's slots (within
    /// the service's fair share), waiting at most the service's time-out
    /// for them.
    async fn slots(&self, service: &Service, config: &ServiceConfig) -> Option<(CapPermit, Slot)> {
        let slots = self.inner.services.slots();
        // Free slots are the common case: take them without arming a timer.
        let ready = service.concurrency.try_acquire().and_then(|own| {
            let global = slots.try_acquire(&service.slots_held)?;
            Some((own, global))
        });
        if ready.is_some() {
            return ready;
        }
        let wait = async {
            let own = service.concurrency.acquire().await;
            let global = slots.acquire(&service.slots_held).await;
            Some((own, global))
        };
        tokio::time::timeout(config.timeout, wait)
            .await
            .ok()
            .flatten()
    }

    /// Runs the handler of `role` for one event. `None` when the service has
    /// no handler for that role. Logs the handler's output and any failure
    /// with service, role, file, request id and connection id.
    pub(crate) async fn call(
        &self,
        service: &Service,
        role: Role,
        event: Event,
    ) -> Option<Result<String, CallError>> {
        let Event {
            connection_id,
            request_id,
            json,
            departed_groups,
            connection,
        } = event;
        let handler = match service.handler(role) {
            Ok(handler) => handler?,
            Err(file) => {
                let error = CallError::NotReady(file.name());
                tracing::warn!(service = %service.name, %role, %file, request_id = %request_id, conn = %connection_id, %error, "handler call failed");
                service.metrics.event(role, Outcome::NotReady, None);
                return Some(Err(error));
            }
        };
        if !handler.module.handles(role) {
            let error = CallError::RoleUnknown(role);
            tracing::debug!(service = %service.name, %role, file = %handler.file, request_id = %request_id, %error, "handler not called");
            service.metrics.event(role, Outcome::Failed, None);
            return Some(Err(error));
        }
        let config = service.config();
        let Some(_slots) = self.slots(service, &config).await else {
            let error = CallError::Busy(config.timeout);
            tracing::warn!(service = %service.name, %role, file = %handler.file, request_id = %request_id, conn = %connection_id, %error, "handler call failed");
            service.metrics.event(role, Outcome::Busy, None);
            return Some(Err(error));
        };
        let started = std::time::Instant::now();
        let spec = CallSpec {
            service: service.name.clone(),
            role,
            request_id: request_id.clone(),
            connection_id: connection_id.clone(),
            event: json,
            timeout: config.timeout,
            memory_limit_bytes: config.memory_limit_bytes,
            env: config.env.clone(),
            broker: self.inner.broker.clone(),
            max_message_bytes: config.max_message_bytes,
            max_answer_bytes: crate::wasm::max_answer_bytes(role, config.max_http_body_bytes),
            instance_reuse: config.instance_reuse,
            prepare_next: true,
            cpu: service.cpu.clone(),
            state: StateAccess {
                kv: self.inner.kv.clone(),
                kv_quota: KvQuota {
                    max_keys: config.kv_max_keys,
                    max_bytes: config.kv_max_bytes,
                },
                departed_groups,
                connection,
            },
        };
        let outcome = self.inner.runtime.call(&handler.module, spec).await;
        for line in &outcome.output {
            emit_output(
                &service.name,
                role,
                &request_id,
                &connection_id,
                line.source,
                &line.text,
            );
        }
        let elapsed = Some(started.elapsed());
        match &outcome.result {
            Ok(_) => service.metrics.event(role, Outcome::Ok, elapsed),
            Err(error) => {
                service.metrics.event(role, Outcome::Failed, elapsed);
                tracing::warn!(service = %service.name, %role, file = %handler.file, request_id = %request_id, conn = %connection_id, %error, "handler call failed");
            }
        }
        Some(outcome.result)
    }

    /// Starts shutdown: refuse new connections and close every live one with 1001.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.cancel();
        self.inner.router.close_all(None, CloseCause::SHUTDOWN);
    }

    /// Waits until every connection task (and so every cleanup) has finished,
    /// at most the configured grace period.
    pub async fn drain(&self) {
        self.inner.connections.close();
        if tokio::time::timeout(
            self.inner.config.shutdown_grace,
            self.inner.connections.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                remaining = self.inner.connections.len(),
                "shutdown grace period over; some cleanups did not finish"
            );
        }
        if let Some(cluster) = &self.inner.cluster {
            cluster.leave().await;
        }
    }
}

/// Says once, at start-up, which service defaults the gateway's own limits
/// lower (see [`ServiceConfig::defaults`]).
fn report_lowered_defaults(config: &GatewayConfig) {
    let (full, lowered) = (ServiceConfig::default(), ServiceConfig::defaults(config));
    if lowered.memory_limit_bytes < full.memory_limit_bytes {
        tracing::info!(
            max_memory_mb = config.max_memory_mb,
            default_mb = full.memory_limit_bytes >> 20,
            "--max-memory-mb is below the default memory_limit_mb: services that do not set it get {} MiB",
            config.max_memory_mb
        );
    }
    if lowered.max_concurrency < full.max_concurrency {
        tracing::info!(
            max_concurrency = config.max_concurrency,
            default = full.max_concurrency,
            "--max-concurrency is below the default max_concurrency: services that do not set it get {}",
            config.max_concurrency
        );
    }
}

/// Sends one line of handler output to the gateway's log.
fn emit_output(
    service: &str,
    role: Role,
    request_id: &str,
    conn: &str,
    source: OutputSource,
    text: &str,
) {
    let stream = match source {
        OutputSource::Stdout => "stdout",
        OutputSource::Stderr => "stderr",
        OutputSource::Log(_) => "log",
    };
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(target: "wasmgate::handler", service = %service, role = %role, request_id = %request_id, conn = %conn, stream = %stream, "{text}")
        };
    }
    match source {
        OutputSource::Log(LogLevel::Trace) => line!(trace),
        OutputSource::Log(LogLevel::Debug) => line!(debug),
        OutputSource::Log(LogLevel::Info) | OutputSource::Stdout => line!(info),
        OutputSource::Log(LogLevel::Warn) | OutputSource::Stderr => line!(warn),
        OutputSource::Log(LogLevel::Error) => line!(error),
    }
}
