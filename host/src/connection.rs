//! One WebSocket connection from upgrade to cleanup.
//!
//! A reader loop reads client frames and runs the transfer handler for each
//! message in turn, so messages of one connection never overtake each other;
//! a writer task drains the connection's bounded outbound queue into the
//! socket. Whatever ends the connection, it leaves the router first (so no
//! push reaches a closing connection), then its cleanup handler runs once.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::gateway::{Gateway, CLOSE_FLUSH_GRACE};
use crate::protocol::{self, CloseReason, Payload};
use crate::router::{CloseCause, Connection, Outbound, Reservation};
use crate::runtime::{CallError, Role};
use crate::services::Service;

/// A connection whose register handler accepted it, waiting for the upgrade.
///
/// If the upgrade never completes (the client went away), dropping this runs
/// the cleanup handler, so cleanup still runs exactly once.
pub(crate) struct PendingSession {
    parts: Option<SessionParts>,
}

struct SessionParts {
    gateway: Gateway,
    service: Arc<Service>,
    connection: Arc<Connection>,
    outbound: mpsc::Receiver<Outbound>,
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
    pub(crate) async fn run(mut self, socket: WebSocket) {
        let parts = self.parts.take().expect("a pending session runs once");
        parts.serve(socket).await;
    }
}

impl Drop for PendingSession {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            tokio::spawn(async move {
                parts
                    .finish(Ending {
                        reason: CloseReason::Error,
                        client_code: None,
                        frame: None,
                    })
                    .await;
            });
        }
    }
}

/// How a connection ended.
struct Ending {
    reason: CloseReason,
    /// The code of the client's close frame, if it sent one.
    client_code: Option<u16>,
    /// The close frame to send, for endings the gateway decides.
    frame: Option<(CloseFrame, bool)>,
}

impl Ending {
    fn by_gateway(reason: CloseReason, code: u16, text: &'static str) -> Self {
        Self {
            reason,
            client_code: None,
            frame: Some((
                CloseFrame {
                    code,
                    reason: text.into(),
                },
                false,
            )),
        }
    }

    fn from_cause(cause: CloseCause) -> Self {
        let mut ending = Self::by_gateway(cause.reason, cause.code, cause.text);
        // A server close delivers what is already queued first; an overflow
        // or shutdown does not wait for a client that is not reading.
        if let Some((_, drain)) = &mut ending.frame {
            *drain = cause == CloseCause::SERVER;
        }
        ending
    }
}

/// Instructions from the reader loop to the writer task.
enum WriterStop {
    /// Send this frame (after draining the queue if asked) and stop.
    Close(CloseFrame, bool),
    /// Stop; the close handshake, if any, is already under way.
    Finish,
}

impl SessionParts {
    async fn serve(self, socket: WebSocket) {
        tracing::info!(service = %self.service.name, conn = %self.connection.id, source_ip = %self.connection.source_ip, "connection opened");
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
        let departed = gateway.router().remove(&connection);
        let stop = match &ending.frame {
            Some((frame, drain)) => WriterStop::Close(frame.clone(), *drain),
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
        run_cleanup(&gateway, &service, &connection, &ending, departed).await;
        drop(tracked);
    }

    /// Ends a connection that never reached its socket.
    async fn finish(self, ending: Ending) {
        let departed = self.gateway.router().remove(&self.connection);
        run_cleanup(
            &self.gateway,
            &self.service,
            &self.connection,
            &ending,
            departed,
        )
        .await;
    }
}

async fn run_cleanup(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    ending: &Ending,
    departed_groups: Vec<Arc<str>>,
) {
    let event = protocol::closing_event(&connection.id, ending.reason, ending.client_code);
    // Boxed, like transfer's call: see `transfer`.
    let cleanup = match Box::pin(gateway.call(
        service,
        Role::Cleanup,
        &connection.id,
        event,
        Some(departed_groups),
    ))
    .await
    {
        None => "none",
        Some(Ok(_)) => "ok",
        Some(Err(_)) => "failed",
    };
    let sent_code = ending.frame.as_ref().map(|(frame, _)| frame.code);
    tracing::info!(
        service = %service.name,
        conn = %connection.id,
        reason = ending.reason.as_str(),
        client_code = ?ending.client_code,
        sent_code = ?sent_code,
        cleanup,
        "connection closed"
    );
}

/// Reads client frames until the connection ends, running transfer for each message.
async fn read_loop(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    mut stream: SplitStream<WebSocket>,
) -> Ending {
    let idle_timeout = service.config().idle_timeout;
    // One timer and one cancellation waiter for the connection's life, not
    // one per message: a message only moves `last_active`, and the timer,
    // when it fires early, is pushed back to the real deadline.
    let mut last_active = Instant::now();
    let idle = tokio::time::sleep_until(last_active + idle_timeout);
    tokio::pin!(idle);
    let closing = connection.closing().cancelled();
    tokio::pin!(closing);
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut closing => {
                return Ending::from_cause(connection.close_cause().unwrap_or(CloseCause::SERVER));
            }
            _ = &mut idle => {
                let deadline = last_active + idle_timeout;
                if Instant::now() < deadline {
                    idle.as_mut().reset(deadline);
                    continue;
                }
                return Ending::by_gateway(CloseReason::Idle, 1000, "idle timeout");
            }
            message = stream.next() => message,
        };
        let payload = match message {
            None => return client_gone(),
            Some(Err(error)) => return protocol_error(service, connection, error),
            Some(Ok(Message::Close(frame))) => {
                return Ending {
                    reason: CloseReason::Client,
                    client_code: frame.map(|f| f.code),
                    frame: None,
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                connection.touch();
                last_active = Instant::now();
                continue;
            }
            Some(Ok(Message::Text(text))) => Payload::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Payload::Binary(bytes),
        };
        connection.touch();
        last_active = Instant::now();
        let result = transfer(gateway, service, connection, &payload).await;
        // A close asked for while the handler ran (by itself, a push that
        // overflowed the queue, or shutdown) names the ending better than
        // whatever the call did afterwards.
        if let Some(cause) = connection.close_cause() {
            return Ending::from_cause(cause);
        }
        if let Err(error) = result {
            let code = if matches!(error, CallError::Busy(_)) {
                1013
            } else {
                1011
            };
            let text = if code == 1013 {
                "service busy"
            } else {
                "handler failed"
            };
            return Ending::by_gateway(CloseReason::Error, code, text);
        }
    }
}

fn client_gone() -> Ending {
    Ending {
        reason: CloseReason::Client,
        client_code: None,
        frame: None,
    }
}

/// Maps a read error to the close code the client deserves.
fn protocol_error(service: &Service, connection: &Connection, error: axum::Error) -> Ending {
    let inner = error.into_inner();
    let Some(error) = inner.downcast_ref::<tungstenite::Error>() else {
        return client_gone();
    };
    let (code, text) = match error {
        tungstenite::Error::Utf8(_) => (1007, "invalid UTF-8 in text message"),
        tungstenite::Error::Capacity(_) => (1009, "message too big"),
        // A client that drops the TCP connection without a close frame went away.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => {
            return client_gone();
        }
        tungstenite::Error::Protocol(_) => (1002, "protocol error"),
        _ => return client_gone(),
    };
    tracing::info!(service = %service.name, conn = %connection.id, %error, code, "closing connection after client error");
    Ending::by_gateway(CloseReason::Error, code, text)
}

/// Runs the transfer handler for one message; without one the data is dropped.
async fn transfer(
    gateway: &Gateway,
    service: &Service,
    connection: &Arc<Connection>,
    payload: &Payload,
) -> Result<(), CallError> {
    if service.handler(Role::Transfer).is_none() {
        if !service
            .warned_no_transfer
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(service = %service.name, "no transfer handler: client messages are dropped");
        }
        return Ok(());
    }
    let event = protocol::data_send_event(&connection.id, payload);
    // A handler call's future (instantiation, the guest call, host calls)
    // is several KiB; boxed, it is allocated only while the call runs
    // instead of inside every connection's task, idle ones included.
    match Box::pin(gateway.call(service, Role::Transfer, &connection.id, event, None)).await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(error)) => Err(error),
    }
}

/// Writes queued messages to the socket until told to stop.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    mut stop: oneshot::Receiver<WriterStop>,
) {
    let instruction = loop {
        tokio::select! {
            biased;
            instruction = &mut stop => break instruction.unwrap_or(WriterStop::Finish),
            message = outbound.recv() => {
                let Some(message) = message else { break WriterStop::Finish };
                if sink.feed(message.into()).await.is_err() {
                    return;
                }
                // Write everything already queued before one flush.
                while let Ok(message) = outbound.try_recv() {
                    if sink.feed(message.into()).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        }
    };
    if let WriterStop::Close(frame, drain) = instruction {
        if drain {
            while let Ok(message) = outbound.try_recv() {
                if sink.feed(message.into()).await.is_err() {
                    return;
                }
            }
        }
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

impl From<Outbound> for Message {
    fn from(message: Outbound) -> Self {
        match message {
            Outbound::Text(text) => Message::Text(text),
            Outbound::Binary(bytes) => Message::Binary(bytes),
        }
    }
}
