//! The HTTP edge: the routes clients and backends reach, and serving them
//! until shutdown.
//!
//! - `upgrade.rs`: `GET /ws/<service>`, register, then the session.
//! - `control.rs`: reverse push, connection info and the admin route, the
//!   routes a service's backend (or its operator) uses.
//! - `public.rs`: health and the demo page.
//!
//! Routes call into dispatch and the state layer; nothing below imports
//! this module.

mod control;
mod public;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::dispatch::Gateway;
use crate::plugins::Service;
use crate::protocol::{ApiError, ErrNo};

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

/// The HTTP surface: the public routes (WebSocket upgrades, health, the demo
/// page) and the control routes (reverse push, connection info, admin).
pub fn app(gateway: Gateway) -> axum::Router {
    public::routes()
        .merge(upgrade::routes())
        .merge(control::routes())
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway)
}

/// The loaded service of that name, or errNo 2201.
fn find_service(gateway: &Gateway, name: &str) -> Result<Arc<Service>, ApiError> {
    gateway
        .services()
        .get(name)
        .ok_or_else(|| ErrNo::UNKNOWN_SERVICE.with(name))
}
