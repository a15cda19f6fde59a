//! Who is calling: scopes, internal API keys, and the extractor that turns
//! `Authorization: Bearer <key>` into a [`Caller`] (§4 of the contract).

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::app::AppState;
use crate::crypto;
use crate::error::ApiError;
use crate::store::{self, ApiKey, NewApiKey};

/// Prefix of internal API keys, for secret scanners.
pub const API_KEY_PREFIX: &str = "hxbk_";
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

/// An authenticated internal caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key it used.
    pub key_id: Uuid,
    /// The tenant it acts in.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
}

impl Caller {
    /// Refuses with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.grants(scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope.name()))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = bearer(parts).ok_or_else(|| {
            tracing::debug!("no bearer credential");
            ApiError::unauthorized()
        })?;
        let key = state.store.api_key_by_hash(&state.hasher.secret_hash(bearer)).await?;
        match key {
            Some(key) if key.is_usable(store::now()) && key.connection_id.is_none() => {
                tracing::Span::current().record("key_id", tracing::field::display(key.id));
                Ok(Caller { key_id: key.id, tenant: key.tenant, scopes: key.scopes })
            }
            Some(key) => {
                tracing::debug!(key_id = %key.id, "key revoked, expired or bound to a connection");
                Err(ApiError::unauthorized())
            }
            None => {
                tracing::debug!("unknown key");
                Err(ApiError::unauthorized())
            }
        }
    }
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

/// Makes and stores an internal API key.
pub async fn create_api_key(
    state: &AppState,
    name: &str,
    tenant: &str,
    scopes: Scopes,
) -> Result<CreatedKey, store::StoreError> {
    let secret = crypto::new_secret(API_KEY_PREFIX);
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        prefix: secret.expose_secret()[..SHOWN_PREFIX_LEN].to_owned(),
        hash: state.hasher.secret_hash(secret.expose_secret()),
        scopes,
        connection_id: None,
        expires_at: None,
    };
    let key = state.store.insert_api_key(&new).await?;
    Ok(CreatedKey { key, secret })
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
