//! Storage: the [`Store`] trait and its two backends, Postgres (production) and SQLite (the
//! embedded default). Plain data in, plain data out; no HTTP types.
//!
//! Both backends share one set of SQL statements, one module per table under `sql/`, and one
//! implementation that runs them (`backend.rs`, `writes.rs`, `webhooks.rs`, `verify.rs`); what a
//! write makes stale is said beside it (`effects.rs`).

mod backend;
mod console;
mod effects;
mod pgarray;
mod postgres;
mod requestlog;
mod session;
mod sql;
mod sqlite;
mod verify;
mod webhooks;
mod writes;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::audit::{AuditContext, AuditEntry, AuditFilter};
use crate::crypto::Sealed;
use crate::events::{EventFilter, EventRecord};
use crate::hex::TokenType;
use crate::lifecycle::{Change, Status};
use crate::scopes::Scopes;

pub use console::{ConsoleSession, ConsoleStore, NewConsoleSession};
pub use effects::{Forget, Stale};
pub use postgres::PgStore;
pub use requestlog::{
    id_at, id_bound, id_with, HourCount, NewRequest, RequestCounts, RequestFilter, RequestLogStore,
    RequestRecord, StatusFilter,
};
pub use session::{NewSession, Session, SessionOutcome, SessionWrite};
pub use sqlite::{database_file as sqlite_database_file, SqliteStore};
pub use verify::{DueCheck, VerifyStore, EXPIRED_REASON};
pub use webhooks::WebhookStore;

/// A storage failure. Callers treat it as internal; its text may name tables, never values.
#[derive(Debug, thiserror::Error)]
#[error("database error: {0}")]
pub struct StoreError(#[from] sqlx::Error);

impl StoreError {
    /// Whether the database could not be reached or went away mid-query (no connection within
    /// the pool's acquire timeout, a broken socket, the server shutting down or refusing
    /// connections): the request may succeed once it is back, so callers answer 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match &self.0 {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
            // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin/crash shutdown,
            // cannot connect now), 53300 (too many connections).
            sqlx::Error::Database(e) => e.code().is_some_and(|code| {
                code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        }
    }
}

/// `Result` for store operations.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A shared handle to whichever backend is configured.
pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `url` (postgres://… or sqlite:…) and applies its migrations; no cache.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url, max_connections).await?))
    } else {
        Ok(Arc::new(PgStore::open(url, max_connections).await?))
    }
}

/// The current time, truncated to milliseconds so both backends and JSON agree on it.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Every storage operation hexbroker performs, on either backend.
///
/// # Recording a change to a connection
/// Every change to a connection goes through [`Store::apply`] (or [`Store::insert_connection`]
/// and [`Store::complete_session`] for new connections and reconnects). In ONE transaction it
/// locks the row, checks the caller's [`Expect`]ations, asks [`lifecycle::transition`] what the
/// change does, writes the row, the outbox event(s) the table names, the audit entry (from the
/// [`AuditContext`]), and what it made stale: (Postgres) the `pg_notify` that makes every other
/// replica drop its cached copy at commit; after the commit this replica's caches drop the entry
/// and the delivery worker is woken (see `effects.rs`). Background work passes `AuditContext::system(Action::StatusChange)`; a conditional
/// change (the proxy's 401 rule, a background check) passes `Expect { token_nonce, status }` and
/// gets [`Applied::Unmet`] when the row moved on meanwhile, with nothing written.
#[async_trait::async_trait]
pub trait Store: VerifyStore + WebhookStore + RequestLogStore + ConsoleStore + Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    /// A named secret sealed by the keyring (e.g. the keyed-hash key).
    async fn sealed_secret(&self, name: &str) -> StoreResult<Option<Sealed>>;
    /// Stores a named sealed secret unless one is there already (first writer wins).
    async fn insert_sealed_secret_if_absent(&self, name: &str, sealed: &Sealed) -> StoreResult<()>;

    /// Replaces a named sealed secret, if it is still `old` (for re-encryption).
    async fn reseal_secret(&self, name: &str, old: &Sealed, new: &Sealed) -> StoreResult<bool>;
    /// Up to `limit` connections' sealed tokens that want re-sealing: not sealed by `key_id`, or
    /// sealed the earlier way (seal version 1); after `after` in id order.
    async fn tokens_not_sealed_by(
        &self,
        key_id: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<SealedToken>>;
    /// How many connections' tokens want re-sealing (as [`Store::tokens_not_sealed_by`] picks).
    async fn count_tokens_not_sealed_by(&self, key_id: &str) -> StoreResult<i64>;
    /// Replaces connections' sealed tokens in one transaction, each only if it is still `old` (a
    /// token replaced meanwhile is left alone: it is already under the active key); returns how
    /// many were replaced.
    async fn reseal_tokens(&self, batch: &[Reseal]) -> StoreResult<u64>;

    /// Stores a new API key, with its `key.create` audit entry.
    async fn insert_api_key(&self, key: &NewApiKey, audit: &AuditContext) -> StoreResult<ApiKey>;
    /// The key with this hash, revoked or not.
    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>>;
    /// Every key, newest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked (audited); false when there is no such key or it was revoked already.
    async fn revoke_api_key(&self, id: Uuid, audit: &AuditContext) -> StoreResult<bool>;
    /// Revokes a connection key of `connection_id` in `tenant` (audited); false when there is
    /// none to revoke.
    async fn revoke_connection_key(
        &self,
        tenant: &str,
        connection_id: Uuid,
        key_id: Uuid,
        audit: &AuditContext,
    ) -> StoreResult<bool>;

    /// Stores a new connection with its `connection.created` event and audit entry; when the
    /// same token is already connected for the same tenant, end user and workspace, returns that
    /// connection instead and writes nothing.
    async fn insert_connection(&self, new: &NewConnection, audit: &AuditContext) -> StoreResult<Inserted>;
    /// The connection already holding this token for this tenant, end user and workspace.
    async fn connection_by_fingerprint(
        &self,
        tenant: &str,
        end_user_id: &str,
        subdomain: &str,
        fingerprint: &[u8],
    ) -> StoreResult<Option<Connection>>;
    /// A connection in `tenant`.
    async fn connection(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Connection>>;
    /// A connection in `tenant` with its sealed token, for the proxy (shared, so that a cache
    /// can hand it out without copying).
    async fn connection_with_token(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Arc<(Connection, Sealed)>>>;
    /// A page of connections in `tenant`, newest first.
    async fn list_connections(&self, tenant: &str, filter: &ConnectionFilter)
        -> StoreResult<Vec<Connection>>;
    /// Records one change to a connection, with its events, audit entry and cache notice, in one
    /// transaction (see the trait's documentation).
    async fn apply(
        &self,
        tenant: &str,
        id: Uuid,
        change: &Change<'_>,
        audit: &AuditContext,
        expect: &Expect,
    ) -> StoreResult<Applied>;
    /// Records an action that changed nothing (a refusal), for the audit trail.
    async fn record_audit(
        &self,
        tenant: &str,
        connection_id: Option<Uuid>,
        audit: &AuditContext,
        outcome: &str,
    ) -> StoreResult<()>;

    /// How many connections there are in each status (`expired` derived from the expiry), across
    /// all tenants.
    async fn count_connections_by_status(&self) -> StoreResult<Vec<(Status, i64)>>;

    /// From now on tells `forget` what each write of this store made stale (after its commit,
    /// before it returns) and, on Postgres, what each other replica's did (as their notices
    /// arrive; everything, after a lost listening connection). See `effects.rs`. Called once.
    async fn announce_to(&self, forget: Arc<dyn Forget>) -> StoreResult<()>;

    /// Stores a new connect session, with its `session.create` audit entry.
    async fn insert_session(&self, new: &NewSession, audit: &AuditContext) -> StoreResult<Session>;
    /// The session with this token hash, used or not.
    async fn session_by_hash(&self, hash: &[u8]) -> StoreResult<Option<Session>>;
    /// In one transaction: claims the session (unused and unexpired, decided by the database, so
    /// two racing requests cannot both win) and writes the connection it produced, with its
    /// events and audit entry. A reconnect to another workspace writes nothing and leaves the
    /// session usable ([`SessionOutcome::WorkspaceMismatch`]).
    async fn complete_session(
        &self,
        session: &Session,
        write: &SessionWrite,
        origin: Option<&str>,
        audit: &AuditContext,
    ) -> StoreResult<SessionOutcome>;

    /// A page of `tenant`'s events, newest first.
    async fn list_events(&self, tenant: &str, filter: &EventFilter) -> StoreResult<Vec<EventRecord>>;
    /// Queues an event of `tenant` again, each of its deliveries (audited); false when there is none.
    async fn redeliver_event(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool>;
    /// Woken after a commit that recorded an event (on Postgres, by any replica's).
    async fn event_signal(&self) -> StoreResult<Arc<tokio::sync::Notify>>;

    /// A page of `tenant`'s audit entries, newest first.
    async fn list_audit(&self, tenant: &str, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// Deletes audit entries and delivered events made before `before`; returns how many.
    async fn prune(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// What a conditional [`Store::apply`] requires of the row; unset fields require nothing.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The row still holds the token sealed with this nonce (the token a call used).
    pub token_nonce: Option<Vec<u8>>,
    /// The row's stored status is this (not the `expired` derived from a past expiry: a row that
    /// still says `active` past its expiry is what [`Change::Expired`] is for).
    pub status: Option<Status>,
}

/// How [`Store::apply`] ended.
#[derive(Debug)]
pub enum Applied {
    /// Written: the connection afterwards (for a delete, as it was).
    Done(Connection),
    /// An expectation did not hold; nothing was written. The connection as it is.
    Unmet(Connection),
    /// No such connection in the tenant.
    Missing,
    /// A reconnect to another Hex workspace (§6 step 5); nothing was written.
    WorkspaceMismatch(Connection),
    /// The new token is already another connection of this end user; nothing was written.
    TokenTaken,
}

impl Applied {
    /// The connection, when the change was written.
    pub fn done(self) -> Option<Connection> {
        match self {
            Applied::Done(c) => Some(c),
            _ => None,
        }
    }
}

/// A connection's sealed token with the fields its seal binds, for re-sealing.
#[derive(Debug, Clone)]
pub struct SealedToken {
    /// The connection.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// Its subdomain.
    pub subdomain: String,
    /// Its own Hex origin, if it has one.
    pub hex_url: Option<String>,
    /// Its sealed token.
    pub sealed: Sealed,
}

/// One token to re-seal: the same token, sealed anew.
#[derive(Debug, Clone)]
pub struct Reseal {
    /// The connection.
    pub id: Uuid,
    /// Its sealed token as read (the update applies only while the row still holds it).
    pub old: Sealed,
    /// The token sealed under the active key.
    pub new: Sealed,
}

/// The scopes a credential carries, stored as comma-separated names.
impl TryFrom<String> for Scopes {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// An internal API key (never its secret).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ApiKey {
    /// The key's id.
    pub id: Uuid,
    /// The tenant it acts in.
    pub tenant: String,
    /// A name for people.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// What it may do.
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    /// For connection keys: the one connection it reaches.
    pub connection_id: Option<Uuid>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A key to store: everything but the timestamps the store sets.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// The first characters of its secret.
    pub prefix: String,
    /// The keyed hash of its secret.
    pub hash: Vec<u8>,
    /// Its scopes.
    pub scopes: Scopes,
    /// The connection it is bound to, for connection keys.
    pub connection_id: Option<Uuid>,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What Hex told us about a token when it accepted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HexIdentity {
    /// The workspace (org) id.
    pub org_id: Option<String>,
    /// The user's email (personal tokens).
    pub user_email: Option<String>,
    /// When the token expires, if Hex said.
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// A stored connection (never its token).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Connection {
    /// Its id.
    pub id: Uuid,
    /// The tenant it belongs to (not shown to callers: they only see their own).
    #[serde(skip)]
    pub tenant: String,
    /// The calling app's id for the person who connected.
    pub end_user_id: String,
    /// That person's email, if the app gave it.
    pub end_user_email: Option<String>,
    /// A name for people.
    pub label: Option<String>,
    /// The calling app's own data.
    #[sqlx(json)]
    pub metadata: serde_json::Value,
    /// The Hex workspace subdomain (for a connection on one of the operator's own Hex origins,
    /// that origin's host name).
    pub subdomain: String,
    /// The connection's own Hex origin (one of `HEXBROKER_HEX_HOSTS`); `None` when its origin
    /// comes from the template. Serialised (into event payloads) only when set; the route's
    /// view shows every connection's `hex_url`, filling in the template's origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hex_url: Option<String>,
    /// The kind of token, from its prefix.
    pub token_type: TokenType,
    /// The token's prefix and last four characters.
    pub token_hint: String,
    /// Hex's org id.
    pub hex_org_id: Option<String>,
    /// The Hex user's email (personal tokens).
    pub hex_user_email: Option<String>,
    /// When the token expires, if known.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// `active`, `invalid` or `expired`.
    pub status: Status,
    /// Why it is not active.
    pub status_reason: Option<String>,
    /// When Hex last accepted the token.
    pub last_verified_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Calls a minute this connection may send to Hex; `None` means the deployment's default.
    pub rate_limit_per_minute: Option<i32>,
    /// When the token is next checked against Hex in the background, if scheduled.
    pub next_verify_at: Option<DateTime<Utc>>,
    /// The last proxied call, to the minute (flushed from memory, so up to a minute behind).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A change to a connection: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionChange {
    /// A new label, or none.
    pub label: Option<Option<String>>,
    /// New metadata.
    pub metadata: Option<serde_json::Value>,
    /// A new per-connection limit, or back to the default.
    pub rate_limit_per_minute: Option<Option<u32>>,
}

impl Connection {
    /// The status as of `now`: an active connection whose token has passed its expiry is `expired`.
    pub fn current_status(&self, now: DateTime<Utc>) -> Status {
        if self.status == Status::Active && self.token_expires_at.is_some_and(|t| t <= now) {
            Status::Expired
        } else {
            self.status
        }
    }

    /// Reports an active connection whose token has passed its expiry as `expired`.
    pub fn with_current_status(mut self, now: DateTime<Utc>) -> Self {
        if self.status == Status::Active && self.current_status(now) == Status::Expired {
            self.status = Status::Expired;
            self.status_reason = Some(EXPIRED_REASON.into());
        }
        self
    }
}

/// A connection to store.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// Its id (also bound into the sealed token).
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The end user.
    pub end_user_id: String,
    /// The end user's email.
    pub end_user_email: Option<String>,
    /// Its label.
    pub label: Option<String>,
    /// Its metadata.
    pub metadata: serde_json::Value,
    /// Its token, sealed for `id`.
    pub credentials: Credentials,
}

/// A Hex token as a connection stores it, checked against Hex and sealed for the connection's
/// id: what a connect writes, and what a reconnect replaces.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The workspace (a person may reconnect to a renamed one).
    pub subdomain: String,
    /// Its own Hex origin, if it is on one of `HEXBROKER_HEX_HOSTS` (a reconnect never moves a
    /// connection to another origin).
    pub hex_url: Option<String>,
    /// The kind of token.
    pub token_type: TokenType,
    /// Prefix and last four characters.
    pub token_hint: String,
    /// Keyed hash of subdomain (or origin) and token.
    pub token_fingerprint: Vec<u8>,
    /// The sealed token, bound to the connection's id.
    pub sealed: Sealed,
    /// What Hex said.
    pub identity: HexIdentity,
}

/// The outcome of [`Store::insert_connection`].
#[derive(Debug)]
pub enum Inserted {
    /// A new row.
    Created(Connection),
    /// The token was connected already; nothing new was stored.
    Existing(Connection),
}

/// Which connections to list.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// Only this end user's.
    pub end_user_id: Option<String>,
    /// Only those with this status (`expired` is derived from the expiry).
    pub status: Option<Status>,
    /// Only those of this Hex workspace (subdomain).
    pub subdomain: Option<String>,
    /// Only those older than this id (the page cursor).
    pub before_id: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// New credentials for an existing connection, checked against Hex and sealed for its id.
#[derive(Debug)]
pub struct TokenReplacement {
    /// The connection.
    pub id: Uuid,
    /// Its new token.
    pub credentials: Credentials,
}

impl TokenReplacement {
    /// Whether these credentials are for the same Hex workspace as `current`: on the same Hex
    /// origin (its own, or the template's), and then the same org id where both are known, else
    /// the same subdomain (§6 step 5).
    pub fn same_workspace(&self, current: &Connection) -> bool {
        let new = &self.credentials;
        if current.hex_url != new.hex_url {
            return false;
        }
        match (&current.hex_org_id, &new.identity.org_id) {
            (Some(old), Some(new)) => old == new,
            _ => current.subdomain == new.subdomain,
        }
    }

    /// A replacement with placeholder values, for unit tests of the lifecycle table.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            id: Uuid::nil(),
            credentials: Credentials {
                subdomain: "acme".into(),
                hex_url: None,
                token_type: TokenType::Personal,
                token_hint: "hxtp_…abcd".into(),
                token_fingerprint: vec![0; 32],
                sealed: Sealed { key_id: "k".into(), nonce: vec![0; 12], ciphertext: vec![], version: 2 },
                identity: HexIdentity::default(),
            },
        }
    }
}
