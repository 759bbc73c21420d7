//! The control listener's routes, for a service's backend and the operator:
//! reverse push (the one routing function, as the host calls), the
//! connection info routes, health with the service names, and the admin
//! route.
//!
//! Authorisation, per service: its bearer token when it sets one (any peer
//! may present it; compared as SHA-256 digests in constant time, so neither
//! its content nor its length leaks), else a loopback peer whose request
//! carries no `Origin` header: a web page the operator visits could
//! otherwise reach loopback. A POST body must be declared
//! `application/json`, which a cross-origin form or `fetch` without a
//! preflight cannot send. A caller that may not use a service is not told
//! whether it exists.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse as _;
use axum::routing::get;
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::find_service;
use crate::config::ServiceConfig;
use crate::dispatch::Gateway;
use crate::metrics::PushSource;
use crate::plugins::{PluginFile, Service};
use crate::protocol::{max_request_bytes, ok_body, ApiError, ErrNo, PushRequest, Role};
use crate::state::{route, MEMBERS_PAGE_MAX};

pub(super) fn routes() -> axum::Router<Gateway> {
    axum::Router::new()
        .route("/push/{service}", get(list_connections).post(push))
        .route("/push/{service}/{*id}", get(connection_info))
        .route("/admin/services", get(admin_services))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// Whether a peer is on this host (an IPv4-mapped loopback address too).
fn is_loopback(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Whether a request may act without a token: from this host, and not from
/// a web page (browsers send `Origin` on every cross-origin request and on
/// every POST).
fn is_local_tool(headers: &HeaderMap, peer: IpAddr) -> Result<(), ApiError> {
    if headers.contains_key(header::ORIGIN) {
        return Err(ErrNo::CROSS_ORIGIN.error());
    }
    if !is_loopback(peer) {
        return Err(ErrNo::FORBIDDEN_REMOTE.error());
    }
    Ok(())
}

/// Checks the reverse-push authorisation rule: the bearer token if the service
/// has one, else a local tool (see [`is_local_tool`]).
fn authorize(config: &ServiceConfig, headers: &HeaderMap, peer: IpAddr) -> Result<(), ApiError> {
    match &config.push_token {
        Some(token) if bearer_matches(headers, token) => Ok(()),
        Some(_) => Err(ErrNo::UNAUTHORIZED.error()),
        None => is_local_tool(headers, peer),
    }
}

/// Whether the request carries `Authorization: Bearer <token>`, compared
/// as SHA-256 digests in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (given, token) = (Sha256::digest(given), Sha256::digest(token));
    bool::from(given.ct_eq(&token))
}

/// The service, if the caller may use it. An unknown service is named as
/// such only to a local tool; anyone else is refused as for a service with
/// a token, so names cannot be probed.
fn authorized_service(
    gateway: &Gateway,
    name: &str,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Arc<Service>, ApiError> {
    match find_service(gateway, name) {
        Ok(service) => {
            authorize(&service.config(), headers, peer)?;
            Ok(service)
        }
        Err(unknown) => match is_local_tool(headers, peer) {
            Ok(()) => Err(unknown),
            Err(_) => Err(ErrNo::UNAUTHORIZED.error()),
        },
    }
}

/// A POST body must be declared JSON.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ErrNo::WRONG_CONTENT_TYPE.error())
    }
}

/// Health, with the names of the loaded services and whether the handler
/// files found at start-up have all loaded (`loaded`; until then a service
/// whose files are still compiling refuses clients with 503). The public
/// listener's health names nothing.
async fn healthz(State(gateway): State<Gateway>) -> Json<serde_json::Value> {
    let mut health = serde_json::json!({
        "status": if gateway.is_shutting_down() { "shutting down" } else { "ok" },
        "loaded": gateway.is_loaded(),
        "services": gateway.services().names(),
    });
    // Cluster mode: the node id, whether it holds its lease, whether its
    // inbox is subscribed.
    if let Some(cluster) = gateway.cluster() {
        health["cluster"] = cluster.status();
    }
    Json(health)
}

/// The process's metrics in the Prometheus text format. For a local tool,
/// as the admin route; from elsewhere, with `Authorization: Bearer` and the
/// gateway's metrics token (`--metrics-token`) when one is set.
async fn metrics(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let by_token = gateway
        .config()
        .metrics_token
        .as_deref()
        .is_some_and(|token| bearer_matches(&headers, token));
    if !by_token {
        match is_local_tool(&headers, peer.ip()) {
            Err(error) if error.code == ErrNo::FORBIDDEN_REMOTE.number => {
                return Err(match gateway.config().metrics_token {
                    Some(_) => ErrNo::UNAUTHORIZED.error(),
                    None => ErrNo::FORBIDDEN_ADMIN.error(),
                })
            }
            other => other?,
        }
    }
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(),
    )
        .into_response())
}

async fn push(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = authorized_service(&gateway, &service, &headers, peer.ip())?;
    require_json(&headers)?;
    let config = service.config();
    let body_limit = max_request_bytes(config.max_message_bytes);
    let body = axum::body::to_bytes(body, body_limit)
        .await
        .map_err(|_| ErrNo::PAYLOAD_TOO_LARGE.over_limit(body_limit + 1, body_limit))?;
    let request = PushRequest::parse(&body, config.max_message_bytes)?;
    let broadcast = matches!(request, PushRequest::Broadcast { .. });
    let reached = route(&**gateway.broker(), &service.name, request).await;
    crate::metrics::global().push(PushSource::Http, &reached);
    let reached = reached?;
    let mut body = ok_body();
    if broadcast {
        // An addition to the contract's answer, for the addition's action.
        body["delivered"] = reached.into();
    }
    Ok(Json(body))
}

/// The query of `GET /push/<service>`: with `group`, the members of that
/// group a page at a time (`cursor`: the last id of the page before;
/// `limit`: ids per page, at most [`MEMBERS_PAGE_MAX`]).
#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    group: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_connections(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = authorized_service(&gateway, &service, &headers, peer.ip())?;
    let Query(query) =
        query.map_err(|rejection| ErrNo::MISSING_FIELD.with(rejection.body_text()))?;
    let mut body = ok_body();
    let Some(group) = query.group else {
        if query.cursor.is_some() || query.limit.is_some() {
            return Err(ErrNo::MISSING_FIELD.with("cursor and limit page a group: add group"));
        }
        let connections = gateway.broker().connections(&service.name).await?;
        body["connections"] = serde_json::json!(connections);
        return Ok(Json(body));
    };
    let limit = match query.limit.as_deref() {
        None => MEMBERS_PAGE_MAX,
        Some(text) => match text.parse::<usize>() {
            Ok(limit @ 1..=MEMBERS_PAGE_MAX) => limit,
            _ => {
                return Err(ErrNo::MISSING_FIELD
                    .with(format_args!("limit: a number from 1 to {MEMBERS_PAGE_MAX}")))
            }
        },
    };
    let page = gateway
        .broker()
        .members_page(&service.name, &group, query.cursor.as_deref(), limit)
        .await?;
    body["group"] = serde_json::json!(group);
    body["members"] = serde_json::json!(page.members);
    body["cursor"] = serde_json::json!(page.cursor);
    Ok(Json(body))
}

async fn connection_info(
    State(gateway): State<Gateway>,
    Path((service, id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = authorized_service(&gateway, &service, &headers, peer.ip())?;
    let info = gateway.broker().connection(&service.name, &id).await?;
    let mut body = ok_body();
    body["connection"] = serde_json::json!(info);
    Ok(Json(body))
}

/// What is loaded, per service and file: content hash, load time, compile
/// time and the last load error. Local tools only.
async fn admin_services(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    match is_local_tool(&headers, peer.ip()) {
        Err(error) if error.code == ErrNo::FORBIDDEN_REMOTE.number => {
            return Err(ErrNo::FORBIDDEN_ADMIN.error())
        }
        other => other?,
    }
    let millis = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let services: Vec<serde_json::Value> = gateway
        .services()
        .names()
        .iter()
        .filter_map(|name| gateway.services().get(name))
        .map(|service| {
            let files: Vec<serde_json::Value> = PluginFile::HANDLERS
                .iter()
                .filter_map(|file| service.handler_file(*file))
                .map(|handler| {
                    serde_json::json!({
                        "file": handler.file,
                        "hash": &*handler.hash,
                        "loadedAt": millis(handler.loaded_at),
                        "compileMs": handler.compile_ms,
                        "fromCache": handler.from_cache,
                    })
                })
                .collect();
            let roles: serde_json::Map<String, serde_json::Value> = Role::ALL
                .iter()
                .map(|role| {
                    // A handler built before a role does not serve it.
                    let file = service
                        .handler(*role)
                        .ok()
                        .flatten()
                        .filter(|handler| handler.module.handles(*role))
                        .map(|handler| handler.file);
                    (role.as_str().to_owned(), serde_json::json!(file))
                })
                .collect();
            serde_json::json!({
                "name": &*service.name,
                "files": files,
                "roles": roles,
                "ready": service.readiness().is_ok(),
                "errors": service.failures(),
                "connections": gateway.router().count(&service.name),
            })
        })
        .collect();
    let mut body = ok_body();
    body["services"] = services.into();
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn without_a_token_only_loopback_may_push() {
        let config = ServiceConfig::default();
        assert!(authorize(&config, &headers(None), IpAddr::from([127, 0, 0, 1])).is_ok());
        assert!(authorize(&config, &headers(None), "::1".parse().unwrap()).is_ok());
        let error = authorize(&config, &headers(None), IpAddr::from([10, 1, 2, 3])).unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (403, 2102));
    }

    #[test]
    fn without_a_token_a_web_page_may_not_push_even_from_loopback() {
        let config = ServiceConfig::default();
        let mut from_page = headers(None);
        from_page.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        let error = authorize(&config, &from_page, IpAddr::from([127, 0, 0, 1])).unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (403, 2105));
        // A mapped loopback address is loopback.
        assert!(authorize(&config, &headers(None), "::ffff:127.0.0.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_post_body_must_be_declared_json() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            require_json(&headers)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(with(refused).unwrap_err().code, 2104, "{refused}");
        }
        assert_eq!(require_json(&HeaderMap::new()).unwrap_err().code, 2104);
    }

    #[test]
    fn with_a_token_everyone_needs_it() {
        let config = ServiceConfig {
            push_token: Some("0123456789abcdef".into()),
            ..ServiceConfig::default()
        };
        let remote = IpAddr::from([10, 1, 2, 3]);
        assert!(authorize(&config, &headers(Some("Bearer 0123456789abcdef")), remote).is_ok());
        for given in [
            None,
            Some("Bearer 0123456789abcdeX"),
            Some("0123456789abcdef"),
        ] {
            let error =
                authorize(&config, &headers(given), IpAddr::from([127, 0, 0, 1])).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (401, 2101),
                "{given:?}"
            );
        }
    }
}
