//! `wasmgate:gateway/host`: push to, close or route to connections of the
//! calling service, and log. Push, close and route reach connections
//! through the one routing function, as the reverse-push endpoint does.

use super::bindings::wasmgate::gateway::host::Host;
use super::{to_payload, to_wit_error, wit};
use crate::metrics::PushSource;
use crate::protocol::{ErrNo, PushRequest};
use crate::state::route;
use crate::wasm::capture::{LogLevel, OutputSource};
use crate::wasm::store::EventState;

impl EventState {
    async fn route_request(&mut self, request: PushRequest) -> Result<(), wit::GatewayError> {
        let routed = route(&*self.broker, &self.service, request).await;
        crate::metrics::global().push(PushSource::HostCall, &routed);
        routed.map(|_| ()).map_err(to_wit_error)
    }
}

impl Host for EventState {
    async fn push(
        &mut self,
        connection_id: String,
        data: wit::Payload,
    ) -> Result<(), wit::GatewayError> {
        let payload = to_payload(data);
        self.check_size(&payload)?;
        self.route_request(PushRequest::Send {
            connection_id,
            payload,
        })
        .await
    }

    async fn close(&mut self, connection_id: String) -> Result<(), wit::GatewayError> {
        self.route_request(PushRequest::Close { connection_id })
            .await
    }

    /// The request is parsed as the reverse-push route parses a body, and
    /// refused (2006) unparsed when longer than that route would read.
    async fn route(&mut self, request: String) -> Result<(), wit::GatewayError> {
        let request =
            PushRequest::parse(request.as_bytes(), self.max_message_bytes).map_err(to_wit_error)?;
        self.route_request(request).await
    }

    fn set_attributes(&mut self, attributes: String) -> Result<(), wit::GatewayError> {
        let attributes = crate::protocol::attributes_from_json(&attributes)
            .map_err(|message| to_wit_error(ErrNo::INVALID_ATTRIBUTES.with(message)))?;
        // Under `wasmgate invoke` there is no connection to keep them.
        if let Some(connection) = self.state.connection.as_ref().and_then(|c| c.upgrade()) {
            connection.set_attributes((&*attributes != "{}").then_some(attributes));
        }
        Ok(())
    }

    fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => LogLevel::Trace,
            wit::LogLevel::Debug => LogLevel::Debug,
            wit::LogLevel::Info => LogLevel::Info,
            wit::LogLevel::Warn => LogLevel::Warn,
            wit::LogLevel::Error => LogLevel::Error,
        };
        self.record(OutputSource::Log(level), &message);
    }
}
