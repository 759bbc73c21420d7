//! Native baseline: an axum WebSocket echo server with the same buffer
//! settings as wasmgate's connections and no wasm, the physical limit the
//! gateway is compared with; for the HTTP trigger, `ANY /http/web/html`
//! answering the same page, status and content type as the `web` test
//! handler's `/html`; and, for the fan-out, the part of the `probe` test
//! handler and of the reverse push that `fanout_bench` drives:
//!
//! - `GET /ws/<service>?join=<group>` makes the connection a member of the
//!   group (it keeps echoing what it is sent);
//! - a text message `broadcast:<group>:<text>` sends `<text>` to every
//!   member and answers `delivered:<n>`;
//! - `POST /push/<service>` with a `data broadcast` body does the same
//!   broadcast from HTTP.
//!
//! A member is written to by its own task from a bounded queue (64
//! messages, as the fan-out service's `outbound_queue`), as a gateway
//! connection is; a broadcast puts one shared copy of the message in each
//! member's queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// Command line of the native echo server.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

/// Same as wasmgate's `READ_BUFFER_BYTES` / `WRITE_BUFFER_BYTES` and the
/// default `max_message_bytes`.
const READ_BUFFER_BYTES: usize = 4 * 1024;
const WRITE_BUFFER_BYTES: usize = 0;
const MAX_MESSAGE_BYTES: usize = 262_144;

/// Messages a member's queue holds before a broadcast skips it.
const MEMBER_QUEUE: usize = 64;

/// A member of a group: its id and its queue.
type Member = (u64, mpsc::Sender<Message>);

/// The groups: each member's id and queue.
#[derive(Default)]
struct Groups {
    next_id: AtomicU64,
    members: Mutex<HashMap<String, Vec<Member>>>,
}

impl Groups {
    /// Queues `text` for every member of `group`; returns how many took it.
    fn broadcast(&self, group: &str, text: &str) -> usize {
        let message = Message::Text(Utf8Bytes::from(text));
        let members = self.members.lock().expect("groups lock");
        members.get(group).map_or(0, |members| {
            members
                .iter()
                .filter(|(_, queue)| queue.try_send(message.clone()).is_ok())
                .count()
        })
    }

    fn join(&self, group: &str, queue: mpsc::Sender<Message>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut members = self.members.lock().expect("groups lock");
        members
            .entry(group.to_owned())
            .or_default()
            .push((id, queue));
        id
    }

    fn leave(&self, group: &str, id: u64) {
        let mut members = self.members.lock().expect("groups lock");
        if let Some(list) = members.get_mut(group) {
            list.retain(|(member, _)| *member != id);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new()
        .route("/ws/{service}", get(upgrade))
        .route("/push/{service}", post(push))
        .route("/http/web/html", axum::routing::any(html))
        .with_state(Arc::new(Groups::default()));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("native-echo listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// What the `web` test handler answers to `/html`.
async fn html() -> axum::response::Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html")],
        "<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>",
    )
        .into_response()
}

/// The reverse push's `data broadcast` (the only action served here).
async fn push(State(groups): State<Arc<Groups>>, body: String) -> axum::response::Response {
    let request: serde_json::Value = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let push = &request["websocket"];
    match (
        push["action"].as_str(),
        push["group"].as_str(),
        push["data"].as_str(),
    ) {
        (Some("data broadcast"), Some(group), Some(data)) => {
            let delivered = groups.broadcast(group, data);
            format!(r#"{{"errNo":0,"errMsg":"ok","delivered":{delivered}}}"#).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "only data broadcast is served").into_response(),
    }
}

async fn upgrade(
    ws: WebSocketUpgrade,
    State(groups): State<Arc<Groups>>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let join = query.get("join").cloned();
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 2)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            match join {
                Some(group) => member(socket, &groups, &group).await,
                None => echo(socket, &groups).await,
            }
        })
}

/// Echoes every message, except `broadcast:<group>:<text>`, which is
/// broadcast and answered with `delivered:<n>`.
async fn echo(socket: WebSocket, groups: &Groups) {
    let (mut tx, mut rx) = socket.split();
    while let Some(Ok(message)) = rx.next().await {
        let reply = match message {
            Message::Text(ref text) => match broadcast_request(text) {
                Some((group, text)) => {
                    let delivered = groups.broadcast(group, text);
                    Message::Text(format!("delivered:{delivered}").into())
                }
                None => message,
            },
            Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if tx.send(reply).await.is_err() {
            break;
        }
    }
}

/// A member of `group`: written to from its queue by its own task, until
/// the client goes away; what it sends is echoed through the same queue.
async fn member(socket: WebSocket, groups: &Groups, group: &str) {
    let (mut tx, mut rx) = socket.split();
    let (queue, mut outbound) = mpsc::channel(MEMBER_QUEUE);
    let id = groups.join(group, queue.clone());
    let writer = tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = rx.next().await {
        let echo = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if queue.send(echo).await.is_err() {
            break;
        }
    }
    groups.leave(group, id);
    writer.abort();
}

/// `(group, text)` of a `broadcast:<group>:<text>` message.
fn broadcast_request(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix("broadcast:")?.split_once(':')
}
