//! Workspace members and their roles. A deactivated user stays in the model (so ids keep
//! resolving) but leaves the users list, and their personal tokens stop working at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A user's role in a workspace, as Hex spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    // Declared from least to most privileged, so roles compare by rank.
    Editor,
    Manager,
    Admin,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Manager => "MANAGER",
            Role::Editor => "EDITOR",
        }
    }
}

/// A member of a workspace.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    pub(crate) role: Role,
    /// `None` until the user signs in (users added without a token never have).
    pub(crate) last_login: Option<DateTime<Utc>>,
    pub(crate) deactivated: bool,
}

impl User {
    /// Whether the user may act (and their tokens work).
    pub(crate) fn active(&self) -> bool {
        !self.deactivated
    }
}
