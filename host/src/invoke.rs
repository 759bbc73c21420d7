//! `wasmgate invoke`: run one handler file once on one event, outside a
//! gateway, and report its answer, its output and the pushes it made.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::kv::KvStore;
use crate::runtime::{CallOutcome, CallSpec, Role, Routing, Runtime, StateAccess};

/// Runs `file` once with the event JSON `event`. The role comes from the
/// event's `websocket.action` (`connecting`, `data send`, `closing`).
pub async fn invoke(file: &Path, event: &str, service: &str) -> anyhow::Result<CallOutcome> {
    let value: serde_json::Value = serde_json::from_str(event).context("the event is not JSON")?;
    let action = value
        .pointer("/websocket/action")
        .and_then(serde_json::Value::as_str)
        .context("the event has no websocket.action")?;
    let role = match action {
        "connecting" => Role::Register,
        "data send" => Role::Transfer,
        "closing" => Role::Cleanup,
        other => anyhow::bail!("unknown websocket.action {other:?}"),
    };
    let connection_id: Arc<str> = value
        .pointer("/websocket/secConnectionID")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("local-connection")
        .into();
    let gateway_config = GatewayConfig {
        max_concurrency: 4,
        ..GatewayConfig::new(".")
    };
    let runtime = Runtime::new(&gateway_config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let module = {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await?
            .with_context(|| format!("loading {}", file.display()))?
    };
    let defaults = ServiceConfig::default();
    let spec = CallSpec {
        service: service.into(),
        role,
        request_id: uuid::Uuid::new_v4().to_string(),
        connection_id,
        event: event.to_owned(),
        timeout: defaults.timeout,
        memory_limit_bytes: defaults.memory_limit_bytes,
        env: defaults.env,
        routing: Routing::Record,
        state: StateAccess {
            kv: KvStore::in_memory()?,
            kv_max_keys: defaults.kv_max_keys,
            departed_groups: (role == Role::Cleanup).then(Vec::new),
        },
        instance_reuse: 0,
    };
    Ok(runtime.call(&module, spec).await)
}
