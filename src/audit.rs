//! The audit trail (§10): who did what to which credential, with what outcome, when and from
//! where. Entries are written by the store in the same transaction as the action (see
//! `Store::apply`); this module names the parts. Never a secret: an actor is an id and a name,
//! an outcome a fixed word or error code.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An internal API key.
    Key {
        /// Its id.
        id: Uuid,
        /// Its name.
        name: String,
    },
    /// A connect session (a person in a browser).
    Session {
        /// Its id.
        id: Uuid,
    },
    /// hexbroker itself (background work, the command line).
    System,
}

impl Actor {
    /// `key`, `session` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Key { .. } => "key",
            Actor::Session { .. } => "session",
            Actor::System => "system",
        }
    }

    /// The id, or `system`: what `?actor=` matches.
    pub fn id_text(&self) -> String {
        match self {
            Actor::Key { id, .. } | Actor::Session { id } => id.to_string(),
            Actor::System => "system".into(),
        }
    }

    /// The key's name, where there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Actor::Key { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// What was done: §10's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new connection (or the same token connected again).
    Connect,
    /// A reconnect session replaced a connection's token.
    Reconnect,
    /// A verify asked for by a caller.
    Verify,
    /// A PATCH.
    Update,
    /// A delete.
    Delete,
    /// A key was made.
    KeyCreate,
    /// A key was revoked.
    KeyRevoke,
    /// A status changed by hexbroker's own finding (a proxied 401, a background check, expiry).
    StatusChange,
    /// A connect session was made.
    SessionCreate,
    /// An event was queued again.
    EventRedeliver,
    /// A webhook endpoint was registered (§13).
    WebhookEndpointCreate,
    /// A webhook endpoint was changed.
    WebhookEndpointUpdate,
    /// A webhook endpoint was deleted.
    WebhookEndpointDelete,
    /// A webhook endpoint's secret was rotated.
    WebhookEndpointRotateSecret,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 14] = [
        Action::Connect,
        Action::Reconnect,
        Action::Verify,
        Action::Update,
        Action::Delete,
        Action::KeyCreate,
        Action::KeyRevoke,
        Action::StatusChange,
        Action::SessionCreate,
        Action::EventRedeliver,
        Action::WebhookEndpointCreate,
        Action::WebhookEndpointUpdate,
        Action::WebhookEndpointDelete,
        Action::WebhookEndpointRotateSecret,
    ];

    /// Its name in the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Reconnect => "reconnect",
            Action::Verify => "verify",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::StatusChange => "status.change",
            Action::SessionCreate => "session.create",
            Action::EventRedeliver => "event.redeliver",
            Action::WebhookEndpointCreate => "webhook_endpoint.create",
            Action::WebhookEndpointUpdate => "webhook_endpoint.update",
            Action::WebhookEndpointDelete => "webhook_endpoint.delete",
            Action::WebhookEndpointRotateSecret => "webhook_endpoint.rotate_secret",
        }
    }
}

/// Where a request came from: its id and the client's address.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The `x-request-id` hexbroker gave it.
    pub request_id: Option<String>,
    /// The caller's own `X-Request-Id`, when it had the contract's shape (§5).
    pub caller_request_id: Option<String>,
    /// The peer's address.
    pub client_addr: Option<String>,
}

impl RequestInfo {
    /// The audit context of `actor` doing `action` in this request.
    pub fn audit(&self, actor: Actor, action: Action) -> AuditContext {
        AuditContext {
            actor,
            action,
            request_id: self.request_id.clone(),
            caller_request_id: self.caller_request_id.clone(),
            client_addr: self.client_addr.clone(),
        }
    }
}

/// Everything an audit entry records beside the connection and the outcome.
#[derive(Debug, Clone)]
pub struct AuditContext {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// The request, if there was one.
    pub request_id: Option<String>,
    /// The caller's own id for the request, if it sent one of the contract's shape.
    pub caller_request_id: Option<String>,
    /// The client's address, if there was one.
    pub client_addr: Option<String>,
}

impl AuditContext {
    /// hexbroker's own `action`, outside any request.
    pub fn system(action: Action) -> Self {
        Self { actor: Actor::System, action, request_id: None, caller_request_id: None, client_addr: None }
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditEntry {
    /// Its id (time-ordered).
    pub id: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
    /// `key`, `session` or `system`.
    pub actor_type: String,
    /// The key's or session's id, or `system`.
    pub actor_id: String,
    /// The key's name.
    pub actor_name: Option<String>,
    /// What was done.
    pub action: String,
    /// Which connection, if one.
    pub connection_id: Option<Uuid>,
    /// `ok`, or why not (an error code).
    pub outcome: String,
    /// The status before and after, for a change of status (e.g. `active -> invalid`).
    pub detail: Option<String>,
    /// The request's id (hexbroker's own).
    pub request_id: Option<String>,
    /// The caller's own `X-Request-Id`, when it had the contract's shape.
    pub caller_request_id: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The tenant (callers only see their own).
    #[serde(skip)]
    pub tenant: String,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only about this connection.
    pub connection_id: Option<Uuid>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor (an id, or `system`).
    pub actor: Option<String>,
    /// Only entries older than this id (the cursor).
    pub before_id: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}
