//! Named groups of the service's connections, for broadcast.
//!
//! A connection joins any number of groups (at most 64) and leaves them all
//! when it ends, before its cleanup handler runs; in cleanup,
//! [`groups_of`] of the ending connection still answers the groups it was in.
//! Group names are 1 to 128 bytes.
//!
//! An anonymous chat room in three calls:
//!
//! ```no_run
//! use wasmgate_guest::{groups, Payload};
//!
//! # let me = "q83vEjRWeJq83vEjRWeJqw==";
//! groups::join("room:lobby", me)?;                                   // register
//! groups::broadcast("room:lobby", Payload::from("hi all"), Some(me))?; // transfer
//! for room in groups::groups_of(me)? {                               // cleanup
//!     groups::broadcast(&room, Payload::from("someone left"), None)?;
//! }
//! # Ok::<(), wasmgate_guest::GatewayError>(())
//! ```
//!
//! Outside a wasm gateway every call answers
//! [`GatewayError::NOT_IN_GATEWAY`](crate::GatewayError::NOT_IN_GATEWAY).

use crate::{GatewayError, Payload};

/// Adds a live connection of this service to `group`.
pub fn join(group: &str, connection_id: &str) -> Result<(), GatewayError> {
    imp::join(group, connection_id)
}

/// Removes a connection from `group`; `true` when it was a member.
pub fn leave(group: &str, connection_id: &str) -> Result<bool, GatewayError> {
    imp::leave(group, connection_id)
}

/// Most ids [`members`] and one [`members_page`] answer.
pub const MEMBERS_PAGE_MAX: u32 = 1000;

/// One page of a group's members, from [`members_page`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberPage {
    /// Connection ids in byte order.
    pub members: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

/// The connection ids in `group`, sorted (empty for an unknown group): at
/// most the first [`MEMBERS_PAGE_MAX`]. Read a larger group with
/// [`members_page`] or [`all_members`].
pub fn members(group: &str) -> Result<Vec<String>, GatewayError> {
    imp::members(group)
}

/// Up to `limit` (at most [`MEMBERS_PAGE_MAX`]) connection ids in `group`,
/// sorted, after `cursor` (`None` for the first page, then the previous
/// page's cursor).
pub fn members_page(
    group: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<MemberPage, GatewayError> {
    imp::members_page(group, cursor, limit)
}

/// Every connection id in `group`, sorted, reading page after page. A
/// member that joins or leaves meanwhile may or may not be listed.
pub fn all_members(group: &str) -> Result<Vec<String>, GatewayError> {
    let mut members = Vec::new();
    let mut cursor = None;
    loop {
        let page = members_page(group, cursor.as_deref(), MEMBERS_PAGE_MAX)?;
        members.extend(page.members);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(members),
        }
    }
}

/// The groups a connection is in, sorted.
pub fn groups_of(connection_id: &str) -> Result<Vec<String>, GatewayError> {
    imp::groups_of(connection_id)
}

/// Sends one message to every member of `group` except `except` (usually
/// the sender); returns how many connections it was queued for. The gateway
/// shares the message between the members instead of copying it.
pub fn broadcast(group: &str, data: Payload, except: Option<&str>) -> Result<u32, GatewayError> {
    imp::broadcast(group, data, except)
}

/// [`broadcast`] of a text message.
pub fn broadcast_text(group: &str, text: &str, except: Option<&str>) -> Result<u32, GatewayError> {
    broadcast(group, Payload::Text(text.to_owned()), except)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::MemberPage;
    use crate::bindings::wasmgate::gateway::groups;
    use crate::bindings::wasmgate::gateway::types::Payload as RawPayload;
    use crate::host::gateway_error;
    use crate::{GatewayError, Payload};

    pub(super) fn join(group: &str, connection_id: &str) -> Result<(), GatewayError> {
        groups::join(group, connection_id).map_err(gateway_error)
    }

    pub(super) fn leave(group: &str, connection_id: &str) -> Result<bool, GatewayError> {
        groups::leave(group, connection_id).map_err(gateway_error)
    }

    pub(super) fn members(group: &str) -> Result<Vec<String>, GatewayError> {
        groups::members(group).map_err(gateway_error)
    }

    pub(super) fn members_page(
        group: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemberPage, GatewayError> {
        let page = groups::members_page(group, cursor, limit).map_err(gateway_error)?;
        Ok(MemberPage {
            members: page.members,
            cursor: page.cursor,
        })
    }

    pub(super) fn groups_of(connection_id: &str) -> Result<Vec<String>, GatewayError> {
        groups::groups_of(connection_id).map_err(gateway_error)
    }

    pub(super) fn broadcast(
        group: &str,
        data: Payload,
        except: Option<&str>,
    ) -> Result<u32, GatewayError> {
        let data = match data {
            Payload::Text(text) => RawPayload::Text(text),
            Payload::Binary(bytes) => RawPayload::Binary(bytes),
        };
        groups::broadcast(group, &data, except).map_err(gateway_error)
    }
}

/// Stand-ins for native builds: there is no gateway to hold groups.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::MemberPage;
    use crate::host::not_in_gateway;
    use crate::{GatewayError, Payload};

    pub(super) fn join(_group: &str, _connection_id: &str) -> Result<(), GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn leave(_group: &str, _connection_id: &str) -> Result<bool, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn members(_group: &str) -> Result<Vec<String>, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn members_page(
        _group: &str,
        _cursor: Option<&str>,
        _limit: u32,
    ) -> Result<MemberPage, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn groups_of(_connection_id: &str) -> Result<Vec<String>, GatewayError> {
        Err(not_in_gateway())
    }

    pub(super) fn broadcast(
        _group: &str,
        _data: Payload,
        _except: Option<&str>,
    ) -> Result<u32, GatewayError> {
        Err(not_in_gateway())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn calls_outside_a_gateway_fail_politely() {
        let code = GatewayError::NOT_IN_GATEWAY;
        assert_eq!(join("g", "id").unwrap_err().err_no, code);
        assert_eq!(broadcast_text("g", "hi", None).unwrap_err().err_no, code);
        assert_eq!(groups_of("id").unwrap_err().err_no, code);
        assert_eq!(members_page("g", None, 10).unwrap_err().err_no, code);
        assert_eq!(all_members("g").unwrap_err().err_no, code);
    }
}
