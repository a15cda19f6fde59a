//! Connect sessions (§6): one-time links that let a person connect (or reconnect) a token in a
//! browser, and what completing one writes.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Connection, NewConnection, TokenReplacement};

/// A connect session (never its token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    /// Its id.
    pub id: Uuid,
    /// The tenant it connects into.
    pub tenant: String,
    /// The end user it connects for.
    pub end_user_id: String,
    /// That person's email, if the app gave it.
    pub end_user_email: Option<String>,
    /// For a reconnect session: the connection whose token it replaces.
    pub connection_id: Option<Uuid>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The keyed hash of its token.
    pub token_hash: Vec<u8>,
    /// The end user.
    pub end_user_id: String,
    /// The end user's email.
    pub end_user_email: Option<String>,
    /// For reconnects: the connection.
    pub connection_id: Option<Uuid>,
    /// The API key that made it.
    pub created_by_key: Uuid,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// What a completed session writes.
#[derive(Debug)]
pub enum SessionWrite {
    /// A new connection (or, for a token already connected, the existing one).
    Create(NewConnection),
    /// New credentials for the session's connection.
    Replace(TokenReplacement),
}

/// How completing a session ended.
#[derive(Debug)]
pub enum SessionOutcome {
    /// A new connection.
    Created(Connection),
    /// The token was already connected for this end user; nothing new was stored.
    Existing(Connection),
    /// The connection's token was replaced.
    Replaced(Connection),
    /// Someone else used (or the clock expired) the session first; nothing was written.
    Unavailable,
    /// The reconnect target is gone; nothing was written.
    ConnectionGone,
    /// The new token is already another connection of this end user; nothing was written.
    TokenTaken,
    /// A reconnect to another Hex workspace (§6 step 5); nothing was written, and the session
    /// stays usable so the person can paste the right token.
    WorkspaceMismatch,
}
