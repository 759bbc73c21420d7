//! What the gateway tells a handler about a call besides the event: which
//! service and role it runs as, the request and connection ids, the deadline.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a handler is called for: a moment of a connection's life, or one of
/// the model's other two triggers.
///
/// ```
/// use wasmgate_guest::Role;
///
/// assert_eq!(Role::Transfer.as_str(), "transfer");
/// assert_eq!(Role::Cleanup.to_string(), "cleanup");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A client asks to connect; the answer decides whether it may.
    Register,
    /// A client sent a message.
    Transfer,
    /// A connection ended; runs exactly once per registered connection.
    Cleanup,
    /// An HTTP request to `/http/<service>/...`.
    Http,
    /// A timer of the service fired.
    Timer,
}

impl Role {
    /// The role's name as the gateway's configuration and logs spell it.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Role::Register.as_str(), "register");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Register => "register",
            Role::Transfer => "transfer",
            Role::Cleanup => "cleanup",
            Role::Http => "http",
            Role::Timer => "timer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway tells a handler about the current call.
///
/// The fields are public so that tests can build a context by hand:
///
/// ```
/// use wasmgate_guest::{Context, Role};
///
/// let ctx = Context {
///     service: "chat".into(),
///     role: Role::Transfer,
///     request_id: "req-1".into(),
///     connection_id: "q83vEjRWeJq83vEjRWeJqw==".into(),
///     deadline_ms: 0,
/// };
/// assert_eq!(ctx.remaining(), std::time::Duration::ZERO);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The service (plugin folder name) this handler belongs to.
    pub service: String,
    /// The role the handler is called in.
    pub role: Role,
    /// A unique id for this call; the gateway tags its log lines with it.
    pub request_id: String,
    /// The connection the event is about (`secConnectionID`); empty for
    /// [`Role::Http`] and [`Role::Timer`].
    pub connection_id: String,
    /// When the gateway stops the call, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
}

impl Context {
    /// The moment the gateway stops the call.
    ///
    /// ```
    /// # use wasmgate_guest::{Context, Role};
    /// # let ctx = Context { service: "s".into(), role: Role::Register, request_id: "r".into(),
    /// #     connection_id: "c".into(), deadline_ms: 1_000 };
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// assert_eq!(ctx.deadline(), UNIX_EPOCH + Duration::from_secs(1));
    /// ```
    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.deadline_ms)
    }

    /// The time left before the deadline, zero once it has passed.
    ///
    /// Useful to bound work that can be cut short, such as a retry loop.
    ///
    /// ```
    /// # use wasmgate_guest::{Context, Role};
    /// # let ctx = Context { service: "s".into(), role: Role::Register, request_id: "r".into(),
    /// #     connection_id: "c".into(), deadline_ms: u64::MAX };
    /// if ctx.remaining() > std::time::Duration::from_millis(10) {
    ///     // enough time for one more attempt
    /// }
    /// ```
    pub fn remaining(&self) -> Duration {
        self.deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_in_the_past_leaves_no_time() {
        let ctx = Context {
            service: "chat".into(),
            role: Role::Cleanup,
            request_id: "r".into(),
            connection_id: "c".into(),
            deadline_ms: 1,
        };
        assert_eq!(ctx.remaining(), Duration::ZERO);
        assert_eq!(ctx.deadline(), UNIX_EPOCH + Duration::from_millis(1));
    }
}
