//! The wire contract of `docs/protocol.md`: the events handlers receive, the
//! register answer, the reverse-push request, the HTTP trigger's
//! integration request and response and the timer event, and the tables of
//! `errNo` numbers and close codes.
//!
//! Field names here are the seed model's (`secConnectionID`, `errNo`, ...)
//! and appear nowhere else in the code base. This module depends on no other
//! part of the gateway.

mod close;
mod errno;
mod events;
mod push;
mod register;
mod triggers;

pub use close::{CloseCause, CloseReason};
pub use errno::{ok_body, ApiError, ErrNo};
pub use events::{
    closing_event, connecting_event, data_send_event, header_fields, query_fields,
    ConnectingRequest, Role,
};
pub use push::{max_request_bytes, Payload, PushRequest};
pub use register::{
    attributes_from_json, attributes_from_value, MalformedAnswer, RegisterAnswer,
    MAX_ATTRIBUTES_BYTES,
};
pub use triggers::{
    http_event, timer_event, HttpRequest, IntegrationResponse, MalformedResponse,
    MALFORMED_RESPONSE_BODY,
};

/// Standard Base64, as the contract requires for binary data.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every code of the tables above appears in the documents users read and
/// in the guest SDK, and those documents list no code the gateway lacks.
#[cfg(test)]
mod documented {
    use super::{CloseCause, ErrNo};

    const README: &str = include_str!("../../../README.md");
    const PROTOCOL: &str = include_str!("../../../docs/protocol.md");
    const GUEST_SDK: &str = include_str!("../../../guest-sdk/src/error.rs");

    /// The cells of every Markdown table row of `doc`, trimmed.
    fn rows(doc: &str) -> Vec<Vec<&str>> {
        doc.lines()
            .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
            .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
            .collect()
    }

    #[test]
    fn every_errno_is_in_the_readme_the_protocol_and_the_guest_sdk() {
        for (name, doc) in [("README.md", README), ("docs/protocol.md", PROTOCOL)] {
            let rows = rows(doc);
            for errno in ErrNo::ALL {
                let number = errno.number.to_string();
                let status = errno.status.as_u16().to_string();
                assert!(
                    rows.iter()
                        .any(|row| row[0] == number
                            && row.get(1).is_some_and(|c| c.contains(&status))),
                    "{name} has no row `| {number} | {status} | ...` for {errno:?}"
                );
            }
            // And no errNo row the gateway does not have.
            for row in &rows {
                let Ok(number) = row[0].parse::<i32>() else {
                    continue;
                };
                if (2000..3000).contains(&number) {
                    assert!(
                        ErrNo::ALL.iter().any(|errno| errno.number == number),
                        "{name} lists errNo {number}, which the gateway does not have"
                    );
                }
            }
        }
        for errno in ErrNo::ALL.iter().filter(|errno| errno.number != 0) {
            assert!(
                GUEST_SDK.contains(&format!(": i32 = {};", errno.number)),
                "guest-sdk/src/error.rs has no constant for errNo {}",
                errno.number
            );
        }
    }

    #[test]
    fn every_close_code_is_in_the_readme_the_protocol_and_the_guest_sdk() {
        for (name, doc) in [("README.md", README), ("docs/protocol.md", PROTOCOL)] {
            let rows = rows(doc);
            for cause in CloseCause::ALL {
                let code = cause.code.to_string();
                let reason = format!("`{}`", cause.reason.as_str());
                assert!(
                    rows.iter()
                        .any(|row| row[0] == code && row.iter().any(|cell| *cell == reason)),
                    "{name} has no close-code row for {code} with closeReason {reason}"
                );
            }
            for row in &rows {
                let Ok(code) = row[0].parse::<u16>() else {
                    continue;
                };
                if (1000..1016).contains(&code) {
                    assert!(
                        CloseCause::ALL.iter().any(|cause| cause.code == code),
                        "{name} lists close code {code}, which the gateway never sends"
                    );
                }
            }
        }
        for cause in CloseCause::ALL {
            assert!(
                GUEST_SDK.contains(&format!(": u16 = {};", cause.code)),
                "guest-sdk/src/error.rs has no close_code constant for {}",
                cause.code
            );
        }
    }
}
