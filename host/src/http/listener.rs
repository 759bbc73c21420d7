//! One listener: its accept loop and its HTTP/1 connections.
//!
//! The loop admits each socket under the listener's caps ([`Admission`])
//! before anything is read from it; a refused socket gets a short 503 with
//! an errNo when that is cheap, and is simply closed when refusals pile up.
//! An accept error that concerns one connection is skipped at once; one
//! that means the process is short of something (file descriptors, memory)
//! backs off for a few milliseconds, so no kind of error stalls the loop for
//! everyone.
//!
//! On a TLS listener the handshake comes first, after admission: the
//! socket's first byte (its ClientHello) within the header timeout, like
//! any idle socket, then the rest of the handshake within another.
//!
//! Each admitted socket is served by hyper with a header timeout (which also
//! bounds an idle keep-alive connection) and a limit on the request head;
//! axum's router is the service. A WebSocket upgrade takes the socket, with
//! its admission ticket, out of hyper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::admission::{Admission, Admitted};
use crate::protocol::ApiError;

/// Refusals being written at once; beyond it a refused socket is closed
/// without an answer. Counted in the file-descriptor reserve.
pub(crate) const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refusal may take to write before its socket is closed.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after an accept error that means the process is short of file
/// descriptors or memory: long enough not to spin, short enough that
/// clients queued behind it are served as soon as something frees.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How one listener serves its connections.
#[derive(Clone)]
pub(crate) struct ListenerSettings {
    /// `public` or `control`, for log lines.
    pub name: &'static str,
    /// Time to send a request head, counted from when hyper waits for one.
    pub header_timeout: Duration,
    /// Largest request head.
    pub max_head_bytes: usize,
    /// TLS, on the public listener when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts and serves connections until `shutdown` is cancelled, then
/// stops accepting, lets the HTTP exchanges in flight finish, and returns
/// once every connection it served has ended (WebSocket sessions excepted:
/// they belong to the gateway's own shutdown).
pub(crate) async fn serve_listener(
    listener: TcpListener,
    app: axum::Router,
    admission: Arc<Admission>,
    settings: ListenerSettings,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if !is_resource_shortage(&error) {
                    continue;
                }
                if last_error_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(listener = settings.name, %error, "accept failed; retrying shortly");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match admission.admit(peer.ip()) {
            Ok(ticket) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    Admitted::new(stream, ticket),
                    peer,
                    app.clone(),
                    settings.clone(),
                    shutdown.clone(),
                ));
            }
            Err(error) => refuse(stream, error, &refusals),
        }
    }
    connections.close();
    connections.wait().await;
}

/// Whether an accept error means the process is short of a resource (and
/// the next accept would fail the same way), rather than that one
/// connection went wrong before it was accepted.
fn is_resource_shortage(error: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Answers a socket the caps refuse with the error's status and body, then
/// closes it; when too many refusals are being written already, closes it
/// at once.
fn refuse(mut stream: TcpStream, error: ApiError, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let body = error.body().to_string();
        let answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            error.status.as_u16(),
            error.status.canonical_reason().unwrap_or(""),
            body.len(),
        );
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what the client sends meanwhile (its request), so that
            // closing with unread bytes does not reset the connection
            // before the client has read the answer.
            let mut sink = [0u8; 1024];
            let mut drained = 0;
            while drained < 16 << 10 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(permit);
    });
}

async fn serve_connection(
    stream: Admitted<TcpStream>,
    peer: SocketAddr,
    app: axum::Router,
    settings: ListenerSettings,
    shutdown: CancellationToken,
) {
    // A socket costs its HTTP buffers only once it has something to say:
    // until its first byte, within the header timeout, it is just a socket
    // and a small task. (Then hyper's own header timeout applies to the
    // rest of the head.) `peek` waits for data for real, where `readable`
    // may wake at once.
    let mut first = [0u8; 1];
    let first_byte = tokio::select! {
        peeked = tokio::time::timeout(settings.header_timeout, stream.stream().peek(&mut first)) => peeked,
        _ = shutdown.cancelled() => return,
    };
    if !matches!(first_byte, Ok(Ok(1..))) {
        return;
    }
    // Boxed: the HTTP connection's state is large, and a task that is
    // still waiting for its first byte should not carry room for it.
    match settings.tls.clone() {
        None => Box::pin(serve_http(stream, peer, app, settings, shutdown)).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                done = tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)) => done,
                _ = shutdown.cancelled() => return,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    Box::pin(serve_http(stream, peer, app, settings, shutdown)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(listener = settings.name, peer = %peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(listener = settings.name, peer = %peer, "TLS handshake timed out");
                }
            }
        }
    }
}

/// Serves HTTP on an admitted socket that has begun to send (and, on a
/// TLS listener, finished its handshake).
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    settings: ListenerSettings,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_head_bytes.max(8192))
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(listener = settings.name, peer = %peer, %error, "connection ended with an error");
    }
}
