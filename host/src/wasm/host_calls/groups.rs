//! `wasmgate:gateway/groups`: named sets of the calling service's
//! connections, and broadcast to them through the one routing function.

use super::bindings::wasmgate::gateway::groups::{Host, MemberPage};
use super::{to_payload, to_wit_error, wit};
use crate::protocol::PushRequest;
use crate::state::route;
use crate::wasm::store::EventState;

impl Host for EventState {
    async fn join(
        &mut self,
        group: String,
        connection_id: String,
    ) -> Result<(), wit::GatewayError> {
        self.broker
            .join(&self.service, &group, &connection_id)
            .await
            .map_err(to_wit_error)
    }

    async fn leave(
        &mut self,
        group: String,
        connection_id: String,
    ) -> Result<bool, wit::GatewayError> {
        self.broker
            .leave(&self.service, &group, &connection_id)
            .await
            .map_err(to_wit_error)
    }

    async fn members(&mut self, group: String) -> Result<Vec<String>, wit::GatewayError> {
        self.broker
            .members(&self.service, &group)
            .await
            .map_err(to_wit_error)
    }

    async fn members_page(
        &mut self,
        group: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<MemberPage, wit::GatewayError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = self
            .broker
            .members_page(&self.service, &group, cursor.as_deref(), limit)
            .await
            .map_err(to_wit_error)?;
        Ok(MemberPage {
            members: page.members,
            cursor: page.cursor,
        })
    }

    async fn groups_of(&mut self, connection_id: String) -> Result<Vec<String>, wit::GatewayError> {
        // In cleanup the connection has left its groups already; it still
        // learns which they were.
        if let Some(departed) = &self.state.departed_groups {
            if *connection_id == *self.connection_id {
                let mut groups: Vec<String> = departed.iter().map(|g| g.to_string()).collect();
                groups.sort();
                return Ok(groups);
            }
        }
        self.broker
            .groups_of(&self.service, &connection_id)
            .await
            .map_err(to_wit_error)
    }

    async fn broadcast(
        &mut self,
        group: String,
        data: wit::Payload,
        except_id: Option<String>,
    ) -> Result<u32, wit::GatewayError> {
        let payload = to_payload(data);
        self.check_size(&payload)?;
        let request = PushRequest::Broadcast {
            group,
            payload,
            except: except_id,
        };
        let routed = route(&*self.broker, &self.service, request).await;
        crate::metrics::global().push(crate::metrics::PushSource::HostCall, &routed);
        routed
            .map(|reached| u32::try_from(reached).unwrap_or(u32::MAX))
            .map_err(to_wit_error)
    }
}
