//! Why a connection ends: the `closeReason` cleanup sees and, for endings the
//! gateway decides, the WebSocket close code and text the client gets. Every
//! ending is one named [`CloseCause`]; no code is written anywhere else.

/// Why a connection ended, as reported in `closeReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed or went away.
    Client,
    /// A reverse push or host call closed it.
    Server,
    /// The idle timeout fired.
    Idle,
    /// A transfer failed, the protocol was broken or a limit was exceeded.
    Error,
    /// The gateway or the service is shutting down.
    Shutdown,
    /// The connection's node died or lost its cluster lease; a surviving
    /// node runs the cleanup.
    NodeLost,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [Self; 6] = [
        Self::Client,
        Self::Server,
        Self::Idle,
        Self::Error,
        Self::Shutdown,
        Self::NodeLost,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Server => "server",
            CloseReason::Idle => "idle",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::NodeLost => "node_lost",
        }
    }
}

/// An ending the gateway decides: the reason cleanup sees, and the close
/// frame the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCause {
    /// Reported to cleanup as `closeReason`.
    pub reason: CloseReason,
    /// Sent to the client in the close frame.
    pub code: u16,
    /// Sent to the client as the close reason text.
    pub text: &'static str,
}

const fn cause(reason: CloseReason, code: u16, text: &'static str) -> CloseCause {
    CloseCause { reason, code, text }
}

impl CloseCause {
    /// Closed by a reverse push `closing` or the `close` host call.
    pub const SERVER: Self = cause(CloseReason::Server, 1000, "closed by the service");
    /// No client message for `idle_timeout_s`.
    pub const IDLE: Self = cause(CloseReason::Idle, 1000, "idle timeout");
    /// The gateway is shutting down.
    pub const SHUTDOWN: Self = cause(CloseReason::Shutdown, 1001, "gateway shutting down");
    /// The service's folder was removed.
    pub const SERVICE_REMOVED: Self = cause(CloseReason::Shutdown, 1001, "service removed");
    /// The client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: Self = cause(CloseReason::Error, 1002, "protocol error");
    /// A text message that is not UTF-8.
    pub const INVALID_UTF8: Self = cause(CloseReason::Error, 1007, "invalid UTF-8 in text message");
    /// The client did not read its messages fast enough: its outbound
    /// queue overflowed.
    pub const SLOW_CLIENT: Self = cause(CloseReason::Error, 1008, "outbound queue overflow");
    /// A large frame whose payload came slower than the front door allows
    /// (it held a share of the gateway's frame budget meanwhile).
    pub const SLOW_FRAME: Self = cause(CloseReason::Error, 1008, "frame payload too slow");
    /// A message larger than `max_message_bytes`.
    pub const TOO_BIG: Self = cause(CloseReason::Error, 1009, "message too big");
    /// The transfer handler failed (trap, time-out, error result).
    pub const HANDLER_FAILED: Self = cause(CloseReason::Error, 1011, "handler failed");
    /// The client answered none of the gateway's pings for a whole ping
    /// interval: it is taken for gone (a half-open socket).
    pub const UNRESPONSIVE: Self = cause(CloseReason::Client, 1001, "no answer to ping");
    /// The service stayed at its concurrency cap for longer than its
    /// time-out, or its transfer handler has not loaded yet: try again later.
    pub const BUSY: Self = cause(CloseReason::Error, 1013, "service busy");

    /// This node lost its cluster lease (it paused or was cut off from
    /// Redis for longer than the lease): a surviving node owns its
    /// connections now and runs their cleanup, so this node drops them
    /// without running it.
    pub const FENCED: Self = cause(CloseReason::NodeLost, 1012, "gateway node lost its lease");

    /// Every cause.
    pub const ALL: [Self; 13] = [
        Self::SERVER,
        Self::IDLE,
        Self::SHUTDOWN,
        Self::SERVICE_REMOVED,
        Self::PROTOCOL_ERROR,
        Self::INVALID_UTF8,
        Self::SLOW_CLIENT,
        Self::TOO_BIG,
        Self::HANDLER_FAILED,
        Self::BUSY,
        Self::UNRESPONSIVE,
        Self::SLOW_FRAME,
        Self::FENCED,
    ];

    /// Whether the messages already queued for the client are sent before
    /// the close frame: a service's own close delivers what it pushed first;
    /// an overflow or shutdown does not wait for a client that is not
    /// reading.
    pub fn drains_queue(self) -> bool {
        self == Self::SERVER
    }
}
