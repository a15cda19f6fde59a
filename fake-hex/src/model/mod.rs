//! The fake's whole state, kept in memory behind one mutex: workspaces (each with its users,
//! projects, runs, cells, groups, collections, data connections, threads, guides, semantic
//! projects and presigned URLs), the tokens that open them, rate-limit logs, the requests
//! received, and failures queued by tests. Handlers read and change this model; nothing in a
//! response is a canned string.

mod cells;
mod connections;
mod embedding;
mod groups;
mod guides;
mod pagination;
mod projects;
mod rate_limits;
mod runs;
mod semantic;
mod threads;
mod tokens;
mod users;
mod workspace;

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

pub(crate) use cells::{tables_in, Cell, CellType};
pub(crate) use connections::{
    connection_type, resolve_schema_object, DataConnection, TYPES as CONNECTION_TYPES,
};
pub(crate) use embedding::PresignedUrl;
pub(crate) use groups::{upsert_collection_grant, Collection, Group};
pub(crate) use guides::Guide;
pub(crate) use pagination::{decode_cursor, paginate, PageRequest, Start};
pub(crate) use projects::{upsert_grant, Access, Project};
pub(crate) use rate_limits::Limiter;
pub use rate_limits::{RateGroup, RateLimits, Window};
pub use runs::RunStatus;
pub(crate) use runs::{Notification, Run, RunPlan};
pub(crate) use semantic::SemanticProject;
pub(crate) use threads::{reply_to, title_from, Author, Message, Resource, Thread, Topic};
pub(crate) use tokens::{new_secret, Identity, Token, TokenOwner};
pub use tokens::{Scope, TokenKind, TokenSpec};
pub(crate) use users::{Role, User};
pub(crate) use workspace::Workspace;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full path as received: with the workspace prefix (`/acme/api/v1/projects`), or from
    /// the root for a workspace served there (`/api/v1/projects`).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Every header, names in lowercase, values as (lossy) text, in the order received.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body received (for the echo instrument, counted as they stream).
    pub body_len: u64,
}

impl RecordedRequest {
    /// The first value of header `name` (give it in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A failure queued by [`crate::FakeHex::fail_next`], or a canned answer queued by
/// [`crate::FakeHex::answer_next`] (then `canned` holds its headers and body).
#[derive(Clone, Debug)]
pub(crate) struct InjectedFailure {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) canned: Option<(Vec<(String, String)>, String)>,
}

/// The fake's state.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Keyed by subdomain.
    pub(crate) workspaces: HashMap<String, Workspace>,
    /// Keyed by secret.
    pub(crate) tokens: HashMap<String, Token>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) failures: VecDeque<InjectedFailure>,
    pub(crate) run_plan: RunPlan,
    pub(crate) rate_limits: RateLimits,
    pub(crate) limiter: Limiter,
    next_token_id: u64,
}

impl Model {
    /// The workspace, created if it does not exist yet.
    pub(crate) fn workspace_entry(&mut self, subdomain: &str) -> &mut Workspace {
        self.workspaces.entry(subdomain.to_owned()).or_insert_with(Workspace::new)
    }

    /// A workspace that requests are addressed to (the front door checked that it exists).
    pub(crate) fn ws(&self, subdomain: &str) -> &Workspace {
        self.workspaces.get(subdomain).expect("the front door checked the workspace")
    }

    /// [`Model::ws`], to change.
    pub(crate) fn ws_mut(&mut self, subdomain: &str) -> &mut Workspace {
        self.workspaces.get_mut(subdomain).expect("the front door checked the workspace")
    }

    /// Stores a token minted from `spec` and returns its secret.
    pub(crate) fn add_token(&mut self, subdomain: &str, spec: TokenSpec) -> String {
        let workspace = self.workspace_entry(subdomain);
        let (owner, scopes) = match &spec.kind {
            TokenKind::Personal { email, name } => {
                (TokenOwner::User(workspace.user_for(email, name.clone())), Scope::all())
            }
            TokenKind::Workspace => (TokenOwner::Workspace, spec.scopes.clone()),
        };
        self.next_token_id += 1;
        let secret = new_secret(&spec.kind);
        let token = Token {
            id: self.next_token_id,
            subdomain: subdomain.to_owned(),
            owner,
            scopes,
            expires_at: spec.expires_at,
            revoked: spec.revoked,
        };
        self.tokens.insert(secret.clone(), token);
        secret
    }

    /// Who `secret` acts as in workspace `subdomain` at `now`; `None` when the token is unknown,
    /// expired, revoked, belongs to another workspace or to a deactivated user.
    pub(crate) fn authenticate(&self, subdomain: &str, secret: &str, now: DateTime<Utc>) -> Option<Identity> {
        let token = self.tokens.get(secret)?;
        if !token.usable(subdomain, now) {
            return None;
        }
        Identity::from_token(token, self.workspaces.get(subdomain)?)
    }
}
