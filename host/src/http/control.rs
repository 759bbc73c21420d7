//! The routes a service's backend uses: reverse push (the one routing
//! function, as the host calls), the connection info routes, and the
//! loopback-only admin route.
//!
//! Authorisation: the service's bearer token when it sets one (compared in
//! constant time), else a loopback caller.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Json;
use subtle::ConstantTimeEq;

use super::find_service;
use crate::config::ServiceConfig;
use crate::dispatch::Gateway;
use crate::plugins::PluginFile;
use crate::protocol::{ok_body, ApiError, ErrNo, PushRequest, Role};
use crate::state::route;

pub(super) fn routes() -> axum::Router<Gateway> {
    axum::Router::new()
        .route("/push/{service}", get(list_connections).post(push))
        .route("/push/{service}/{*id}", get(connection_info))
        .route("/admin/services", get(admin_services))
}

/// Checks the reverse-push authorisation rule: the bearer token if the service
/// has one (compared in constant time), else a loopback caller.
fn authorize(config: &ServiceConfig, headers: &HeaderMap, peer: IpAddr) -> Result<(), ApiError> {
    match &config.push_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Ok(())
            } else {
                Err(ErrNo::UNAUTHORIZED.error())
            }
        }
        None if peer.is_loopback() => Ok(()),
        None => Err(ErrNo::FORBIDDEN_REMOTE.error()),
    }
}

async fn push(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    let config = service.config();
    authorize(&config, &headers, peer.ip())?;
    // Base64 grows data by 4/3; allow that plus room for the JSON around it.
    let body_limit = config.max_message_bytes / 3 * 4 + 64 * 1024;
    let body = axum::body::to_bytes(body, body_limit)
        .await
        .map_err(|_| ErrNo::PAYLOAD_TOO_LARGE.over_limit(body_limit + 1, body_limit))?;
    let request = PushRequest::parse(&body, config.max_message_bytes)?;
    let broadcast = matches!(request, PushRequest::Broadcast { .. });
    let reached = route(&**gateway.broker(), &service.name, request).await?;
    let mut body = ok_body();
    if broadcast {
        // An addition to the contract's answer, for the addition's action.
        body["delivered"] = reached.into();
    }
    Ok(Json(body))
}

async fn list_connections(
    State(gateway): State<Gateway>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    authorize(&service.config(), &headers, peer.ip())?;
    let connections = gateway.broker().connections(&service.name).await?;
    let mut body = ok_body();
    body["connections"] = serde_json::json!(connections);
    Ok(Json(body))
}

async fn connection_info(
    State(gateway): State<Gateway>,
    Path((service, id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = find_service(&gateway, &service)?;
    authorize(&service.config(), &headers, peer.ip())?;
    let info = gateway.broker().connection(&service.name, &id).await?;
    let mut body = ok_body();
    body["connection"] = serde_json::json!(info);
    Ok(Json(body))
}

/// What is loaded, per service and file: content hash, load time, compile
/// time and the last load error. Loopback callers only.
async fn admin_services(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !peer.ip().is_loopback() {
        return Err(ErrNo::FORBIDDEN_ADMIN.error());
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
                    let file = service.handler(*role).ok().flatten().map(|h| h.file);
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
