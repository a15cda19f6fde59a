//! Groups of users, and collections that gather projects and grant access to them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A named set of workspace members.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    /// Member user ids, in the order they were added, without repeats.
    pub(crate) members: Vec<Uuid>,
}

impl Group {
    pub(crate) fn add_member(&mut self, user: Uuid) {
        if !self.members.contains(&user) {
            self.members.push(user);
        }
    }
}

/// A collection of projects. Its access levels are free text in Hex's spec
/// (`CollectionAccess` is a plain string), so they are stored as given; `NONE` removes a grant.
#[derive(Clone, Debug)]
pub(crate) struct Collection {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// The creating user (id, email); `None` when a workspace token made it.
    pub(crate) creator: Option<(Uuid, String)>,
    pub(crate) users: Vec<(Uuid, String)>,
    pub(crate) groups: Vec<(Uuid, String)>,
    pub(crate) workspace_members: Option<String>,
}

/// Sets (or with `NONE` removes) a collection grant.
pub(crate) fn upsert_collection_grant(grants: &mut Vec<(Uuid, String)>, id: Uuid, access: &str) {
    grants.retain(|(existing, _)| *existing != id);
    if access != "NONE" {
        grants.push((id, access.to_owned()));
    }
}
