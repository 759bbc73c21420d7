//! `GET /ws/<service>`: a WebSocket upgrade, decided by the service's
//! register handler, then handed to a [session](crate::session).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role as WebSocketRole, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::find_service;
use super::frame_budget::{Budget, FrameBudget};
use super::handshake::Handshake;
use crate::dispatch::{new_request_id, Event, Gateway};
use crate::protocol::{
    connecting_event, header_fields, query_fields, ApiError, CloseCause, ConnectingRequest, ErrNo,
    RegisterAnswer, Role,
};
use crate::session::PendingSession;
use crate::state::{Connection, QueueBounds, Router};
use crate::wasm::capture::guest_text;

/// Largest size of the per-connection read buffer. Small on purpose: an idle
/// connection costs little memory; tungstenite grows it for large messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Size of the write buffer before tungstenite flushes to the socket.
const WRITE_BUFFER_BYTES: usize = 0;

/// The upgrade route, with the gateway-wide budget of declared frames.
pub(super) fn routes(budget: Budget) -> axum::Router<Gateway> {
    axum::Router::new()
        .route("/ws/{service}", get(upgrade))
        .layer(Extension(budget))
}

/// How the socket is taken over once the 101 is sent.
struct Upgrade {
    /// Resolves to the socket after the 101; `None` when the connection
    /// cannot be upgraded.
    on_upgrade: Option<OnUpgrade>,
    budget: Budget,
}

/// What the upgrade request carried.
struct UpgradeRequest {
    service: String,
    peer: SocketAddr,
    uri: Uri,
    query: Option<String>,
    headers: HeaderMap,
}

async fn upgrade(
    State(gateway): State<Gateway>,
    Extension(budget): Extension<Budget>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Response {
    let upgrade = Upgrade {
        on_upgrade: request.extensions_mut().remove::<OnUpgrade>(),
        budget,
    };
    let request = UpgradeRequest {
        service,
        peer,
        uri: request.uri().clone(),
        query,
        headers: std::mem::take(request.headers_mut()),
    };
    // The whole handshake, register included, within the deadline; a
    // register still running then is dropped with its reservation.
    let deadline = gateway.config().front_door.handshake_timeout;
    let known = find_service(&gateway, &request.service).ok();
    let refused = match tokio::time::timeout(deadline, accept(gateway, request, upgrade)).await {
        Ok(Ok(response)) => return response,
        Ok(Err(error)) => error,
        Err(_) => ErrNo::HANDSHAKE_TIMEOUT.with(format_args!("{deadline:?}")),
    };
    // Accepted connections are counted when their session starts.
    crate::metrics::global().connect_refused(known.as_ref().map(|s| &*s.name), &refused);
    refused.into_response()
}

async fn accept(
    gateway: Gateway,
    request: UpgradeRequest,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    if gateway.is_shutting_down() {
        return Err(ErrNo::SHUTTING_DOWN.error());
    }
    let service = find_service(&gateway, &request.service)?;
    let handshake = Handshake::check(&request.headers)?;
    let on_upgrade = upgrade
        .on_upgrade
        .ok_or_else(|| ErrNo::BAD_UPGRADE.with("this connection cannot be upgraded"))?;
    // Fail closed: a handler file that has not loaded yet may be the check
    // the service asks for.
    if let Err(file) = service.readiness() {
        tracing::info!(service = %service.name, %file, "upgrade refused: service not ready");
        return Err(
            ErrNo::SERVICE_NOT_READY.with(format_args!("{file} is compiling or failed to load"))
        );
    }
    let config = service.config();
    let reservation = gateway.router().reserve(
        &service.name,
        request.peer.ip(),
        QueueBounds {
            messages: config.outbound_queue,
            bytes: config.outbound_queue_bytes,
        },
        config.max_connections,
    )?;
    let connection = reservation.connection.clone();
    // From here on the reservation is released on every early return, and
    // also when the client goes away while register runs (this future is
    // then dropped).
    let unregistered = ReleaseOnDrop {
        router: gateway.router().clone(),
        connection: Some(connection.clone()),
    };

    let request_id = new_request_id();
    let event = Event {
        connection_id: connection.id.clone(),
        request_id: request_id.clone(),
        json: connecting_event(&ConnectingRequest {
            service: &service.name,
            path: request.uri.path(),
            request_id: &request_id,
            connection_id: &connection.id,
            source_ip: request.peer.ip(),
            headers: header_fields(&request.headers),
            query: query_fields(request.query.as_deref()),
        }),
        departed_groups: None,
        connection: Some(Arc::downgrade(&connection)),
    };
    let protocol = match gateway.call(&service, Role::Register, event).await {
        None => None,
        Some(Err(_)) => return Err(ErrNo::REGISTER_FAILED.error()),
        Some(Ok(answer)) => match RegisterAnswer::parse(&answer) {
            Ok(RegisterAnswer::Accept {
                protocol,
                attributes,
            }) => {
                // Given in the answer, they replace any `set-attributes` of
                // the register call; absent, those stand.
                if attributes.is_some() {
                    connection.set_attributes(attributes);
                }
                protocol
            }
            Ok(RegisterAnswer::Refuse { code, message }) => {
                tracing::info!(service = %service.name, role = %Role::Register, conn = %connection.id, request_id = %request_id, err_no = code, err_msg = %guest_text(&message), "register refused the connection");
                return Err(ApiError::refused(code, message));
            }
            Err(error) => {
                let error = guest_text(&error.to_string());
                tracing::warn!(service = %service.name, role = %Role::Register, conn = %connection.id, request_id = %request_id, %error, "handler call failed");
                return Err(ErrNo::REGISTER_FAILED.error());
            }
        },
    };
    // Register accepted: from here the session owns the connection, and
    // runs its cleanup whatever happens to the upgrade.
    unregistered.disarm();
    let session = PendingSession::new(gateway.clone(), service.clone(), reservation);
    if gateway.is_shutting_down() {
        session.abandon(CloseCause::SHUTDOWN);
        return Err(ErrNo::SHUTTING_DOWN.error());
    }

    // The sub-protocol is sent back only if the client offered it.
    let protocol = protocol.filter(|chosen| {
        request
            .headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|offered| offered.trim() == chosen)
    });
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(config.max_message_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let budget = upgrade.budget;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = FrameBudget::new(TokioIo::new(upgraded), budget);
                let socket = WebSocketStream::from_raw_socket(
                    io,
                    WebSocketRole::Server,
                    Some(socket_config),
                )
                .await;
                session.run(socket).await;
            }
            // The session's drop runs its cleanup.
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });
    Ok(handshake.accept(protocol.as_deref()))
}

/// Removes a reserved connection from the router when dropped while armed.
struct ReleaseOnDrop {
    router: Router,
    connection: Option<Arc<Connection>>,
}

impl ReleaseOnDrop {
    fn disarm(mut self) {
        self.connection = None;
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.router.remove(&connection);
        }
    }
}
