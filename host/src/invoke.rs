//! `wasmgate invoke`: run one handler file once on one event, outside a
//! gateway, and report its answer, its output and the pushes it made (a
//! [`Recorder`] stands in for the router).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::protocol::Role;
use crate::state::kv::{KvQuota, KvStore};
use crate::state::Recorder;
use crate::wasm::capture::{LogLevel, OutputLine, OutputSource};
use crate::wasm::{CallOutcome, CallSpec, HandlerModule, Runtime, StateAccess};

/// Runs `file` once with the event JSON `event`. The role comes from the
/// event's `websocket.action` (`connecting`, `data send`, `closing`).
pub async fn invoke(file: &Path, event: &str, service: &str) -> anyhow::Result<CallOutcome> {
    let value: serde_json::Value = serde_json::from_str(event).context("the event is not JSON")?;
    let action = value
        .pointer("/websocket/action")
        .and_then(serde_json::Value::as_str)
        .context("the event has no websocket.action")?;
    let role =
        Role::of_action(action).with_context(|| format!("unknown websocket.action {action:?}"))?;
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
    let module = runtime
        .load(&bytes)
        .await
        .with_context(|| format!("loading {}", file.display()))?;
    run_once(&runtime, &module, service, role, connection_id, event).await
}

/// One call of `module`, with pushes recorded and a fresh in-memory
/// key-value store; nothing is instantiated beyond the call itself.
async fn run_once(
    runtime: &Runtime,
    module: &HandlerModule,
    service: &str,
    role: Role,
    connection_id: Arc<str>,
    event: &str,
) -> anyhow::Result<CallOutcome> {
    let defaults = ServiceConfig::default();
    let recorder = Arc::new(Recorder::new());
    let spec = CallSpec {
        cpu: Arc::default(),
        service: service.into(),
        role,
        request_id: crate::dispatch::new_request_id(),
        connection_id,
        event: event.to_owned(),
        timeout: defaults.timeout,
        memory_limit_bytes: defaults.memory_limit_bytes,
        env: defaults.env,
        broker: recorder.clone(),
        max_message_bytes: usize::MAX,
        instance_reuse: 0,
        prepare_next: false,
        state: StateAccess {
            kv: KvStore::in_memory()?,
            kv_quota: KvQuota {
                max_keys: defaults.kv_max_keys,
                max_bytes: defaults.kv_max_bytes,
            },
            departed_groups: (role == Role::Cleanup).then(Vec::new),
            connection: None,
        },
    };
    let mut outcome = runtime.call(module, spec).await;
    outcome
        .output
        .extend(recorder.take_lines().into_iter().map(|text| OutputLine {
            source: OutputSource::Log(LogLevel::Info),
            text,
        }));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_event_instantiates_one_instance() {
        let runtime = Runtime::new(&GatewayConfig::new(".")).unwrap();
        let wat = include_str!("../../plugins/echo-wat/handler.wat");
        let module = runtime.load(&wat::parse_str(wat).unwrap()).await.unwrap();
        let event = r#"{"websocket":{"action":"data send","secConnectionID":"a","dataType":"text","data":"hi"}}"#;
        let outcome = run_once(
            &runtime,
            &module,
            "local",
            Role::Transfer,
            "a".into(),
            event,
        )
        .await
        .unwrap();
        outcome.result.unwrap();
        let lines: Vec<_> = outcome.output.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(lines, ["push a text hi"]);
        // No second instance was prepared for an event that never comes.
        assert!(!module.has_idle_instance());
    }
}
