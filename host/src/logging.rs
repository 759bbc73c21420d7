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

/// Installs the process's log subscriber, writing to stderr in `format`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
}
