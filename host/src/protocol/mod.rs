//! The wire contract of `docs/protocol.md`: the events handlers receive, the
//! register answer, the reverse-push request, and the tables of `errNo`
//! numbers and close codes.
//!
//! Field names here are the seed model's (`secConnectionID`, `errNo`, ...)
//! and appear nowhere else in the code base. This module depends on no other
//! part of the gateway.

mod close;
mod errno;
mod events;
mod push;
mod register;

pub use close::{CloseCause, CloseReason};
pub use errno::{ok_body, ApiError, ErrNo};
pub use events::{closing_event, connecting_event, data_send_event, ConnectingRequest, Role};
pub use push::{Payload, PushRequest};
pub use register::{MalformedAnswer, RegisterAnswer};

/// Standard Base64, as the contract requires for binary data.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
