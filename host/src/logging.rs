//! The gateway's log: where it goes (stderr), what it keeps (`RUST_LOG`, by
//! default `info` with wasmtime and cranelift at `warn`), and its format.
//!
//! Lines about a handler call carry `service`, `role`, `request_id` and
//! `conn` as fields, in either format. Guest text is escaped before it is
//! logged (see `wasm::capture`), so in text one record stays one line; in
//! JSON each record is one object on one line, the JSON encoder escaping
//! what remains.

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the record's fields at the top level.
    Json,
}

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,wasmtime=warn,cranelift=warn";

/// Bytes of formatted records the writer thread gathers into one write.
const WRITE_BATCH_BYTES: usize = 64 << 10;

/// Records queued for the writer thread before a thread logging waits for
/// it (none is dropped).
const QUEUED_RECORDS: usize = 128_000;

/// Installs the process's log subscriber, writing to stderr in `format`.
///
/// A record is formatted on the thread that logs it and queued for the
/// log's own thread, which writes whatever has queued in one `write` and
/// flushes as soon as the queue is empty: a busy gateway (two lines per
/// connection in a connect storm) makes one system call per batch, not
/// per line, and a quiet one still writes each line at once. When the
/// queue is full, logging waits: no record is dropped. Keep the returned
/// guard until the process ends; dropping it writes what is still queued.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_RECORDS)
        .thread_name("wasmgate-log")
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BATCH_BYTES,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    guard
}
