//! The HTTP edge: two listeners, the routes each serves, and serving them
//! until shutdown.
//!
//! - The **public** listener ([`public_app`]) carries client traffic:
//!   `GET /ws/<service>` (`upgrade.rs`), the HTTP trigger
//!   `ANY /http/<service>/...` (`trigger.rs`), the demo page and a
//!   `/healthz` that names nothing (`public.rs`).
//! - The **control** listener ([`control_app`]) carries what a service's
//!   backend and the operator use: reverse push, connection info and the
//!   admin route (`control.rs`). It is meant to stay on loopback or a
//!   private network; a route of one listener is 404 on the other.
//! - `listener.rs`: each listener's accept loop and HTTP/1 connections, under
//!   the caps of `admission.rs`.
//! - `tls.rs`: TLS on the public listener, its certificate reloaded when
//!   the files change.
//! - `handshake.rs`, `frame_budget.rs`: the WebSocket handshake, and the
//!   gateway-wide budget of frames declared but not yet received.
//!
//! Routes call into dispatch and the state layer; nothing below imports
//! this module.

mod admission;
mod control;
mod frame_budget;
mod handshake;
mod listener;
mod public;
mod tls;
mod trigger;
mod upgrade;

pub use tls::TlsError;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::admission::Admission;
use self::listener::{serve_listener, ListenerSettings, MAX_REFUSALS_IN_FLIGHT};
use crate::config::{FrontDoorConfig, GatewayConfig};
use crate::dispatch::Gateway;
use crate::plugins::Service;
use crate::protocol::{ApiError, ErrNo};

/// The gateway's two listening sockets.
#[derive(Debug)]
pub struct Listeners {
    /// Clients: WebSocket upgrades, the demo page, health.
    pub public: TcpListener,
    /// Backends and operators: reverse push, connection info, admin.
    pub control: TcpListener,
}

/// Connections the kernel queues for a listener before it accepts them: a
/// burst of clients (or of attackers) larger than the queue would see their
/// handshakes dropped and retried only after a second or more.
const ACCEPT_BACKLOG: u32 = 4096;

impl Listeners {
    /// Binds both addresses.
    pub async fn bind(public: SocketAddr, control: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            public: listen(public)?,
            control: listen(control)?,
        })
    }
}

/// A listening socket on `address` with [`ACCEPT_BACKLOG`].
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves the gateway on `listeners` until `shutdown` resolves, then closes
/// every connection with 1001, runs their cleanups and returns.
pub async fn run(
    listeners: Listeners,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let gateway = Gateway::new(config).await?;
    serve(listeners, gateway, shutdown).await
}

/// Like [`run`], with an already built [`Gateway`].
pub async fn serve(
    listeners: Listeners,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let front = &gateway.config().front_door;
    let public_admission = Admission::new(public_limit(front), front.max_connections_per_ip);
    let control_admission = Admission::new(front.max_control_connections, 0);
    let stop = CancellationToken::new();
    let tls = match &gateway.config().tls {
        Some(config) => Some(tls::acceptor(config, stop.clone())?),
        None => None,
    };
    let settings = |name, tls| ListenerSettings {
        name,
        header_timeout: front.header_timeout,
        max_head_bytes: front.max_request_head_bytes,
        tls,
    };
    tracing::info!(
        public = %listeners.public.local_addr()?,
        control = %listeners.control.local_addr()?,
        max_connections = public_admission.limit(),
        max_connections_per_ip = front.max_connections_per_ip,
        tls = tls.is_some(),
        services = ?gateway.services().names(),
        "gateway listening"
    );
    let signal = gateway.clone();
    let stopping = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing every connection with 1001");
        signal.begin_shutdown();
        stopping.cancel();
    });
    tokio::join!(
        serve_listener(
            listeners.public,
            public_app(gateway.clone()),
            public_admission,
            settings("public", tls),
            stop.clone(),
        ),
        serve_listener(
            listeners.control,
            control_app(gateway.clone()),
            control_admission,
            settings("control", None),
            stop.clone(),
        ),
    );
    gateway.drain().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The public listener's cap: as configured, but never more than the
/// file descriptors left once the reserve, the control listener and the
/// refusals in flight have theirs. The open-file soft limit is raised to
/// the hard limit first.
fn public_limit(front: &FrontDoorConfig) -> usize {
    let open_files = rlimit::increase_nofile_limit(u64::MAX)
        .ok()
        .and_then(|limit| usize::try_from(limit).ok())
        .unwrap_or(1024);
    let spoken_for = front.fd_reserve + front.max_control_connections + 2 * MAX_REFUSALS_IN_FLIGHT;
    let available = open_files.saturating_sub(spoken_for).max(1);
    match front.max_connections {
        Some(wanted) if wanted > available => {
            tracing::warn!(
                wanted,
                available,
                open_files,
                "max_connections is above what the open-file limit leaves; lowered"
            );
            available
        }
        Some(wanted) => wanted,
        None => available,
    }
}

/// The public listener's routes: WebSocket upgrades, the HTTP trigger,
/// the demo page, health.
pub fn public_app(gateway: Gateway) -> axum::Router {
    let budget = frame_budget::Budget::new(gateway.config().front_door.frame_budget_bytes);
    public::routes()
        .merge(upgrade::routes(budget.clone()))
        .merge(trigger::routes(budget))
        .fallback(unknown_route)
        .with_state(gateway)
}

/// The control listener's routes: reverse push, connection info, admin.
pub fn control_app(gateway: Gateway) -> axum::Router {
    control::routes()
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway)
}

async fn unknown_route() -> ApiError {
    ErrNo::UNKNOWN_ROUTE.error()
}

/// The loaded service of that name, or errNo 2201.
fn find_service(gateway: &Gateway, name: &str) -> Result<Arc<Service>, ApiError> {
    gateway
        .services()
        .get(name)
        .ok_or_else(|| ErrNo::UNKNOWN_SERVICE.with(name))
}
