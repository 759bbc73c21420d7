//! Groups of one service: named sets of its connections, for broadcast.
//!
//! Both directions are kept (the members of each group, the groups of each
//! connection), so a broadcast finds its members and a connection that ends
//! leaves all its groups without a scan. Only non-empty groups exist.
//!
//! Members are kept in id order, so a page of them is found from its cursor
//! and copied, never the whole group: [`Groups::member_page`] costs the page,
//! not the group, and plain [`Groups::member_ids`] answers the first page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::connection::Connection;
use crate::protocol::{ApiError, ErrNo};

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// Most groups one connection can be in at once.
pub const MAX_GROUPS_PER_CONNECTION: usize = 64;

/// Most member ids one `members` or `members-page` call answers.
pub const MEMBERS_PAGE_MAX: usize = 1000;

/// A page of a group's member ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    /// Connection ids in byte order.
    pub members: Vec<String>,
    /// The last id of this page when more follow, to continue after;
    /// `None` on the last page.
    pub cursor: Option<String>,
}

/// Checks a group name against the limits.
pub(crate) fn check_group(group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ErrNo::INVALID_GROUP.with("empty name"));
    }
    if group.len() > MAX_GROUP_NAME_BYTES {
        return Err(ErrNo::INVALID_GROUP.with(format_args!(
            "name of {} bytes, longer than {MAX_GROUP_NAME_BYTES}",
            group.len()
        )));
    }
    Ok(())
}

/// The groups of one service.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Members of each non-empty group, by connection id.
    members: HashMap<Arc<str>, BTreeMap<Arc<str>, Arc<Connection>>>,
    /// The groups of each connection that is in at least one.
    memberships: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl Groups {
    /// Adds `connection` to `group`, and gives the group's name; `None`
    /// when it was in already (joining a group again is a no-op).
    pub fn join(
        &mut self,
        group: &str,
        connection: &Arc<Connection>,
    ) -> Result<Option<Arc<str>>, ApiError> {
        let groups = self.memberships.entry(connection.id.clone()).or_default();
        if groups.contains(group) {
            return Ok(None);
        }
        if groups.len() >= MAX_GROUPS_PER_CONNECTION {
            return Err(ErrNo::TOO_MANY_GROUPS.with(MAX_GROUPS_PER_CONNECTION));
        }
        let group: Arc<str> = group.into();
        groups.insert(group.clone());
        self.members
            .entry(group.clone())
            .or_default()
            .insert(connection.id.clone(), connection.clone());
        Ok(Some(group))
    }

    /// Takes connection `id` out of `group`; whether it was in.
    pub fn leave(&mut self, group: &str, id: &str) -> bool {
        let was_member = self
            .memberships
            .get_mut(id)
            .is_some_and(|groups| groups.remove(group));
        if !was_member {
            return false;
        }
        if self.memberships.get(id).is_some_and(BTreeSet::is_empty) {
            self.memberships.remove(id);
        }
        self.remove_member(group, id);
        true
    }

    /// Takes connection `id` out of every group; the groups it was in.
    pub fn leave_all(&mut self, id: &str) -> Vec<Arc<str>> {
        let Some(groups) = self.memberships.remove(id) else {
            return Vec::new();
        };
        for group in &groups {
            self.remove_member(group, id);
        }
        groups.into_iter().collect()
    }

    fn remove_member(&mut self, group: &str, id: &str) {
        if let Some(members) = self.members.get_mut(group) {
            members.remove(id);
            if members.is_empty() {
                self.members.remove(group);
            }
        }
    }

    /// The members of `group` but `except`.
    pub fn members(&self, group: &str, except: Option<&str>) -> Vec<Arc<Connection>> {
        self.members
            .get(group)
            .map(|members| {
                members
                    .values()
                    .filter(|member| except != Some(&*member.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ids of the first [`MEMBERS_PAGE_MAX`] members of `group`, sorted.
    pub fn member_ids(&self, group: &str) -> Vec<String> {
        self.member_page(group, None, MEMBERS_PAGE_MAX).members
    }

    /// Up to `limit` (at most [`MEMBERS_PAGE_MAX`]) ids of members of
    /// `group` after `cursor`, sorted.
    pub fn member_page(&self, group: &str, cursor: Option<&str>, limit: usize) -> MemberPage {
        let Some(members) = self.members.get(group) else {
            return MemberPage::default();
        };
        let limit = limit.clamp(1, MEMBERS_PAGE_MAX);
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut after = members
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(id, _)| id.to_string());
        let page: Vec<String> = after.by_ref().take(limit).collect();
        let cursor = match after.next() {
            Some(_) => page.last().cloned(),
            None => None,
        };
        MemberPage {
            members: page,
            cursor,
        }
    }

    /// The groups connection `id` is in.
    pub fn of(&self, id: &str) -> Option<&BTreeSet<Arc<str>>> {
        self.memberships.get(id)
    }

    /// Number of non-empty groups.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether `group` has a member.
    pub fn has_members(&self, group: &str) -> bool {
        self.members.contains_key(group)
    }

    /// The names of the groups that have a member.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.members.keys()
    }
}
