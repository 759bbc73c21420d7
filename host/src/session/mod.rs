//! One WebSocket connection from upgrade to cleanup.
//!
//! A reader loop reads client frames and runs the transfer handler for each
//! message in turn, so messages of one connection never overtake each other;
//! a writer task drains the connection's bounded outbound queue into the
//! socket (`writer.rs`). Whatever ends the connection, it leaves the router
//! first (so no push reaches a closing connection), then its cleanup handler
//! runs once. Idleness and liveness are two clocks (`liveness.rs`).

use std::sync::Arc;
use std::time::Duration;

mod liveness;
mod writer;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::task_tracker::TaskTrackerToken;

use self::liveness::Liveness;
use self::writer::{write_loop, WriterStop};

use crate::dispatch::{new_request_id, Event, Gateway};
use crate::plugins::Service;
use crate::protocol::{self, CloseCause, CloseReason, Payload, Role};
use crate::state::{Connection, OutboundReceiver, Reservation};
use crate::wasm::CallError;

/// Grace given to a connection's writer to flush its close frame.
const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// A connection whose register handler accepted it, waiting for the upgrade.
///
/// It exists from the moment register accepts: whatever happens next (the
/// upgrade completes, shutdown refuses it, the client goes away, the HTTP
/// upgrade fails), its cleanup handler runs exactly once.
pub(crate) struct PendingSession {
    parts: Option<SessionParts>,
}

struct SessionParts {
    gateway: Gateway,
    service: Arc<Service>,
    connection: Arc<Connection>,
    outbound: OutboundReceiver,
    _tracked: TaskTrackerToken,
}

impl PendingSession {
    pub(crate) fn new(gateway: Gateway, service: Arc<Service>, reservation: Reservation) -> Self {
        let tracked = gateway.connections().token();
        Self {
            parts: Some(SessionParts {
                gateway,
                service,
                connection: reservation.connection,
                outbound: reservation.outbound,
                _tracked: tracked,
            }),
        }
    }

    /// Serves the upgraded socket until the connection ends.
    pub(crate) async fn run<S>(mut self, socket: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let parts = self.parts.take().expect("a pending session runs once");
        parts.serve(socket).await;
    }

    /// Ends a connection whose upgrade will not happen, for `cause`: its
    /// cleanup runs now (the client gets no close frame, having no socket).
    pub(crate) fn abandon(mut self, cause: CloseCause) {
        if let Some(parts) = self.parts.take() {
            parts.finish_unopened(cause.reason);
        }
    }
}

impl Drop for PendingSession {
    /// The upgrade never completed (the client went away, or the HTTP
    /// upgrade failed): cleanup still runs, once.
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            parts.finish_unopened(CloseReason::Error);
        }
    }
}

/// How a connection ended.
struct Ending {
    reason: CloseReason,
    /// The code of the client's close frame, if it sent one.
    client_code: Option<u16>,
    /// For endings the gateway decides: the close frame the client gets.
    sent: Option<CloseCause>,
}

impl Ending {
    fn by_gateway(cause: CloseCause) -> Self {
        Self {
            reason: cause.reason,
            client_code: None,
            sent: Some(cause),
        }
    }

    fn by_client(client_code: Option<u16>) -> Self {
        Self {
            reason: CloseReason::Client,
            client_code,
            sent: None,
        }
    }
}

impl SessionParts {
    async fn serve<S>(self, socket: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tracing::info!(service = %self.service.name, conn = %self.connection.id, source_ip = %self.connection.source_ip, "connection opened");
        self.service.metrics.connection_opened();
        let (sink, stream) = socket.split();
        let (stop_sender, stop_receiver) = oneshot::channel();
        let SessionParts {
            gateway,
            service,
            connection,
            outbound,
            _tracked: tracked,
        } = self;
        let writer = tokio::spawn(write_loop(sink, outbound, stop_receiver));
        let ending = read_loop(&gateway, &service, &connection, stream).await;
        let departed = gateway.router().detach(&connection);
        service.metrics.connection_closed();
        if ending.sent == Some(CloseCause::SLOW_CLIENT) {
            service.metrics.queue_overflow();
        }
        let stop = match ending.sent {
            Some(cause) => WriterStop::Close(cause),
            None => WriterStop::Finish,
        };
        let _ = stop_sender.send(stop);
        let abort = writer.abort_handle();
        if tokio::time::timeout(CLOSE_FLUSH_GRACE, writer)
            .await
            .is_err()
        {
            abort.abort();
        }
        if ending.sent == Some(CloseCause::FENCED) {
            // A surviving node owns this connection now and runs its
            // cleanup; running it here too would run it twice.
            tracing::info!(service = %service.name, conn = %connection.id, "connection dropped without cleanup: this node lost its cluster lease");
        } else {
            run_cleanup(&gateway, &service, &connection, &ending, departed).await;
        }
        gateway.router().forget(&connection);
        drop(tracked);
    }

    /// Ends a connection that never reached its socket: it leaves the
    /// router and its cleanup runs, on a task of its own (the caller may
    /// be a destructor).
    fn finish_unopened(self, reason: CloseReason) {
        tokio::spawn(async move {
            let departed = self.gateway.router().detach(&self.connection);
            let ending = Ending {
                reason,
                client_code: None,
                sent: None,
            };
            run_cleanup(
                &self.gateway,
                &self.service,
                &self.connection,
                &ending,
                departed,
            )
            .await;
            self.gateway.router().forget(&self.connection);
            drop(self._tracked);
        });
    }
}

async fn run_cleanup(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    ending: &Ending,
    departed_groups: Vec<Arc<str>>,
) {
    let request_id = new_request_id();
    let event = Event {
        connection_id: connection.id.clone(),
        request_id: request_id.clone(),
        json: protocol::closing_event(
            &connection.id,
            ending.reason,
            ending.client_code,
            connection.attributes().as_deref(),
        ),
        departed_groups: Some(departed_groups),
        connection: Some(Arc::downgrade(connection)),
    };
    // Boxed, like transfer's call: see `transfer`.
    let cleanup = match Box::pin(gateway.call(service, Role::Cleanup, event)).await {
        None => "none",
        Some(Ok(_)) => "ok",
        Some(Err(_)) => "failed",
    };
    let sent_code = ending.sent.map(|cause| cause.code);
    crate::metrics::global().closed(sent_code, ending.client_code, ending.reason.as_str());
    // The line of the connection's last call: its cleanup.
    tracing::info!(
        service = %service.name,
        role = %Role::Cleanup,
        request_id = %request_id,
        conn = %connection.id,
        reason = ending.reason.as_str(),
        client_code = ?ending.client_code,
        sent_code = ?sent_code,
        cleanup,
        "connection closed"
    );
}

/// Reads client frames until the connection ends, running transfer for each message.
async fn read_loop<S>(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    mut stream: SplitStream<WebSocketStream<S>>,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = service.config();
    let idle_timeout = config.idle_timeout;
    // One timer and one cancellation waiter for the connection's life, not
    // one per message: a message only moves `last_data`, and the timer, when
    // it fires early, is moved to the next real deadline.
    //
    // Two clocks run on it. Idleness counts client *data* only: a client
    // that just pings, or answers our pings, is alive but not using the
    // connection, and must not hold it forever. Liveness counts every frame:
    // a client silent for a whole ping interval is pinged, and one still
    // silent an interval later is taken for gone (a half-open socket).
    let started = Instant::now();
    let mut last_data = started;
    let mut liveness = config.ping_interval.map(|interval| Liveness {
        interval,
        next_check: started + interval,
        heard: false,
        pinged: false,
    });
    let wake_at = |last_data: Instant, liveness: &Option<Liveness>| {
        let idle_at = last_data + idle_timeout;
        liveness
            .as_ref()
            .map_or(idle_at, |liveness| idle_at.min(liveness.next_check))
    };
    let timer = tokio::time::sleep_until(wake_at(last_data, &liveness));
    tokio::pin!(timer);
    let closing = connection.closing().cancelled();
    tokio::pin!(closing);
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut closing => {
                return Ending::by_gateway(connection.close_cause().unwrap_or(CloseCause::SERVER));
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= last_data + idle_timeout {
                    return Ending::by_gateway(CloseCause::IDLE);
                }
                if let Some(liveness) = &mut liveness {
                    if now >= liveness.next_check && !liveness.check(connection, now) {
                        return Ending::by_gateway(CloseCause::UNRESPONSIVE);
                    }
                }
                timer.as_mut().reset(wake_at(last_data, &liveness));
                continue;
            }
            message = stream.next() => message,
        };
        if let Some(liveness) = &mut liveness {
            liveness.heard = true;
        }
        let payload = match message {
            None => return Ending::by_client(None),
            Some(Err(error)) => return protocol_error(service, connection, error),
            Some(Ok(Message::Close(frame))) => {
                return Ending::by_client(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(text))) => Payload::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Payload::Binary(bytes),
        };
        connection.touch();
        last_data = Instant::now();
        let result = transfer(gateway, service, connection, &payload).await;
        // A close asked for while the handler ran (by itself, a push that
        // overflowed the queue, or shutdown) names the ending better than
        // whatever the call did afterwards.
        if let Some(cause) = connection.close_cause() {
            return Ending::by_gateway(cause);
        }
        if let Err(error) = result {
            return Ending::by_gateway(match error {
                CallError::Busy(_) | CallError::NotReady(_) | CallError::GatewayMemory => {
                    CloseCause::BUSY
                }
                _ => CloseCause::HANDLER_FAILED,
            });
        }
    }
}

/// Maps a read error to the close code the client deserves.
fn protocol_error(service: &Service, connection: &Connection, error: tungstenite::Error) -> Ending {
    let cause = match &error {
        // The frame budget cut off a large frame that came too slowly.
        tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            CloseCause::SLOW_FRAME
        }
        tungstenite::Error::Utf8(_) => CloseCause::INVALID_UTF8,
        tungstenite::Error::Capacity(_) => CloseCause::TOO_BIG,
        // A client that drops the TCP connection without a close frame went away.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => return Ending::by_client(None),
        tungstenite::Error::Protocol(_) => CloseCause::PROTOCOL_ERROR,
        _ => return Ending::by_client(None),
    };
    tracing::info!(service = %service.name, conn = %connection.id, %error, code = cause.code, "closing connection after client error");
    Ending::by_gateway(cause)
}

/// Runs the transfer handler for one message; without one the data is dropped.
async fn transfer(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    payload: &Payload,
) -> Result<(), CallError> {
    if matches!(service.handler(Role::Transfer), Ok(None)) {
        if !service
            .warned_no_transfer
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(service = %service.name, "no transfer handler: client messages are dropped");
        }
        return Ok(());
    }
    let request_id = new_request_id();
    let event = Event {
        connection_id: connection.id.clone(),
        request_id: request_id.clone(),
        json: protocol::data_send_event(
            &connection.id,
            payload,
            connection.attributes().as_deref(),
        ),
        departed_groups: None,
        connection: Some(Arc::downgrade(connection)),
    };
    // A handler call's future (instantiation, the guest call, host calls)
    // is several KiB; boxed, it is allocated only while the call runs
    // instead of inside every connection's task, idle ones included.
    match Box::pin(gateway.call(service, Role::Transfer, event)).await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(error)) => Err(error),
    }
}
