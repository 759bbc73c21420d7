//! Captured handler output: what a handler writes to stdout or stderr and what
//! it logs through the host, kept per call and bounded in size so a chatty or
//! hostile handler cannot grow the gateway's memory.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of output kept per call and stream; the rest is counted and dropped.
pub(crate) const OUTPUT_LIMIT: usize = 64 << 10;

/// Where a line of handler output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSource {
    /// The handler's standard output.
    Stdout,
    /// The handler's standard error.
    Stderr,
    /// The `log` host call, at this level.
    Log(LogLevel),
}

/// Severity of a `log` host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// A recovered problem.
    Warn,
    /// A failure.
    Error,
}

/// One line of handler output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The stream or log level.
    pub source: OutputSource,
    /// The text, without its line break.
    pub text: String,
}

/// A bounded byte buffer shared between the WASI stream and the host.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    inner: Arc<Mutex<CaptureBuffer>>,
}

#[derive(Debug, Default)]
struct CaptureBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn append(&self, bytes: &[u8]) {
        // A std mutex: held for a memcpy only, never across an await.
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_LIMIT.saturating_sub(buffer.bytes.len());
        let kept = room.min(bytes.len());
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
    }

    /// Splits what was written into lines, noting any bytes that were dropped.
    pub(crate) fn take_lines(&self, source: OutputSource, into: &mut Vec<OutputLine>) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut buffer.bytes);
        let text = String::from_utf8_lossy(&bytes);
        into.extend(text.lines().map(|line| OutputLine {
            source,
            text: line.to_owned(),
        }));
        if buffer.dropped > 0 {
            into.push(OutputLine {
                source,
                text: format!("[{} more bytes of output dropped]", buffer.dropped),
            });
            buffer.dropped = 0;
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: overflow is dropped, never a trap, so logging can
        // not make a handler fail.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_counts_overflow() {
        let capture = Capture::default();
        capture.append(b"one\ntwo\n");
        capture.append(&vec![b'x'; OUTPUT_LIMIT]);
        let mut lines = Vec::new();
        capture.take_lines(OutputSource::Stdout, &mut lines);
        assert_eq!(lines[0].text, "one");
        assert_eq!(lines[1].text, "two");
        assert_eq!(
            lines.last().unwrap().text,
            "[8 more bytes of output dropped]"
        );
    }
}
