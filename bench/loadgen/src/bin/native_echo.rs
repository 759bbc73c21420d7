//! Native baseline: an axum WebSocket echo server with the same buffer
//! settings as wasmgate's connections and no wasm, the physical limit the
//! gateway is compared with; and, for the HTTP trigger, `ANY /http/web/html`
//! answering the same page, status and content type as the `web` test
//! handler's `/html`.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new()
        .route("/ws/{service}", get(upgrade))
        .route("/http/web/html", axum::routing::any(html));
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

async fn upgrade(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 2)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(echo)
}

async fn echo(socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    while let Some(Ok(message)) = rx.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if tx.send(reply).await.is_err() {
            break;
        }
    }
}
