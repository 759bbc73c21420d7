//! Pieces the benchmark examples share.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client connection.
pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `text` and returns the next text reply (pings skipped, 5 s at most).
pub async fn ask(client: &mut Client, text: &str) -> anyhow::Result<String> {
    client.send(Message::text(text)).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await? {
            Some(Ok(Message::Text(reply))) => return Ok(reply.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => anyhow::bail!("connection ended: {other:?}"),
        }
    }
}
