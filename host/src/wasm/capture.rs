//! Captured handler output: what a handler writes to stdout or stderr and what
//! it logs through the host, kept per call and bounded in bytes and in lines
//! so a chatty or hostile handler cannot grow the gateway's memory or flood
//! its log, and escaped so it cannot forge a log record of its own.
//!
//! Every text a guest chose that reaches the gateway's log goes through
//! [`escape_for_log`] (output lines) or [`guest_text`] (error strings, trap
//! messages, a register refusal's `errMsg`): one log record per line of
//! output, never a line break or terminal control sequence of the guest's.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of output kept per call and stream (stdout, stderr, `log` calls);
/// the rest is counted and dropped.
pub(crate) const OUTPUT_LIMIT: usize = 64 << 10;

/// Lines kept per call and stream; the rest are counted and dropped. An
/// empty line costs the log as much as a short one, so bytes alone are no
/// bound: 64 KiB of newlines would be 65,536 log records.
pub(crate) const LINE_LIMIT: usize = 256;

/// What a kept line counts against [`OUTPUT_LIMIT`] at least, for the same
/// reason.
pub(crate) const LINE_COST: usize = 64;

/// Bytes of a handler's error string (or trap message) kept for the log.
pub(crate) const ERROR_TEXT_LIMIT: usize = 1024;

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

/// The share of one stream's output a call may still log: lines and bytes,
/// each line costing at least [`LINE_COST`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineBudget {
    lines: usize,
    bytes: usize,
    dropped: usize,
}

impl Default for LineBudget {
    fn default() -> Self {
        Self {
            lines: LINE_LIMIT,
            bytes: OUTPUT_LIMIT,
            dropped: 0,
        }
    }
}

impl LineBudget {
    /// Whether a line of `len` bytes may be kept; a refused line is counted.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        let cost = len.max(LINE_COST);
        if self.lines == 0 || cost > self.bytes {
            self.dropped += 1;
            return false;
        }
        self.lines -= 1;
        self.bytes -= cost;
        true
    }

    /// Lines refused so far.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped
    }
}

/// `text` with every control character escaped, so that one line of guest
/// output stays one log record and cannot move the cursor of a terminal
/// showing the log: `\n`, `\r` and `\t` as such; other C0 and C1 controls,
/// DEL and the Unicode line and paragraph separators as `\u{..}`. Other
/// text, backslashes included, is unchanged, so the escaping is for reading,
/// not reversible.
pub(crate) fn escape_for_log(text: &str) -> Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        c.is_control() || c == '\u{2028}' || c == '\u{2029}'
    }
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) => {
                use std::fmt::Write as _;
                let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// A guest's error string (or a trap message naming guest functions) as the
/// log shows it: at most [`ERROR_TEXT_LIMIT`] bytes of it, cut on a
/// character boundary and marked, then escaped by [`escape_for_log`].
pub(crate) fn guest_text(text: &str) -> String {
    if text.len() <= ERROR_TEXT_LIMIT {
        return escape_for_log(text).into_owned();
    }
    let cut = text.floor_char_boundary(ERROR_TEXT_LIMIT);
    format!(
        "{}... [{} more bytes]",
        escape_for_log(&text[..cut]),
        text.len() - cut
    )
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

    /// Splits what was written into escaped lines, within a [`LineBudget`],
    /// and ends with one note of what was dropped, if anything was.
    pub(crate) fn take_lines(&self, source: OutputSource, into: &mut Vec<OutputLine>) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut buffer.bytes);
        let dropped_bytes = std::mem::take(&mut buffer.dropped);
        drop(buffer);
        let text = String::from_utf8_lossy(&bytes);
        let mut budget = LineBudget::default();
        for line in text.lines() {
            let line = escape_for_log(line);
            if budget.admit(line.len()) {
                into.push(OutputLine {
                    source,
                    text: line.into_owned(),
                });
            }
        }
        let note = match (budget.dropped(), dropped_bytes) {
            (0, 0) => return,
            (0, bytes) => format!("[{bytes} more bytes of output dropped]"),
            (lines, 0) => format!("[{lines} more lines of output dropped]"),
            (lines, bytes) => {
                format!("[{lines} more lines and {bytes} more bytes of output dropped]")
            }
        };
        into.push(OutputLine { source, text: note });
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
        // The long line no longer fits the byte budget: dropped and counted.
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2].text,
            "[1 more lines and 8 more bytes of output dropped]"
        );
    }

    #[test]
    fn newlines_alone_make_at_most_so_many_lines() {
        let capture = Capture::default();
        capture.append(&vec![b'\n'; OUTPUT_LIMIT]);
        let mut lines = Vec::new();
        capture.take_lines(OutputSource::Stdout, &mut lines);
        assert_eq!(lines.len(), LINE_LIMIT + 1);
        assert!(lines[..LINE_LIMIT].iter().all(|line| line.text.is_empty()));
        assert_eq!(
            lines[LINE_LIMIT].text,
            format!(
                "[{} more lines of output dropped]",
                OUTPUT_LIMIT - LINE_LIMIT
            )
        );
    }

    #[test]
    fn a_line_costs_at_least_line_cost_bytes() {
        let mut budget = LineBudget {
            lines: usize::MAX,
            ..LineBudget::default()
        };
        let kept = (0..OUTPUT_LIMIT).take_while(|_| budget.admit(0)).count();
        assert_eq!(kept, OUTPUT_LIMIT / LINE_COST);
        assert!(!budget.admit(0));
        assert_eq!(budget.dropped(), 2);
    }

    #[test]
    fn printed_lines_are_escaped() {
        let capture = Capture::default();
        capture.append(b"a\rservice=other\x1b[2J\n");
        let mut lines = Vec::new();
        capture.take_lines(OutputSource::Stderr, &mut lines);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "a\\rservice=other\\u{1b}[2J");
    }

    #[test]
    fn the_escaper_leaves_no_line_break_or_control_character() {
        assert!(matches!(
            escape_for_log("plain text, ü 世界"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_for_log("a\nb\r\tc\u{1b}[31m\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\0"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7f}\\u{85}\\u{9b}\\u{2028}\\u{2029}\\u{0}"
        );
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let escaped = escape_for_log(c.encode_utf8(&mut [0; 4])).into_owned();
            assert!(
                !escaped
                    .chars()
                    .any(|e| e.is_control() || e == '\u{2028}' || e == '\u{2029}'),
                "{c:?} escaped as {escaped:?}"
            );
        }
    }

    #[test]
    fn guest_text_is_cut_on_a_char_boundary_and_marked() {
        assert_eq!(guest_text("short\nline"), "short\\nline");
        let long = "é".repeat(ERROR_TEXT_LIMIT);
        let shown = guest_text(&long);
        assert!(
            shown.starts_with(&"é".repeat(ERROR_TEXT_LIMIT / 2)),
            "{shown}"
        );
        assert!(
            shown.ends_with(&format!("... [{} more bytes]", ERROR_TEXT_LIMIT)),
            "{shown}"
        );
        assert!(shown.len() < ERROR_TEXT_LIMIT + 32);
    }
}
