//! The WebSocket opening handshake of RFC 6455 §4.2, server side: checking
//! the upgrade request's headers and building the 101 answer. The gateway
//! does it itself, rather than through axum's extractor, so that it can put
//! its own layer ([`FrameBudget`](super::frame_budget::FrameBudget))
//! between the upgraded socket and the frame codec.

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tungstenite::handshake::derive_accept_key;

use crate::protocol::{ApiError, ErrNo};

/// A valid upgrade request's key, to answer with.
#[derive(Debug)]
pub(crate) struct Handshake {
    key: HeaderValue,
}

/// Whether a comma-separated header holds `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
            .unwrap_or(false)
    })
}

impl Handshake {
    /// Checks that `headers` ask for a WebSocket upgrade the gateway speaks.
    pub fn check(headers: &HeaderMap) -> Result<Self, ApiError> {
        let refuse =
            |status: StatusCode, detail: &str| ErrNo::BAD_UPGRADE.with(detail).with_status(status);
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "the Connection header does not include `upgrade`",
            ));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "the Upgrade header is not `websocket`",
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Version must be 13",
            ));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing"))?;
        Ok(Self { key })
    }

    /// The 101 answer, with the sub-protocol register chose, if any.
    pub fn accept(&self, protocol: Option<&str>) -> Response {
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = derive_accept_key(self.key.as_bytes());
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        headers
    }

    #[test]
    fn answers_with_the_rfc_accept_key() {
        let response = Handshake::check(&upgrade_headers())
            .unwrap()
            .accept(Some("chat"));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455 §1.3's example.
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], "chat");
    }

    #[test]
    fn names_what_is_wrong_with_a_request() {
        for (name, value, status) in [
            (header::CONNECTION, "keep-alive", 426),
            (header::UPGRADE, "h2c", 426),
            (header::SEC_WEBSOCKET_VERSION, "8", 400),
        ] {
            let mut headers = upgrade_headers();
            headers.insert(name.clone(), value.parse().unwrap());
            let error = Handshake::check(&headers).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (status, 2305),
                "{name}"
            );
        }
        let mut headers = upgrade_headers();
        headers.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(Handshake::check(&headers).unwrap_err().status, 400);
    }
}
