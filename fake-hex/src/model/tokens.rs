//! Tokens: the two kinds Hex issues (personal `hxtp_…` and workspace `hxtw_…`), their scopes,
//! expiry and revocation, and how a presented secret becomes an [`Identity`].

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{User, Workspace};

/// What a Hex workspace token may do; these mirror the scopes an admin ticks when making one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Projects: read.
    ProjectsRead,
    /// Projects: write.
    ProjectsWrite,
    /// Projects: run (and cancel runs).
    ProjectsRun,
    /// Projects: read queried tables (GetQueriedTables).
    ProjectsQueriedTables,
    /// Users: read.
    UsersRead,
    /// Users: write (deactivating users).
    UsersWrite,
    /// Groups.
    Groups,
    /// Collections.
    Collections,
    /// Data connections.
    DataConnections,
    /// Cells.
    Cells,
    /// Guides.
    Guides,
    /// Semantic projects.
    SemanticProjects,
    /// Agent threads and their topics. Hex's documents name no scope for threads; the fake gates
    /// them behind this one so that workspace tokens must be granted them explicitly.
    Threads,
}

impl Scope {
    /// Every scope, in declaration order.
    pub fn all() -> Vec<Scope> {
        vec![
            Scope::ProjectsRead,
            Scope::ProjectsWrite,
            Scope::ProjectsRun,
            Scope::ProjectsQueriedTables,
            Scope::UsersRead,
            Scope::UsersWrite,
            Scope::Groups,
            Scope::Collections,
            Scope::DataConnections,
            Scope::Cells,
            Scope::Guides,
            Scope::SemanticProjects,
            Scope::Threads,
        ]
    }
}

/// Who a token acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A personal access token (`hxtp_…`): acts as this user, created in the workspace if needed.
    Personal {
        /// The user's email, which identifies the user within the workspace.
        email: String,
        /// The user's display name (Hex allows none).
        name: Option<String>,
    },
    /// A workspace token (`hxtw_…`): acts for the workspace, limited to its scopes.
    Workspace,
}

/// Everything needed to mint a token with [`crate::FakeHex::add_token`].
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// Personal or workspace.
    pub kind: TokenKind,
    /// The scopes of a workspace token. Ignored for personal tokens, which act as their user and
    /// so may do everything.
    pub scopes: Vec<Scope>,
    /// When the token stops working; `None` never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Minted already revoked (as if regenerated in Hex's settings).
    pub revoked: bool,
}

impl TokenSpec {
    /// A personal token for `email` that expires in 30 days (a default Hex admins can choose).
    pub fn personal(email: &str) -> Self {
        TokenSpec {
            kind: TokenKind::Personal { email: email.to_owned(), name: None },
            scopes: Scope::all(),
            expires_at: Some(Utc::now() + TimeDelta::days(30)),
            revoked: false,
        }
    }

    /// A workspace token with these scopes that never expires.
    pub fn workspace(scopes: &[Scope]) -> Self {
        TokenSpec { kind: TokenKind::Workspace, scopes: scopes.to_vec(), expires_at: None, revoked: false }
    }
}

/// A stored token. Its `id` (not the secret) is the key per-token state such as rate-limit logs
/// hangs off.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) id: u64,
    pub(crate) subdomain: String,
    pub(crate) owner: TokenOwner,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) revoked: bool,
}

/// Whom a stored token acts as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TokenOwner {
    User(Uuid),
    Workspace,
}

impl Token {
    /// Whether the token may be used at `now` in workspace `subdomain`.
    pub(crate) fn usable(&self, subdomain: &str, now: DateTime<Utc>) -> bool {
        self.subdomain == subdomain && !self.revoked && self.expires_at.is_none_or(|exp| exp > now)
    }
}

/// The caller behind an accepted token.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// The stored token's id, for per-token accounting.
    pub(crate) token_id: u64,
    pub(crate) org_id: Uuid,
    /// The user a personal token acts as; `None` for workspace tokens.
    pub(crate) user: Option<User>,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

impl Identity {
    pub(crate) fn from_token(token: &Token, workspace: &Workspace) -> Option<Identity> {
        let user = match token.owner {
            // A deactivated user's tokens stop working at once.
            TokenOwner::User(id) => Some(workspace.users.iter().find(|u| u.id == id && u.active())?.clone()),
            TokenOwner::Workspace => None,
        };
        Some(Identity {
            token_id: token.id,
            org_id: workspace.org_id,
            user,
            scopes: token.scopes.clone(),
            expires_at: token.expires_at,
        })
    }
}

/// A fresh secret: the kind's prefix and 64 random hex digits.
pub(crate) fn new_secret(kind: &TokenKind) -> String {
    let prefix = match kind {
        TokenKind::Personal { .. } => "hxtp_",
        TokenKind::Workspace => "hxtw_",
    };
    format!("{prefix}{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}
