//! Whether a client still answers (see the session's read loop): a client
//! quiet for a ping interval is pinged, and one still quiet an interval
//! later is taken for gone.

use std::time::Duration;

use tokio::time::Instant;

use crate::state::Connection;

/// Whether a client still answers: see `read_loop`.
pub(super) struct Liveness {
    pub interval: Duration,
    /// When to look next.
    pub next_check: Instant,
    /// Whether the client sent any frame since the last check.
    pub heard: bool,
    /// Whether the last check sent a ping.
    pub pinged: bool,
}

impl Liveness {
    /// The check at `now`: a client heard from is fine; a quiet one is
    /// pinged; one that stayed quiet since its ping is gone (`false`).
    pub fn check(&mut self, connection: &Connection, now: Instant) -> bool {
        let alive = self.heard || !self.pinged;
        self.pinged = !self.heard;
        if self.pinged && alive {
            connection.ping();
        }
        self.heard = false;
        self.next_check = now + self.interval;
        alive
    }
}
