//! `ANY /http/<service>/<path…>`: the HTTP API trigger. The request becomes
//! the model's integration request for the service's `http` role (its
//! `http.wasm`, else `handler.wasm`), and the handler's integration
//! response becomes the HTTP answer.
//!
//! The call is an ordinary handler call: the service's concurrency share,
//! `timeout_ms`, memory limit and sandbox, and its host calls reach the
//! service's WebSocket connections through the same routing function as a
//! reverse push (the REST-to-socket bridge). The body is refused unread
//! above `max_http_body_bytes` when its length is declared, and cut off
//! there when it is not; it must arrive within the header timeout, or at
//! 16 KiB/s for a large one. A body over 16 KiB is read only once the
//! gateway-wide budget of declared bytes (shared with large WebSocket
//! frames, `frame_budget_bytes`) has room for it, and holds its share until
//! the call ends: a thousand clients posting 6 MB each cannot make the
//! gateway hold 6 GB.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Extension;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::find_service;
use super::frame_budget::{Budget, SMALL_FRAME};
use crate::config::match_route;
use crate::dispatch::{new_request_id, Event, Gateway};
use crate::plugins::Service;
use crate::protocol::{
    http_event, ApiError, ErrNo, HttpRequest, IntegrationResponse, Role, MALFORMED_RESPONSE_BODY,
};
use crate::wasm::capture::guest_text;
use crate::wasm::CallError;

/// The slowest a large body may arrive: as for a WebSocket frame.
const MIN_BODY_BYTES_PER_SECOND: u64 = 16 << 10;

/// The trigger's routes, with the gateway-wide budget of declared bytes.
pub(super) fn routes(budget: Budget) -> axum::Router<Gateway> {
    axum::Router::new()
        .route("/http/{service}", any(trigger))
        .route("/http/{service}/{*path}", any(trigger))
        .layer(Extension(budget))
}

async fn trigger(
    State(gateway): State<Gateway>,
    Extension(budget): Extension<Budget>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match serve(gateway, &budget, peer, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn serve(
    gateway: Gateway,
    budget: &Budget,
    peer: SocketAddr,
    request: Request,
) -> Result<Response, ApiError> {
    if gateway.is_shutting_down() {
        return Err(ErrNo::SHUTTING_DOWN.error());
    }
    let (parts, body) = request.into_parts();
    // `/http/<service>` then the path the handler sees, as sent.
    let below = parts.uri.path().strip_prefix("/http/").unwrap_or_default();
    let (name, path) = match below.find('/') {
        Some(slash) => below.split_at(slash),
        None => (below, "/"),
    };
    let service = find_service(&gateway, name)?;
    // Before the body is read: a service that cannot answer does not get
    // to make the gateway read megabytes.
    match service.handler(Role::Http) {
        Err(file) => return Err(not_ready(file.name())),
        Ok(None) => return Err(ErrNo::NO_HTTP_HANDLER.error()),
        Ok(Some(handler)) if !handler.module.handles(Role::Http) => {
            return Err(not_handled(&handler.file.to_string()))
        }
        Ok(Some(_)) => {}
    }
    let config = service.config();
    let limit = config.max_http_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > limit as u64) {
        return Err(ErrNo::PAYLOAD_TOO_LARGE.over_limit(length as usize, limit));
    }
    let expected = declared.unwrap_or(limit as u64);
    let deadline = gateway
        .config()
        .front_door
        .header_timeout
        .max(Duration::from_secs(expected / MIN_BODY_BYTES_PER_SECOND));
    // Waiting for room counts against the body's time, as a stalled
    // sender's would. The share is held until the call ends: the event
    // carries the body.
    let read = async {
        let share = match expected > SMALL_FRAME {
            true => budget.reserve(expected).await.ok(),
            false => None,
        };
        (share, Limited::new(body, limit).collect().await)
    };
    let Ok((_share, collected)) = tokio::time::timeout(deadline, read).await else {
        return Err(ErrNo::BODY_TIMEOUT.with(format_args!("{deadline:?}")));
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Err(ErrNo::PAYLOAD_TOO_LARGE.with(format_args!("more than {limit} bytes")))
        }
        Err(error) => {
            tracing::debug!(service = %service.name, %error, "HTTP request body not read");
            return Err(match ended_early(&*error) {
                true => ErrNo::BODY_TIMEOUT.with("the body ended early"),
                false => ErrNo::BAD_BODY.with(guest_text(&innermost(&*error).to_string())),
            });
        }
    };

    let request_id = new_request_id();
    let (route, path_parameters) = match match_route(&config.routes, path) {
        Some((route, parameters)) => (Some(route.as_str()), parameters),
        None => (None, Default::default()),
    };
    let event = http_event(&HttpRequest {
        service: &service.name,
        request_id: &request_id,
        source_ip: peer.ip(),
        method: parts.method.as_str(),
        path,
        route,
        path_parameters,
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &body,
    });
    drop(body);
    let event = Event {
        connection_id: "".into(),
        request_id: request_id.clone(),
        json: event,
        departed_groups: None,
        connection: None,
    };
    let answer = match gateway.call(&service, Role::Http, event).await {
        None => return Err(ErrNo::NO_HTTP_HANDLER.error()),
        Some(Err(error)) => return Err(call_failed(error)),
        Some(Ok(answer)) => answer,
    };
    Ok(respond(&service, &request_id, &answer))
}

/// The HTTP answer of a handler's answer: its integration response, or the
/// model's 502 when it is not one.
fn respond(service: &Service, request_id: &str, answer: &str) -> Response {
    match IntegrationResponse::parse(answer) {
        Ok(answer) => {
            let mut response = Response::new(Body::from(answer.body));
            *response.status_mut() = answer.status;
            let headers = response.headers_mut();
            for (name, value) in answer.headers {
                headers.append(name, value);
            }
            response
        }
        Err(error) => {
            let error = guest_text(&error.to_string());
            tracing::warn!(service = %service.name, role = %Role::Http, request_id, %error, "handler answer refused");
            let mut response = Response::new(Body::from(MALFORMED_RESPONSE_BODY));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

/// The HTTP error of a failed call (dispatch has logged why).
/// Whether reading a body failed because the client's stream ended before
/// the body did (and not because what arrived was malformed).
fn ended_early(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |error| error.source())
        .filter_map(|error| error.downcast_ref::<std::io::Error>())
        .any(|error| error.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// The most specific error of a chain (hyper's reason under its context).
fn innermost<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    std::iter::successors(Some(error), |error| error.source())
        .last()
        .unwrap_or(error)
}

fn call_failed(error: CallError) -> ApiError {
    match error {
        CallError::Timeout(after) => ErrNo::HTTP_HANDLER_TIMEOUT.with(format_args!("{after:?}")),
        CallError::Busy(_) | CallError::GatewayMemory => ErrNo::SERVICE_BUSY.error(),
        CallError::NotReady(file) => not_ready(file),
        CallError::RoleUnknown(_) => not_handled("its handler"),
        CallError::OutOfMemory(_)
        | CallError::Trap(_)
        | CallError::Handler(_)
        | CallError::AnswerTooLarge(..)
        | CallError::Instantiate(_) => ErrNo::HTTP_HANDLER_FAILED.error(),
    }
}

fn not_ready(file: &str) -> ApiError {
    ErrNo::SERVICE_NOT_READY.with(format_args!("{file} is compiling or failed to load"))
}

fn not_handled(file: &str) -> ApiError {
    ErrNo::NO_HTTP_HANDLER.with(format_args!(
        "{file} was built before the http role existed"
    ))
}
