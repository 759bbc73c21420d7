//! The per-event path taken apart into its stages, so each can be timed on
//! its own (`cargo bench -p wasmgate --bench per_event`) and profiled without
//! sockets in the way.
//!
//! A [`PerEvent`] holds one loaded handler, a router with one connection of
//! its service (whose outbound queue stands in for the client socket) and
//! the same limits a gateway applies: pooling allocator, epoch deadline,
//! memory limiter, per-call WASI context with no files, network or
//! inherited environment. Nothing here takes a short cut the gateway does
//! not take; [`PerEvent::event`] is the path of one client message minus the
//! socket reads and writes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::protocol::{self, ApiError, Payload, PushRequest, RegisterAnswer, Role};
use crate::state::kv::{KvQuota, KvStore};
use crate::state::{route, OutboundReceiver, QueueBounds, Router};
use crate::wasm::{CallError, CallSpec, HandlerModule, Runtime, StateAccess};

/// One handler with a connection to push to, ready to run events.
pub struct PerEvent {
    runtime: Runtime,
    module: HandlerModule,
    router: Router,
    service: Arc<str>,
    connection_id: Arc<str>,
    outbound: OutboundReceiver,
    config: ServiceConfig,
    kv: KvStore,
}

impl std::fmt::Debug for PerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerEvent")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl PerEvent {
    /// Compiles `wasm` (a component or core module) with the gateway's
    /// default engine settings and opens one connection of service `bench`.
    /// `instance_reuse` is the service setting of that name (0: a fresh
    /// instance per event, the default).
    pub fn new(wasm: &[u8], instance_reuse: u32) -> anyhow::Result<Self> {
        let runtime =
            Runtime::new(&GatewayConfig::new(".")).map_err(|e| anyhow::anyhow!("engine: {e:#}"))?;
        let module = runtime.load_blocking(wasm)?;
        let router = Router::default();
        let service: Arc<str> = "bench".into();
        let config = ServiceConfig {
            instance_reuse,
            ..ServiceConfig::default()
        };
        let reservation = router.reserve(
            &service,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            QueueBounds {
                messages: config.outbound_queue,
                bytes: config.outbound_queue_bytes,
            },
            usize::MAX,
        )?;
        Ok(Self {
            runtime,
            module,
            router,
            service,
            connection_id: reservation.connection.id.clone(),
            outbound: reservation.outbound,
            config,
            kv: KvStore::in_memory()?,
        })
    }

    /// The id of the one connection.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// Stage 1: the transfer event JSON for a text message.
    pub fn build_event(&self, text: &str) -> String {
        protocol::data_send_event(&self.connection_id, &Payload::Text(text.to_owned()), None)
    }

    /// Stage 2: a fresh store and instance from the handler's `InstancePre`
    /// (through the pooling allocator), dropped again.
    pub async fn instantiate(&self) -> Result<(), CallError> {
        self.runtime
            .instantiate_only(&self.module, &self.spec(String::new()))
            .await
    }

    /// Stages 2-4: one transfer call as the gateway makes it (store,
    /// instance, guest call with its host calls, limits on), returning the
    /// handler's answer. Pushes the handler makes land in the connection's
    /// queue; [`PerEvent::drain`] empties it.
    pub async fn call(&self, event: String) -> Result<String, CallError> {
        self.runtime
            .call(&self.module, self.spec(event))
            .await
            .result
    }

    /// The whole path of one client text message: build the event, call the
    /// handler, and take what it pushed from the connection's queue. Returns
    /// the number of messages the handler pushed.
    pub async fn event(&mut self, text: &str) -> Result<usize, CallError> {
        let event = self.build_event(text);
        self.call(event).await?;
        Ok(self.drain())
    }

    /// Stage 4: parses a register handler's answer.
    pub fn parse_answer(answer: &str) -> Result<bool, protocol::MalformedAnswer> {
        RegisterAnswer::parse(answer).map(|a| matches!(a, RegisterAnswer::Accept { .. }))
    }

    /// Stage 5: a reverse-push request (the JSON body of `POST /push/...`),
    /// parsed and routed to the connection's queue, as the push host call
    /// and the HTTP endpoint both do.
    pub async fn push(&mut self, body: &[u8]) -> Result<usize, ApiError> {
        let request = PushRequest::parse(body, self.config.max_message_bytes)?;
        let reached = route(&self.router, &self.service, request).await?;
        self.drain();
        Ok(reached)
    }

    /// Empties the connection's queue; returns how many messages it held.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.outbound.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    fn spec(&self, event: String) -> CallSpec {
        CallSpec {
            cpu: Arc::default(),
            service: self.service.clone(),
            role: Role::Transfer,
            request_id: "".into(),
            connection_id: self.connection_id.clone(),
            event,
            timeout: self.config.timeout,
            memory_limit_bytes: self.config.memory_limit_bytes,
            env: Arc::new(BTreeMap::new()),
            broker: Arc::new(self.router.clone()),
            max_message_bytes: self.config.max_message_bytes,
            max_answer_bytes: crate::wasm::MAX_ANSWER_BYTES,
            instance_reuse: self.config.instance_reuse,
            prepare_next: true,
            state: StateAccess {
                kv: self.kv.clone(),
                kv_quota: KvQuota {
                    max_keys: self.config.kv_max_keys,
                    max_bytes: self.config.kv_max_bytes,
                },
                departed_groups: None,
                connection: None,
            },
        }
    }
}
