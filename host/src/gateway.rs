//! The gateway: shared state, the HTTP surface ([`app`]), handler dispatch
//! with concurrency limits and log tagging, and [`run`] with graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{LogLevel, OutputSource};
use crate::config::{GatewayConfig, ServiceConfig};
use crate::connection::PendingSession;
use crate::kv::KvStore;
use crate::protocol::{self, ApiError, ConnectingRequest, PushRequest, RegisterAnswer};
use crate::router::{CloseCause, Router};
use crate::runtime::{CallError, CallSpec, Role, Routing, Runtime, StateAccess};
use crate::services::{Service, Services};

/// Everything the gateway shares between requests, connections and handler
/// calls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: GatewayConfig,
    runtime: Runtime,
    services: Services,
    router: Router,
    /// Durable key-value state of every service.
    kv: KvStore,
    /// Handler calls running at once across services, equal to the pool size.
    global_slots: Arc<Semaphore>,
    /// Cancelled when shutdown starts: no new connections are accepted.
    shutting_down: CancellationToken,
    /// Every connection task, so shutdown can wait for their cleanups.
    connections: TaskTracker,
    /// Reloads changed plugins while alive.
    _watcher: Option<crate::watcher::PluginWatcher>,
}

impl Gateway {
    /// Builds the runtime and loads every service of `config.plugins_dir`.
    pub async fn new(config: GatewayConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let runtime = Runtime::new(&config)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .context("creating the wasm engine")?;
        let kv = match &config.state_file {
            Some(path) => KvStore::open(path)?,
            None => KvStore::in_memory()?,
        };
        let router = Router::default();
        let services = Services::new(runtime.clone(), config.clone());
        services
            .reconcile_all(&router)
            .await
            .with_context(|| format!("reading plugins folder {}", config.plugins_dir.display()))?;
        let shutting_down = CancellationToken::new();
        let watcher = if config.watch {
            let watcher = crate::watcher::watch(
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
        Ok(Self {
            inner: Arc::new(Inner {
                global_slots: Arc::new(Semaphore::new(config.max_concurrency as usize)),
                config,
                runtime,
                services,
                router,
                kv,
                shutting_down,
                connections: TaskTracker::new(),
                _watcher: watcher,
            }),
        })
    }

    /// The connection registry.
    pub fn router(&self) -> &Router {
        &self.inner.router
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

    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.inner.connections
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.is_cancelled()
    }

    /// Runs the handler of `role` for one event. `None` when the service has
    /// no handler for that role. Logs the handler's output and any failure
    /// with service, role, file, request id and connection id.
    /// `departed_groups` is, for cleanup, the groups the connection was in.
    pub(crate) async fn call(
        &self,
        service: &Service,
        role: Role,
        connection_id: &Arc<str>,
        event: String,
        departed_groups: Option<Vec<Arc<str>>>,
    ) -> Option<Result<String, CallError>> {
        let handler = service.handler(role)?;
        let config = service.config();
        let request_id = uuid::Uuid::new_v4().to_string();
        // Free slots are the common case: take them without arming a timer.
        let ready = service
            .concurrency
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|own| {
                let global = self.inner.global_slots.clone().try_acquire_owned().ok()?;
                Some((own, global))
            });
        let permits = match ready {
            Some(permits) => Some(permits),
            None => {
                let wait = async {
                    let own = service.concurrency.clone().acquire_owned().await.ok()?;
                    let global = self.inner.global_slots.clone().acquire_owned().await.ok()?;
                    Some((own, global))
                };
                tokio::time::timeout(config.timeout, wait)
                    .await
                    .ok()
                    .flatten()
            }
        };
        let Some(_permits) = permits else {
            let error = CallError::Busy(config.timeout);
            tracing::warn!(service = %service.name, %role, file = %handler.file, request_id = %request_id, conn = %connection_id, %error, "handler call failed");
            return Some(Err(error));
        };
        let spec = CallSpec {
            service: service.name.clone(),
            role,
            request_id: request_id.clone(),
            connection_id: connection_id.clone(),
            event,
            timeout: config.timeout,
            memory_limit_bytes: config.memory_limit_bytes,
            env: config.env.clone(),
            routing: Routing::Gateway {
                router: self.inner.router.clone(),
                max_message_bytes: config.max_message_bytes,
            },
            state: StateAccess {
                kv: self.inner.kv.clone(),
                kv_max_keys: config.kv_max_keys,
                departed_groups,
            },
            instance_reuse: config.instance_reuse,
        };
        let outcome = self.inner.runtime.call(&handler.module, spec).await;
        for line in &outcome.output {
            emit_output(
                &service.name,
                role,
                &request_id,
                connection_id,
                line.source,
                &line.text,
            );
        }
        if let Err(error) = &outcome.result {
            tracing::warn!(service = %service.name, %role, file = %handler.file, request_id = %request_id, conn = %connection_id, %error, "handler call failed");
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

/// Serves the gateway on `listener` until `shutdown` resolves, then closes
/// every connection with 1001, runs their cleanups and returns.
pub async fn run(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let gateway = Gateway::new(config).await?;
    serve(listener, gateway, shutdown).await
}

/// Like [`run`], with an already built [`Gateway`].
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, services = ?gateway.services().names(), "gateway listening");
    let signal = gateway.clone();
    let app = app(gateway.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing every connection with 1001");
            signal.begin_shutdown();
        })
        .await?;
    gateway.drain().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The HTTP surface: WebSocket upgrades, reverse push, connection info and health.
pub fn app(gateway: Gateway) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/ws/{service}", get(upgrade))
        .route("/push/{service}", get(list_connections).post(push))
        .route("/push/{service}/{*id}", get(connection_info))
        .route("/admin/services", get(admin_services))
        .route("/demo/chat", get(demo_chat))
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway)
}

/// The browser page of the chat example (the `chat` service), plain HTML
/// and JavaScript.
async fn demo_chat() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("demo/chat.html"))
}

async fn healthz(State(gateway): State<Gateway>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": if gateway.is_shutting_down() { "shutting down" } else { "ok" },
        "services": gateway.services().names(),
    }))
}

/// What is loaded, per service and file: content hash, load time, compile
/// time and the last load error. Loopback callers only.
async fn admin_services(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !peer.ip().is_loopback() {
        return Err(ApiError::forbidden_admin());
    }
    let millis = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let services: Vec<serde_json::Value> = gateway
        .services()
        .names()
        .iter()
        .filter_map(|name| gateway.services().get(name))
        .map(|service| {
            let files: Vec<serde_json::Value> = crate::services::HANDLER_FILES
                .iter()
                .filter_map(|file| service.handler_file(file))
                .map(|handler| {
                    serde_json::json!({
                        "file": handler.file,
                        "hash": &*handler.hash,
                        "loadedAt": millis(handler.loaded_at),
                        "compileMs": handler.compile_ms,
                        "fromCache": handler.from_cache,
                    })
                })
                .collect();
            let roles: serde_json::Map<String, serde_json::Value> = Role::ALL
                .iter()
                .map(|role| {
                    let file = service.handler(*role).map(|h| h.file);
                    (role.as_str().to_owned(), serde_json::json!(file))
                })
                .collect();
            serde_json::json!({
                "name": &*service.name,
                "files": files,
                "roles": roles,
                "errors": service.failures(),
                "connections": gateway.router().count(&service.name),
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "errNo": 0, "errMsg": "ok", "services": services }),
    ))
}

fn find_service(gateway: &Gateway, name: &str) -> Result<Arc<Service>, ApiError> {
    gateway
        .services()
        .get(name)
        .ok_or_else(|| ApiError::unknown_service(name))
}

/// Checks the reverse-push authorisation rule: the bearer token if the service
/// has one (compared in constant time), else a loopback caller.
fn authorize(config: &ServiceConfig, headers: &HeaderMap, peer: IpAddr) -> Result<(), ApiError> {
    match &config.push_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::unauthorized())
            }
        }
        None if peer.is_loopback() => Ok(()),
        None => Err(ApiError::forbidden_remote()),
    }
}

async fn push(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    let config = service.config();
    authorize(&config, &headers, peer.ip())?;
    // Base64 grows data by 4/3; allow that plus room for the JSON around it.
    let body_limit = config.max_message_bytes / 3 * 4 + 64 * 1024;
    let body = axum::body::to_bytes(body, body_limit)
        .await
        .map_err(|_| ApiError::payload_too_large(body_limit + 1, body_limit))?;
    let request = PushRequest::parse(&body, config.max_message_bytes)?;
    let broadcast = matches!(request, PushRequest::Broadcast { .. });
    let reached = gateway.router().route(&service.name, request)?;
    let mut body = protocol::ok_body();
    if broadcast {
        // An addition to the contract's answer, for the addition's action.
        body["delivered"] = reached.into();
    }
    Ok(Json(body))
}

async fn list_connections(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    authorize(&service.config(), &headers, peer.ip())?;
    let connections = gateway.router().list(&service.name);
    Ok(Json(serde_json::json!({
        "errNo": 0,
        "errMsg": "ok",
        "connections": connections,
    })))
}

async fn connection_info(
    State(gateway): State<Gateway>,
    Path((service, id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    authorize(&service.config(), &headers, peer.ip())?;
    let info = gateway
        .router()
        .info(&service.name, &id)
        .ok_or_else(|| ApiError::connection_not_found(&id))?;
    Ok(Json(serde_json::json!({
        "errNo": 0,
        "errMsg": "ok",
        "connection": info,
    })))
}

/// Largest size of the per-connection read buffer. Small on purpose: an idle
/// connection costs little memory; tungstenite grows it for large messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Size of the write buffer before tungstenite flushes to the socket.
const WRITE_BUFFER_BYTES: usize = 0;

#[allow(clippy::too_many_arguments)]
async fn upgrade(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(gateway, service, peer, uri, query, headers, upgrade).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept(
    gateway: Gateway,
    service: String,
    peer: SocketAddr,
    uri: Uri,
    query: Option<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if gateway.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let service = find_service(&gateway, &service)?;
    let upgrade = upgrade
        .map_err(|rejection| ApiError::bad_upgrade(rejection.status(), rejection.body_text()))?;
    let config = service.config();
    let reservation = gateway.router().reserve(
        &service.name,
        peer.ip(),
        config.outbound_queue,
        config.max_connections,
    )?;
    let connection = reservation.connection.clone();
    // From here on the reservation is released on every early return, and
    // also when the client goes away while register runs (this future is
    // then dropped).
    let mut unregistered = ReleaseOnDrop {
        router: gateway.router().clone(),
        connection: Some(connection.clone()),
    };

    let request_id = uuid::Uuid::new_v4().to_string();
    let event = protocol::connecting_event(&ConnectingRequest {
        service: &service.name,
        path: uri.path(),
        request_id: &request_id,
        connection_id: &connection.id,
        source_ip: peer.ip(),
        headers: header_map(&headers),
        query: query_map(query.as_deref()),
    });
    let protocol = match gateway
        .call(&service, Role::Register, &connection.id, event, None)
        .await
    {
        None => None,
        Some(Err(_)) => return Err(ApiError::register_failed()),
        Some(Ok(answer)) => match RegisterAnswer::parse(&answer) {
            Ok(RegisterAnswer::Accept { protocol }) => protocol,
            Ok(RegisterAnswer::Refuse { code, message }) => {
                tracing::info!(service = %service.name, conn = %connection.id, err_no = code, err_msg = %message, "register refused the connection");
                return Err(ApiError::refused(code, message));
            }
            Err(error) => {
                tracing::warn!(service = %service.name, role = %Role::Register, conn = %connection.id, %error, "handler call failed");
                return Err(ApiError::register_failed());
            }
        },
    };
    if gateway.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }

    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(config.max_message_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes);
    if let Some(protocol) = protocol {
        upgrade = upgrade.protocols([protocol]);
    }
    unregistered.connection = None;
    let session = PendingSession::new(gateway.clone(), service, reservation);
    Ok(upgrade
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| session.run(socket)))
}

/// Removes a reserved connection from the router when dropped while armed.
struct ReleaseOnDrop {
    router: Router,
    connection: Option<Arc<crate::router::Connection>>,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.router.remove(&connection);
        }
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Grace given to a connection's writer to flush its close frame.
pub(crate) const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn without_a_token_only_loopback_may_push() {
        let config = ServiceConfig::default();
        assert!(authorize(&config, &headers(None), IpAddr::from([127, 0, 0, 1])).is_ok());
        assert!(authorize(&config, &headers(None), "::1".parse().unwrap()).is_ok());
        let error = authorize(&config, &headers(None), IpAddr::from([10, 1, 2, 3])).unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (403, 2102));
    }

    #[test]
    fn with_a_token_everyone_needs_it() {
        let config = ServiceConfig {
            push_token: Some("0123456789abcdef".into()),
            ..ServiceConfig::default()
        };
        let remote = IpAddr::from([10, 1, 2, 3]);
        assert!(authorize(&config, &headers(Some("Bearer 0123456789abcdef")), remote).is_ok());
        for given in [
            None,
            Some("Bearer 0123456789abcdeX"),
            Some("0123456789abcdef"),
        ] {
            let error =
                authorize(&config, &headers(given), IpAddr::from([127, 0, 0, 1])).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (401, 2101),
                "{given:?}"
            );
        }
    }
}
