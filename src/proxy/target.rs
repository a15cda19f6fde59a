//! Find the target: what the proxy sends a connection's calls to, prepared once per connection
//! and cached: the workspace origin already split into scheme, authority and path base, the
//! bearer header value, and what admission checks before forwarding (tenant, status, expiry,
//! outbound limit). On a miss, [`find`] reads the connection, opens its token and prepares it.
//!
//! The bearer value is the one plaintext copy of the token this process keeps while the entry
//! lives: marked sensitive (never printed by `Debug`, kept out of HPACK tables), and in memory
//! that is zeroed when the last clone of it is dropped. Fresh per call, a `format!("Bearer …")`
//! would leave a plaintext copy in freed memory on every call instead.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::HeaderValue;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::Uri;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{OriginSlots, Origins, Proxy, ProxyError, Refusal};
use crate::cache::{Cache, Fill};
use crate::lifecycle::Status;
use crate::store::Connection;

const BEARER: &[u8] = b"Bearer ";

/// Connection `id`'s prepared target: from the cache, or read from the store, opened and
/// prepared (then cached, unless the connection changed meanwhile).
pub async fn find(proxy: &Proxy, tenant: &str, id: Uuid) -> Result<Arc<Target>, Refusal> {
    if let Some(target) = proxy.targets.get(tenant, id) {
        return Ok(target);
    }
    let fill = proxy.targets.fill();
    let row = proxy.store.connection_with_token(tenant, id).await?.ok_or(Refusal::NotFound)?;
    let (connection, sealed) = &*row;
    let (workspace, token) = crate::crypto::open_stored(&proxy.keyring, &proxy.hex, connection, sealed)?;
    let origin = proxy.hex.origin(&workspace);
    let target = Arc::new(Target::new(connection, &token, &origin, &sealed.nonce, proxy.upstream.origins())?);
    proxy.targets.insert(fill, target.clone());
    Ok(target)
}

/// A connection as the proxy uses it.
pub struct Target {
    /// The connection's id.
    pub id: Uuid,
    /// Its tenant: a caller of another tenant never sees it.
    pub tenant: Box<str>,
    status: Status,
    token_expires_at: Option<DateTime<Utc>>,
    /// The connection's own outbound limit (calls a minute), if it has one.
    pub rate_limit_per_minute: Option<u32>,
    /// Its workspace subdomain, as stored (for the 401 re-check).
    pub subdomain: Box<str>,
    /// Its own Hex origin, as stored, if it has one (for the 401 re-check).
    pub hex_url: Option<Box<str>>,
    /// The nonce of the sealed token this was opened from: the 401 rule invalidates the
    /// connection only if the row still holds this very token.
    pub token_nonce: Box<[u8]>,
    scheme: Scheme,
    authority: Authority,
    /// The origin's path (e.g. `/acme` for a path-based origin), without a trailing slash.
    base: Box<str>,
    bearer: HeaderValue,
    /// The workspace's bound on calls in flight (shared by every connection to it).
    slots: OriginSlots,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("id", &self.id).field("status", &self.status).finish_non_exhaustive()
    }
}

impl Target {
    /// Prepares `connection`, whose opened token is `token`, for calls to the workspace origin
    /// `origin` (`scheme://authority[/base]`), under that origin's share of `origins`.
    pub fn new(
        connection: &Connection,
        token: &SecretString,
        origin: &str,
        nonce: &[u8],
        origins: &Origins,
    ) -> Result<Self, ProxyError> {
        let slots = origins.slots_for(origin);
        let origin: Uri = origin.parse().map_err(|_| ProxyError::BadUrl)?;
        let (scheme, authority) = match (origin.scheme(), origin.authority()) {
            (Some(scheme), Some(authority)) => (scheme.clone(), authority.clone()),
            _ => return Err(ProxyError::BadUrl),
        };
        let secret = token.expose_secret().as_bytes();
        let mut value = Zeroizing::new(Vec::with_capacity(BEARER.len().saturating_add(secret.len())));
        value.extend_from_slice(BEARER);
        value.extend_from_slice(secret);
        let mut bearer =
            HeaderValue::from_maybe_shared(Bytes::from_owner(value)).map_err(|_| ProxyError::BadToken)?;
        bearer.set_sensitive(true);
        Ok(Self {
            id: connection.id,
            tenant: connection.tenant.as_str().into(),
            status: connection.status,
            token_expires_at: connection.token_expires_at,
            rate_limit_per_minute: connection.rate_limit_per_minute.and_then(|n| u32::try_from(n).ok()),
            subdomain: connection.subdomain.as_str().into(),
            hex_url: connection.hex_url.as_deref().map(Into::into),
            token_nonce: nonce.into(),
            scheme,
            authority,
            base: origin.path().trim_end_matches('/').into(),
            bearer,
            slots,
        })
    }

    /// The status at `now`: an active connection whose token has passed its expiry is expired.
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        if self.status == Status::Active && self.token_expires_at.is_some_and(|t| t <= now) {
            Status::Expired
        } else {
            self.status
        }
    }

    /// The `Authorization` value to send (a reference count, not a copy).
    pub fn bearer(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// The workspace's bound on calls in flight.
    pub fn slots(&self) -> &OriginSlots {
        &self.slots
    }

    /// The token itself, for the 401 re-check (which asks Hex about it).
    pub fn token(&self) -> SecretString {
        let value = self.bearer.as_bytes().get(BEARER.len()..).unwrap_or_default();
        SecretString::from(String::from_utf8_lossy(value).into_owned())
    }

    /// The workspace's Hex origin in parts, for pointing Hex's links at hexbroker.
    pub fn hex_origin(&self) -> super::links::HexOrigin<'_> {
        super::links::HexOrigin {
            scheme: self.scheme.as_str(),
            authority: self.authority.as_str(),
            base: &self.base,
        }
    }

    /// The upstream URI for `{base}/api{path}?{query}`. When the caller's own path and query
    /// already read so (the drop-in surface on an origin without a path), they are reused as
    /// they are, with no copy.
    pub fn uri(&self, caller: &Uri, path: &str) -> Result<Uri, ProxyError> {
        let reuse = self.base.is_empty() && caller.path().strip_prefix("/api") == Some(path);
        let path_and_query = match caller.path_and_query() {
            Some(own) if reuse => own.clone(),
            _ => {
                let query = caller.query();
                let len = self.base.len() + 4 + path.len() + query.map_or(0, |q| q.len() + 1);
                let mut text = String::with_capacity(len);
                text.push_str(&self.base);
                text.push_str("/api");
                text.push_str(path);
                if let Some(query) = query {
                    text.push('?');
                    text.push_str(query);
                }
                PathAndQuery::from_maybe_shared(Bytes::from(text)).map_err(|_| ProxyError::BadUrl)?
            }
        };
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|_| ProxyError::BadUrl)
    }
}

/// The prepared targets of the connections called lately, by id. Dropped by id when the
/// connection changes (here at once, on the other replicas by the store's notice).
#[derive(Debug)]
pub struct Targets(Cache<Uuid, Arc<Target>>);

impl Targets {
    /// About `capacity` targets, each kept for at most `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self(Cache::new(ttl, capacity))
    }

    /// Connection `id`'s target if it is held and belongs to `tenant`.
    pub fn get(&self, tenant: &str, id: Uuid) -> Option<Arc<Target>> {
        self.0.get(&id).filter(|target| &*target.tenant == tenant)
    }

    /// Marks the start of a read of a connection from the store.
    pub fn fill(&self) -> Fill {
        self.0.fill()
    }

    /// Keeps `target`, unless its connection changed since `fill`.
    pub fn insert(&self, fill: Fill, target: Arc<Target>) {
        let _ = self.0.insert(fill, target.id, target);
    }

    /// Drops connection `id`'s target.
    pub fn forget(&self, id: Uuid) {
        self.0.remove(&id);
    }

    /// Drops every target.
    pub fn clear(&self) {
        self.0.clear();
    }
}
