//! `wasmgate invoke`: run one handler file once on one event (of any role:
//! the WebSocket events, an integration request, a timer event), outside a
//! gateway, and report its answer, its output and the pushes it made (a
//! [`Recorder`] stands in for the router).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::protocol::Role;
use crate::state::kv::{KvQuota, KvStore};
use crate::state::Outbound;
use crate::state::{Connection, OutboundBudget, OutboundReceiver, QueueBounds, Recorder, Router};
use crate::wasm::capture::{LogLevel, OutputLine, OutputSource};
use crate::wasm::{CallOutcome, CallSpec, HandlerModule, Runtime, StateAccess};

/// Runs `file` once with the event JSON `event`. The role comes from the
/// event: its `websocket.action` (`connecting`, `data send`, `closing`), a
/// timer event's `"Type": "Timer"`, or an integration request's
/// `httpMethod` (the HTTP trigger).
pub async fn invoke(
    file: &Path,
    event: &str,
    service: &str,
    state: Option<&Path>,
) -> anyhow::Result<CallOutcome> {
    let value: serde_json::Value = serde_json::from_str(event).context("the event is not JSON")?;
    let role = Role::of_event(&value).context(
        "the event is none the gateway sends: no known websocket.action, no \"Type\": \"Timer\", \
         no httpMethod of an integration request",
    )?;
    // The HTTP and timer events are about no connection.
    let connection_id: Arc<str> = match role {
        Role::Http | Role::Timer => "".into(),
        _ => value
            .pointer("/websocket/secConnectionID")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("local-connection")
            .into(),
    };
    let (runtime, module, kv) = load(file, state).await?;
    if !module.handles(role) {
        anyhow::bail!(
            "{} was built before the {role} role existed: the gateway does not call it for {role} events",
            file.display()
        );
    }
    run_once(&runtime, &module, service, role, connection_id, event, kv).await
}

/// A runtime for `wasmgate invoke`, `file` loaded into it, and the
/// key-value store of `state` (a fresh one in memory when `None`).
async fn load(
    file: &Path,
    state: Option<&Path>,
) -> anyhow::Result<(Runtime, HandlerModule, KvStore)> {
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
    let kv = match state {
        Some(path) => KvStore::open(path)?,
        None => KvStore::in_memory()?,
    };
    Ok((runtime, module, kv))
}

/// One call of `module` on `kv`, with pushes recorded; nothing is
/// instantiated beyond the call itself.
async fn run_once(
    runtime: &Runtime,
    module: &HandlerModule,
    service: &str,
    role: Role,
    connection_id: Arc<str>,
    event: &str,
    kv: KvStore,
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
        max_answer_bytes: crate::wasm::max_answer_bytes(role, defaults.max_http_body_bytes),
        instance_reuse: 0,
        prepare_next: false,
        state: StateAccess {
            kv,
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

/// One step of a `wasmgate invoke --script` session.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ScriptStep {
    /// A client named `connect` asks to connect (register runs), with a
    /// query string and headers.
    Connect {
        /// The client's name in the script.
        connect: String,
        /// Query parameters of the upgrade request.
        #[serde(default)]
        query: BTreeMap<String, String>,
        /// Headers of the upgrade request (names lower-case).
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Client `send` sends a text message (transfer runs).
    Send {
        /// The client's name.
        send: String,
        /// The message.
        text: String,
    },
    /// Client `close` closes (cleanup runs).
    Close {
        /// The client's name.
        close: String,
        /// The close frame's code.
        #[serde(default)]
        code: Option<u16>,
    },
}

/// A live client of a script session.
struct ScriptClient {
    name: String,
    connection: Arc<Connection>,
    outbound: OutboundReceiver,
}

/// Runs `file` through a whole session: each step of `script` (a JSON
/// array of [`ScriptStep`]s) is an event of a real router, so groups,
/// pushes, broadcasts, closes and attributes behave as in the gateway.
/// `state` is the key-value store file (in memory when `None`). Returns the
/// transcript, one line per event, handler output line and delivery.
pub async fn invoke_script(
    file: &Path,
    script: &str,
    service: &str,
    state: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let steps: Vec<ScriptStep> = serde_json::from_str(script).context(
        "the script is not a JSON array of steps ({\"connect\"}, {\"send\"}, {\"close\"})",
    )?;
    let (runtime, module, kv) = load(file, state).await?;
    let router = Router::new(OutboundBudget::new(usize::MAX));
    let broker: Arc<dyn crate::state::Broker> = Arc::new(router.clone());
    let service: Arc<str> = service.into();
    let defaults = ServiceConfig::default();
    let mut clients: Vec<ScriptClient> = Vec::new();
    let mut transcript = Vec::new();
    let call = |role: Role,
                connection: &Arc<Connection>,
                event: String,
                departed_groups: Option<Vec<Arc<str>>>| {
        let spec = CallSpec {
            cpu: Arc::default(),
            service: service.clone(),
            role,
            request_id: crate::dispatch::new_request_id(),
            connection_id: connection.id.clone(),
            event,
            timeout: defaults.timeout,
            memory_limit_bytes: defaults.memory_limit_bytes,
            env: defaults.env.clone(),
            broker: broker.clone(),
            max_message_bytes: defaults.max_message_bytes,
            max_answer_bytes: crate::wasm::MAX_ANSWER_BYTES,
            instance_reuse: 0,
            prepare_next: false,
            state: StateAccess {
                kv: kv.clone(),
                kv_quota: KvQuota {
                    max_keys: defaults.kv_max_keys,
                    max_bytes: defaults.kv_max_bytes,
                },
                departed_groups,
                connection: Some(Arc::downgrade(connection)),
            },
        };
        runtime.call(&module, spec)
    };
    for (number, step) in steps.into_iter().enumerate() {
        let number = number + 1;
        match step {
            ScriptStep::Connect {
                connect,
                query,
                headers,
            } => {
                if clients.iter().any(|client| client.name == connect) {
                    anyhow::bail!("step {number}: {connect} is already connected");
                }
                let reservation = router
                    .reserve(
                        &service,
                        std::net::Ipv4Addr::LOCALHOST.into(),
                        QueueBounds {
                            messages: defaults.outbound_queue,
                            bytes: defaults.outbound_queue_bytes,
                        },
                        defaults.max_connections,
                    )
                    .map_err(|error| anyhow::anyhow!("step {number}: {}", error.message))?;
                let connection = reservation.connection;
                transcript.push(format!("{number}. {connect} connects as {}", connection.id));
                let request_id = crate::dispatch::new_request_id();
                let event =
                    crate::protocol::connecting_event(&crate::protocol::ConnectingRequest {
                        service: &service,
                        path: &format!("/ws/{service}"),
                        request_id: &request_id,
                        connection_id: &connection.id,
                        source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                        headers,
                        query,
                    });
                let outcome = call(Role::Register, &connection, event, None).await;
                record_output(&mut transcript, &outcome);
                let accepted = match &outcome.result {
                    Ok(answer) => match crate::protocol::RegisterAnswer::parse(answer) {
                        Ok(crate::protocol::RegisterAnswer::Accept { attributes, .. }) => {
                            if attributes.is_some() {
                                connection.set_attributes(attributes);
                            }
                            true
                        }
                        Ok(crate::protocol::RegisterAnswer::Refuse { code, message }) => {
                            transcript.push(format!("   refused: errNo {code} {message}"));
                            false
                        }
                        Err(error) => {
                            transcript.push(format!("   register failed: {error}"));
                            false
                        }
                    },
                    Err(error) => {
                        transcript.push(format!("   register failed: {error}"));
                        false
                    }
                };
                let client = ScriptClient {
                    name: connect,
                    connection,
                    outbound: reservation.outbound,
                };
                if accepted {
                    clients.push(client);
                } else {
                    router.remove(&client.connection);
                }
            }
            ScriptStep::Send { send, text } => {
                let client = clients
                    .iter()
                    .find(|client| client.name == send)
                    .with_context(|| format!("step {number}: no connected client {send}"))?;
                transcript.push(format!("{number}. {send} sends {text:?}"));
                let connection = client.connection.clone();
                let event = crate::protocol::data_send_event(
                    &connection.id,
                    &crate::protocol::Payload::Text(text),
                    connection.attributes().as_deref(),
                );
                let outcome = call(Role::Transfer, &connection, event, None).await;
                record_output(&mut transcript, &outcome);
                if let Err(error) = &outcome.result {
                    transcript.push(format!(
                        "   transfer failed: {error} (the gateway closes with 1011)"
                    ));
                }
            }
            ScriptStep::Close { close, code } => {
                let index = clients
                    .iter()
                    .position(|client| client.name == close)
                    .with_context(|| format!("step {number}: no connected client {close}"))?;
                let client = clients.remove(index);
                transcript.push(format!("{number}. {close} closes"));
                let departed = router.remove(&client.connection);
                let event = crate::protocol::closing_event(
                    &client.connection.id,
                    crate::protocol::CloseReason::Client,
                    code,
                    client.connection.attributes().as_deref(),
                );
                let outcome = call(Role::Cleanup, &client.connection, event, Some(departed)).await;
                record_output(&mut transcript, &outcome);
            }
        }
        // What reached each client, in the order it was queued.
        for client in &mut clients {
            while let Ok(message) = client.outbound.try_recv() {
                transcript.push(match message {
                    Outbound::Text(text) => format!("   -> {}: {:?}", client.name, text.as_str()),
                    Outbound::Binary(bytes) => {
                        format!("   -> {}: {} bytes, binary", client.name, bytes.len())
                    }
                    Outbound::Ping => continue,
                });
            }
            if let Some(cause) = client.connection.close_cause() {
                transcript.push(format!(
                    "   -> {}: closed by the server ({})",
                    client.name, cause.code
                ));
            }
        }
    }
    Ok(transcript)
}

/// The handler's output lines of one call, indented, into the transcript.
fn record_output(transcript: &mut Vec<String>, outcome: &CallOutcome) {
    for line in &outcome.output {
        transcript.push(format!("   {}", output_line(line)));
    }
}

/// One line of a handler's output as `invoke` prints it: `[source] text`.
pub fn output_line(line: &OutputLine) -> String {
    let source = match line.source {
        OutputSource::Stdout => "stdout".to_owned(),
        OutputSource::Stderr => "stderr".to_owned(),
        OutputSource::Log(level) => format!("log {level:?}").to_lowercase(),
    };
    format!("[{source}] {}", line.text)
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
            KvStore::in_memory().unwrap(),
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
