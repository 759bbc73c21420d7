//! The writer task of a session: it drains the connection's outbound
//! queue into the socket, many messages to a flush, until the reader tells
//! it how the connection ends.

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::protocol::CloseCause;
use crate::state::{Outbound, OutboundReceiver};

/// Instructions from the reader loop to the writer task.
pub(super) enum WriterStop {
    /// Send this close frame (after draining the queue if the cause asks
    /// for it) and stop.
    Close(CloseCause),
    /// Stop; the close handshake, if any, is already under way.
    Finish,
}

/// Writes queued messages to the socket until told to stop.
pub(super) async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut outbound: OutboundReceiver,
    mut stop: oneshot::Receiver<WriterStop>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
    if let WriterStop::Close(cause) = instruction {
        if cause.drains_queue() {
            while let Ok(message) = outbound.try_recv() {
                if sink.feed(message.into()).await.is_err() {
                    return;
                }
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(cause.code),
            reason: cause.text.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

impl From<Outbound> for Message {
    fn from(message: Outbound) -> Self {
        match message {
            Outbound::Text(text) => Message::Text(text),
            Outbound::Binary(bytes) => Message::Binary(bytes),
            Outbound::Ping => Message::Ping(Default::default()),
        }
    }
}
