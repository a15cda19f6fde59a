//! Who is calling: internal API keys, the cache of recent callers, and the extractor that turns
//! `Authorization: Bearer <key>` into a [`Caller`] (§4 of the contract).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::{Action, Actor, AuditContext};
use crate::cache::Cache;
use crate::crypto::{self, Hasher};
use crate::edge::Guards;
use crate::error::{ApiError, Code};
pub use crate::scopes::{Scope, Scopes};
use crate::store::{self, ApiKey, DynStore, NewApiKey, Session};

/// Prefix of internal API keys, for secret scanners.
pub const API_KEY_PREFIX: &str = "hxbk_";
/// Prefix of connection keys.
pub const CONNECTION_KEY_PREFIX: &str = "hxbc_";
/// Prefix of connect session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "hxbs_";
/// How many leading characters of a secret are kept to recognise it.
const SHOWN_PREFIX_LEN: usize = 12;

/// What the extractors need to tell who is calling: the store, the cache of recent callers, the
/// keyed hash, and the per-key rate. Behind one `Arc`, so that an extractor taking it from the
/// application's state (axum's [`FromRef`]) costs one reference count.
#[derive(Debug, Clone)]
pub struct Auth(Arc<AuthHandles>);

/// The handles inside [`Auth`].
#[derive(Debug)]
pub struct AuthHandles {
    /// The database (keys and sessions not in the cache).
    pub store: DynStore,
    /// The callers seen lately, by key hash (the hot path's first cache).
    pub callers: Arc<Callers>,
    /// The keyed hash of secrets.
    pub hasher: Arc<Hasher>,
    /// The edge's limits (the rate per key).
    pub guards: Arc<Guards>,
}

impl std::ops::Deref for Auth {
    type Target = AuthHandles;
    fn deref(&self) -> &AuthHandles {
        &self.0
    }
}

impl Auth {
    /// The extractors' part of the state.
    pub fn new(store: DynStore, callers: Arc<Callers>, hasher: Arc<Hasher>, guards: Arc<Guards>) -> Self {
        Self(Arc::new(AuthHandles { store, callers, hasher, guards }))
    }
}

/// An authenticated internal caller (an API key not bound to a connection): the key's record,
/// shared with the cache, so that a request costs a reference count rather than a copy.
#[derive(Debug, Clone)]
pub struct Caller(Arc<ApiKey>);

impl std::ops::Deref for Caller {
    type Target = ApiKey;
    fn deref(&self) -> &ApiKey {
        &self.0
    }
}

impl Caller {
    /// Refuses with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        require(self.scopes, scope)
    }

    /// The key's record, shared (for the request log).
    pub fn key(&self) -> &Arc<ApiKey> {
        &self.0
    }

    /// The caller as the audit trail names it.
    pub fn actor(&self) -> Actor {
        Actor::Key { id: self.id, name: self.name.clone() }
    }
}

/// A caller holding a connection key: it reaches one connection, through the drop-in surface.
#[derive(Debug, Clone)]
pub struct ConnectionCaller {
    key: Arc<ApiKey>,
    /// The one connection the key reaches.
    pub connection_id: Uuid,
}

impl std::ops::Deref for ConnectionCaller {
    type Target = ApiKey;
    fn deref(&self) -> &ApiKey {
        &self.key
    }
}

impl ConnectionCaller {
    /// The key's record, shared (for the request log).
    pub fn key(&self) -> &Arc<ApiKey> {
        &self.key
    }

    /// Refuses with 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        require(self.scopes, scope)
    }
}

fn require(scopes: Scopes, scope: Scope) -> Result<(), ApiError> {
    if scopes.grants(scope) {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope(scope.name()))
    }
}

/// The keys callers used lately, by the keyed hash of their secret: a hit costs one hash and one
/// shard's read lock, and allocates nothing. Revoked and expired keys are kept too (they answer
/// 401 from memory). A key is dropped by id when it is revoked, and with every key of a
/// connection when that connection changes (see [`Callers::forget_connection`]), here at once and
/// on the other replicas by the store's notice.
#[derive(Debug)]
pub struct Callers {
    keys: Cache<[u8; 32], Arc<ApiKey>>,
    /// Which cached hash each key id has, and which key ids each connection has, so that a
    /// revocation finds its entry in O(1).
    index: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<Uuid, [u8; 32]>,
    by_connection: HashMap<Uuid, Vec<Uuid>>,
}

impl Index {
    fn add(&mut self, hash: [u8; 32], key: &ApiKey) {
        self.by_key.insert(key.id, hash);
        if let Some(connection) = key.connection_id {
            let keys = self.by_connection.entry(connection).or_default();
            if !keys.contains(&key.id) {
                keys.push(key.id);
            }
        }
    }

    fn remove(&mut self, key: &ApiKey) -> Option<[u8; 32]> {
        if let Some(connection) = key.connection_id {
            if let Some(keys) = self.by_connection.get_mut(&connection) {
                keys.retain(|id| *id != key.id);
                if keys.is_empty() {
                    self.by_connection.remove(&connection);
                }
            }
        }
        self.by_key.remove(&key.id)
    }
}

impl Callers {
    /// A cache of about `capacity` keys, each kept for at most `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { keys: Cache::new(ttl, capacity), index: Mutex::default() }
    }

    /// The key whose secret hashes to `hash`, if it is held.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<ApiKey>> {
        self.keys.get(hash)
    }

    /// The key whose secret hashes to `hash`, from memory or else from the store. A key is found
    /// by the keyed digest of its secret (HMAC-SHA256 under a server-side key), never by comparing
    /// secrets: a guess's timing can tell at most how its digest, which the guesser cannot steer,
    /// compares with stored ones, so no constant-time comparison is needed here.
    pub async fn find(
        &self,
        store: &DynStore,
        hash: [u8; 32],
    ) -> Result<Option<Arc<ApiKey>>, store::StoreError> {
        if let Some(key) = self.get(&hash) {
            return Ok(Some(key));
        }
        let fill = self.keys.fill();
        let Some(key) = store.api_key_by_hash(&hash).await? else { return Ok(None) };
        let key = Arc::new(key);
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(evicted) = self.keys.insert(fill, hash, key.clone()) {
            if let Some((_, evicted)) = evicted {
                index.remove(&evicted);
            }
            index.add(hash, &key);
        }
        Ok(Some(key))
    }

    /// Drops key `id`.
    pub fn forget_key(&self, id: Uuid) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        self.keys.drop_fills();
        let hash = index.by_key.get(&id).copied();
        if let Some(key) = hash.and_then(|hash| self.keys.remove(&hash)) {
            index.remove(&key);
        }
    }

    /// Drops every key of connection `id` (its connection keys).
    pub fn forget_connection(&self, id: Uuid) {
        let keys = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.by_connection.get(&id).cloned().unwrap_or_default()
        };
        // A connection key being read from the store right now is not kept either.
        self.keys.drop_fills();
        for key in keys {
            self.forget_key(key);
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        self.keys.clear();
        *index = Index::default();
    }
}

/// Finds the usable key behind the request's bearer credential. Missing, unknown, revoked and
/// expired keys are one and the same 401; the reason goes to the debug log.
pub(crate) async fn authenticate(parts: &Parts, auth: &Auth) -> Result<Arc<ApiKey>, ApiError> {
    let bearer = bearer(parts).ok_or_else(|| {
        tracing::debug!("no bearer credential");
        ApiError::unauthorized()
    })?;
    match auth.callers.find(&auth.store, auth.hasher.secret_hash(bearer)).await? {
        Some(key) if key.is_usable(store::now()) => {
            tracing::Span::current().record("key_id", tracing::field::display(key.id));
            auth.guards.check_key_rate(key.id)?;
            Ok(key)
        }
        Some(key) => {
            tracing::debug!(key_id = %key.id, "key revoked or expired");
            Err(ApiError::unauthorized())
        }
        None => {
            tracing::debug!("unknown key");
            Err(ApiError::unauthorized())
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = authenticate(parts, &Auth::from_ref(state)).await?;
        if key.connection_id.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::ConnectionKeyNotAllowed,
                "A connection key works only on the drop-in surface (/api/…); use an API key here.",
            ));
        }
        Ok(Caller(key))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionCaller
where
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = authenticate(parts, &Auth::from_ref(state)).await?;
        let Some(connection_id) = key.connection_id else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::ConnectionKeyRequired,
                "The drop-in surface (/api/…) takes a connection key; use /v1/proxy with an API key instead.",
            ));
        };
        Ok(ConnectionCaller { key, connection_id })
    }
}

/// Whoever may call `POST /v1/connect`: an API key holding `connect`, or a connect session.
#[derive(Debug, Clone)]
pub enum ConnectCaller {
    /// An internal caller with an API key.
    Key(Caller),
    /// A person in a browser holding a session token: usable, not yet used, not expired.
    Session(Session),
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectCaller
where
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(parts) else {
            return Caller::from_request_parts(parts, state).await.map(ConnectCaller::Key);
        };
        let session = find_session(&Auth::from_ref(state), token).await?;
        if session.used_at.is_some() {
            return Err(session_used());
        }
        if session.expires_at <= store::now() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::SessionExpired,
                "This connect link has expired; ask the app that sent you here for a new one.",
            ));
        }
        Ok(ConnectCaller::Session(session))
    }
}

/// The connect session that the request's session token names, whatever its state: for the
/// status look-up, which must answer for used and expired links as well as usable ones.
#[derive(Debug, Clone)]
pub struct AnySession(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for AnySession
where
    Auth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = session_token(parts).ok_or_else(|| {
            tracing::debug!("no session token");
            ApiError::unauthorized()
        })?;
        find_session(&Auth::from_ref(state), token).await.map(AnySession)
    }
}

/// The request's bearer credential when it is a connect session token.
fn session_token(parts: &Parts) -> Option<&str> {
    bearer(parts).filter(|t| t.starts_with(SESSION_TOKEN_PREFIX))
}

/// The session with this token, used or not; an unknown token is the one 401.
async fn find_session(auth: &Auth, token: &str) -> Result<Session, ApiError> {
    let session = auth.store.session_by_hash(&auth.hasher.secret_hash(token)).await?.ok_or_else(|| {
        tracing::debug!("unknown session token");
        ApiError::unauthorized()
    })?;
    tracing::Span::current().record("key_id", tracing::field::display(session.id));
    Ok(session)
}

/// The answer to a session that has been used already.
pub fn session_used() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        Code::SessionUsed,
        "This connect link has been used already; ask the app that sent you here for a new one.",
    )
}

/// The bearer credential of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A newly made key: its record, and its secret (shown once).
pub struct CreatedKey {
    /// What is stored.
    pub key: ApiKey,
    /// The secret; never stored, never logged.
    pub secret: SecretString,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeySpec<'a> {
    /// A name for people.
    pub name: &'a str,
    /// The tenant it acts in.
    pub tenant: &'a str,
    /// What it may do.
    pub scopes: Scopes,
    /// For a connection key: the connection.
    pub connection_id: Option<Uuid>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Makes and stores a key: an internal API key (`hxbk_…`) or, with a connection, a connection
/// key (`hxbc_…`), with its `key.create` audit entry.
pub async fn create_key<S>(
    state: &S,
    spec: KeySpec<'_>,
    audit: &AuditContext,
) -> Result<CreatedKey, store::StoreError>
where
    Auth: FromRef<S>,
{
    let auth = Auth::from_ref(state);
    let prefix = if spec.connection_id.is_some() { CONNECTION_KEY_PREFIX } else { API_KEY_PREFIX };
    let secret = crypto::new_secret(prefix);
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant: spec.tenant.to_owned(),
        name: spec.name.to_owned(),
        prefix: secret.expose_secret()[..SHOWN_PREFIX_LEN].to_owned(),
        hash: auth.hasher.secret_hash(secret.expose_secret()).to_vec(),
        scopes: spec.scopes,
        connection_id: spec.connection_id,
        expires_at: spec.expires_at,
    };
    let key = auth.store.insert_api_key(&new, audit).await?;
    Ok(CreatedKey { key, secret })
}

/// Makes and stores an internal API key that never expires (audited as hexbroker's own action:
/// the command line and tests make these).
pub async fn create_api_key<S>(
    state: &S,
    name: &str,
    tenant: &str,
    scopes: Scopes,
) -> Result<CreatedKey, store::StoreError>
where
    Auth: FromRef<S>,
{
    let spec = KeySpec { name, tenant, scopes, connection_id: None, expires_at: None };
    create_key(state, spec, &AuditContext::system(Action::KeyCreate)).await
}
