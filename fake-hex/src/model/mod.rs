//! The fake's whole state, kept in memory behind one mutex: workspaces (each with its users,
//! projects and runs), the tokens that open them, the requests received, and failures queued by
//! tests. Handlers read and change this model; nothing in a response is a canned string.

mod projects;
mod runs;
mod tokens;

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(crate) use projects::{decode_cursor, page, Project};
pub use runs::RunStatus;
pub(crate) use runs::{Run, RunPlan};
pub(crate) use tokens::{new_secret, Identity, Token, TokenOwner};
pub use tokens::{Scope, TokenKind, TokenSpec};

use crate::timestamp;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full path, including the workspace prefix (`/acme/api/v1/projects`).
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

/// A failure queued by [`crate::FakeHex::fail_next`].
#[derive(Clone, Debug)]
pub(crate) struct InjectedFailure {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
}

/// A user's role in a workspace, as Hex spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    Editor,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Editor => "EDITOR",
        }
    }
}

/// A member of a workspace.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: Uuid,
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    pub(crate) role: Role,
    pub(crate) last_login: DateTime<Utc>,
}

/// One Hex workspace (`acme` of `acme.hex.tech`).
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) org_id: Uuid,
    pub(crate) users: Vec<User>,
    pub(crate) projects: Vec<Project>,
    pub(crate) runs: Vec<Run>,
    next_seq: u64,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            org_id: Uuid::new_v4(),
            users: Vec::new(),
            projects: Vec::new(),
            runs: Vec::new(),
            next_seq: 1,
        }
    }

    /// The user with this email, created if needed. The workspace's first user is its admin
    /// (someone had to create it); later users are editors.
    pub(crate) fn user_for(&mut self, email: &str, name: Option<String>) -> Uuid {
        if let Some(user) = self.users.iter_mut().find(|u| u.email == email) {
            if name.is_some() {
                user.name = name;
            }
            return user.id;
        }
        let role = if self.users.is_empty() { Role::Admin } else { Role::Editor };
        let id = Uuid::new_v4();
        self.users.push(User { id, email: email.to_owned(), name, role, last_login: timestamp::now() });
        id
    }

    /// Adds a published project, created by the workspace's first user (or a placeholder admin
    /// when nobody has a token yet).
    pub(crate) fn add_project(&mut self, subdomain: &str, title: &str) -> Uuid {
        let creator_email = self
            .users
            .first()
            .map(|u| u.email.clone())
            .unwrap_or_else(|| format!("admin@{subdomain}.example.com"));
        let id = Uuid::new_v4();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.projects.push(Project {
            id,
            seq,
            title: title.to_owned(),
            creator_email,
            created_at: timestamp::now(),
            published_version: 1,
        });
        id
    }

    pub(crate) fn project(&self, id: Uuid) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
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
    next_token_id: u64,
}

impl Model {
    /// The workspace, created if it does not exist yet.
    pub(crate) fn workspace_entry(&mut self, subdomain: &str) -> &mut Workspace {
        self.workspaces.entry(subdomain.to_owned()).or_insert_with(Workspace::new)
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
    /// expired, revoked or belongs to another workspace.
    pub(crate) fn authenticate(&self, subdomain: &str, secret: &str, now: DateTime<Utc>) -> Option<Identity> {
        let token = self.tokens.get(secret)?;
        if !token.usable(subdomain, now) {
            return None;
        }
        Identity::from_token(token, self.workspaces.get(subdomain)?)
    }
}
