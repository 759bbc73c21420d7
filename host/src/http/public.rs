//! Routes for anyone: health, and the chat example's page. Health names no
//! service: the public listener tells a stranger nothing about its tenants.

use axum::extract::State;
use axum::routing::get;
use axum::Json;

use crate::dispatch::Gateway;

pub(super) fn routes() -> axum::Router<Gateway> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/demo/chat", get(demo_chat))
}

/// The browser page of the chat example (the `chat` service), plain HTML
/// and JavaScript.
async fn demo_chat() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("demo/chat.html"))
}

async fn healthz(State(gateway): State<Gateway>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": if gateway.is_shutting_down() { "shutting down" } else { "ok" },
    }))
}
