//! Who is calling: scopes, internal API keys, and the extractor that turns
//! `Authorization: Bearer <key>` into a [`Caller`] (§4 of the contract).

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::{Action, AuditContext};
use crate::crypto;
use crate::error::ApiError;
use crate::store::{self, ApiKey, NewApiKey, Session};

/// Prefix of internal API keys, for secret scanners.
pub const API_KEY_PREFIX: &str = "hxbk_";
/// Prefix of connection keys.
pub const CONNECTION_KEY_PREFIX: &str = "hxbc_";
/// Prefix of connect session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "hxbs_";
/// How many leading characters of a secret are kept to recognise it.
const SHOWN_PREFIX_LEN: usize = 12;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Create connect sessions and connections.
    Connect,
    /// Read connections.
    ConnectionsRead,
    /// Change, verify, delete connections; mint connection keys.
    ConnectionsWrite,
    /// Proxy any method.
    Proxy,
    /// Proxy GET and HEAD only.
    ProxyRead,
    /// Everything in its tenant.
    Admin,
}

impl Scope {
    const ALL: [Scope; 6] = [
        Scope::Connect,
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::Proxy,
        Scope::ProxyRead,
        Scope::Admin,
    ];

    /// The scope's name in keys, the CLI and errors.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Connect => "connect",
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsWrite => "connections:write",
            Scope::Proxy => "proxy",
            Scope::ProxyRead => "proxy:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// The set holding exactly `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Whether the set grants `scope`: `admin` grants all, `proxy` grants `proxy:read`.
    pub fn grants(self, scope: Scope) -> bool {
        let has = |s: Scope| self.0 & s.bit() != 0;
        has(scope) || has(Scope::Admin) || (scope == Scope::ProxyRead && has(Scope::Proxy))
    }

    /// The scopes in the set.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.0 & s.bit() != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for Scopes {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| format!("unknown scope `{name}` (known: {})", Scopes::of(&Scope::ALL)))?;
            scopes.push(scope);
        }
        Ok(Scopes::of(&scopes))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Scope::name).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Scope::name))
    }
}

/// An authenticated internal caller (an API key not bound to a connection).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key it used.
    pub key_id: Uuid,
    /// That key's name (for the audit trail).
    pub key_name: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
}

impl Caller {
    /// Refuses with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        require(self.scopes, scope)
    }
}

/// A caller holding a connection key: it reaches one connection, through the drop-in surface.
#[derive(Debug, Clone)]
pub struct ConnectionCaller {
    /// The key it used.
    pub key_id: Uuid,
    /// The tenant of the connection.
    pub tenant: String,
    /// `proxy` or `proxy:read`.
    pub scopes: Scopes,
    /// The one connection the key reaches.
    pub connection_id: Uuid,
}

impl ConnectionCaller {
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

/// Finds the usable key behind the request's bearer credential. Missing, unknown, revoked and
/// expired keys are one and the same 401; the reason goes to the debug log.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<ApiKey, ApiError> {
    let bearer = bearer(parts).ok_or_else(|| {
        tracing::debug!("no bearer credential");
        ApiError::unauthorized()
    })?;
    match state.store.api_key_by_hash(&state.hasher.secret_hash(bearer)).await? {
        Some(key) if key.is_usable(store::now()) => {
            tracing::Span::current().record("key_id", tracing::field::display(key.id));
            state.edge.check_key_rate(key.id)?;
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = authenticate(parts, state).await?;
        if key.connection_id.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "connection_key_not_allowed",
                "A connection key works only on the drop-in surface (/api/…); use an API key here.",
            ));
        }
        Ok(Caller { key_id: key.id, key_name: key.name, tenant: key.tenant, scopes: key.scopes })
    }
}

impl FromRequestParts<AppState> for ConnectionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = authenticate(parts, state).await?;
        let Some(connection_id) = key.connection_id else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "connection_key_required",
                "The drop-in surface (/api/…) takes a connection key; use /v1/proxy with an API key instead.",
            ));
        };
        Ok(ConnectionCaller { key_id: key.id, tenant: key.tenant, scopes: key.scopes, connection_id })
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

impl FromRequestParts<AppState> for ConnectCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(parts) else {
            return Caller::from_request_parts(parts, state).await.map(ConnectCaller::Key);
        };
        let session = find_session(state, token).await?;
        if session.used_at.is_some() {
            return Err(session_used());
        }
        if session.expires_at <= store::now() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
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

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = session_token(parts).ok_or_else(|| {
            tracing::debug!("no session token");
            ApiError::unauthorized()
        })?;
        find_session(state, token).await.map(AnySession)
    }
}

/// The request's bearer credential when it is a connect session token.
fn session_token(parts: &Parts) -> Option<&str> {
    bearer(parts).filter(|t| t.starts_with(SESSION_TOKEN_PREFIX))
}

/// The session with this token, used or not; an unknown token is the one 401.
async fn find_session(state: &AppState, token: &str) -> Result<Session, ApiError> {
    let session = state.store.session_by_hash(&state.hasher.secret_hash(token)).await?.ok_or_else(|| {
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
        "session_used",
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
pub async fn create_key(
    state: &AppState,
    spec: KeySpec<'_>,
    audit: &AuditContext,
) -> Result<CreatedKey, store::StoreError> {
    let prefix = if spec.connection_id.is_some() { CONNECTION_KEY_PREFIX } else { API_KEY_PREFIX };
    let secret = crypto::new_secret(prefix);
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant: spec.tenant.to_owned(),
        name: spec.name.to_owned(),
        prefix: secret.expose_secret()[..SHOWN_PREFIX_LEN].to_owned(),
        hash: state.hasher.secret_hash(secret.expose_secret()),
        scopes: spec.scopes,
        connection_id: spec.connection_id,
        expires_at: spec.expires_at,
    };
    let key = state.store.insert_api_key(&new, audit).await?;
    Ok(CreatedKey { key, secret })
}

/// Makes and stores an internal API key that never expires (audited as hexbroker's own action:
/// the command line and tests make these).
pub async fn create_api_key(
    state: &AppState,
    name: &str,
    tenant: &str,
    scopes: Scopes,
) -> Result<CreatedKey, store::StoreError> {
    let spec = KeySpec { name, tenant, scopes, connection_id: None, expires_at: None };
    create_key(state, spec, &AuditContext::system(Action::KeyCreate)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_by_name() {
        let scopes: Scopes = "proxy, connections:read".parse().unwrap();
        assert_eq!(scopes.to_string(), "connections:read,proxy");
        assert!("proxy,root".parse::<Scopes>().unwrap_err().contains("`root`"));
        assert!("".parse::<Scopes>().unwrap().is_empty());
    }

    #[test]
    fn admin_grants_everything_and_proxy_grants_proxy_read() {
        let admin = Scopes::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.grants(*s)));
        let proxy = Scopes::of(&[Scope::Proxy]);
        assert!(proxy.grants(Scope::ProxyRead));
        assert!(!proxy.grants(Scope::Connect));
        let read = Scopes::of(&[Scope::ProxyRead]);
        assert!(!read.grants(Scope::Proxy));
    }
}
