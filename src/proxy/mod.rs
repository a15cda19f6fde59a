//! The proxy to Hex (§7 of the contract): a caller's request to one connection, sent to that
//! connection's Hex workspace with the stored token in place of the caller's credentials, and
//! Hex's answer streamed back. One call goes through the phases below in order (named as
//! pingora names them); [`forward`] runs them, and each is a file here:
//!
//! 1. **admit** ([`admit`]): the path is one Hex's API may be asked for; once the target is
//!    known, its connection is usable (active, not expired) and a slot under its outbound rate
//!    limit is free (waiting for one within the retry budget).
//! 2. **find the target** ([`target`]): the connection, prepared once and cached: origin, bearer
//!    header, limits. On a miss it is read from the store and its token opened under the seal
//!    that binds its row ([`crate::crypto::open_stored`]).
//! 3. **send** ([`send`]): the upstream request made from the caller's (credentials and the
//!    headers that never reach Hex removed), sent on a pooled client, retried by §7's rules.
//! 4. **relay** ([`relay`], [`links`]): Hex's answer cleaned of headers that would act on
//!    hexbroker's origin, its body streamed with a deadline, its links pointed at hexbroker.
//! 5. **after the answer** ([`after`]): the call recorded in the request log, and a Hex 401
//!    followed up by asking Hex about the token, beside the response.
//!
//! The routes (`/v1/proxy`, `/api`) and MCP tool calls only authorise the caller and name the
//! connection; they enter here at [`forward`]. Beside the phases: the workspace's bound on calls
//! in flight ([`origins`]), the outbound rate limit ([`limit`]), the retry rules ([`retry`]), the
//! path rule ([`path`]) and the in-memory marks of each connection's calls ([`usage`]).

pub mod admit;
pub mod after;
pub mod limit;
pub mod links;
pub mod origins;
pub mod path;
pub mod relay;
pub mod retry;
pub mod send;
pub mod target;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{Keyring, StoredError};
use crate::error::Code;
use crate::hex::HexClient;
use crate::metrics::Metrics;
use crate::requestlog::{RequestLog, Via};
use crate::store::{ApiKey, DynStore, StoreError};
pub use after::{recheck_after_unauthorized, Unauthorized};
pub use limit::{OutboundLimit, RateLimiter};
pub use links::{HexOrigin, Linked, Relink, MAX_LINKED_BODY};
pub use origins::{OriginSlots, Origins};
pub use path::{check_path, InvalidPath};
pub use retry::{retry_after, Attempt, RetryPolicy};
pub use send::{Timeouts, Upstream};
pub use target::{Target, Targets};
pub use usage::{minute_of, Usage};

/// Marks a response relayed from Hex, as opposed to one hexbroker made.
pub const UPSTREAM_HEADER: &str = "hexbroker-upstream";
/// The header that names the connection on `/v1/proxy`.
pub const CONNECTION_ID_HEADER: &str = "connection-id";

/// The proxy's part of the application's state: what the phases need, behind one `Arc`, so that
/// a handler taking it (axum's `FromRef`) costs one reference count.
#[derive(Debug, Clone)]
pub struct Proxy(Arc<Handles>);

/// The handles inside [`Proxy`].
#[derive(Debug)]
pub struct Handles {
    /// The database (connections not in the cache; the 401 follow-up's write).
    pub store: DynStore,
    /// The connections called lately, prepared (the hot path's second cache).
    pub targets: Arc<Targets>,
    /// The token encryption keys, to open a connection's token on a cache miss.
    pub keyring: Arc<Keyring>,
    /// hexbroker's own client for Hex: workspace origins, and the 401 follow-up's check.
    pub hex: HexClient,
    /// The pooled clients that carry the calls.
    pub upstream: Upstream,
    /// The per-connection outbound rate limit's state.
    pub limiter: Arc<RateLimiter>,
    /// The per-connection marks (last used, recent calls), for the background checks.
    pub usage: Arc<Usage>,
    /// The request log's queue (§11).
    pub request_log: RequestLog,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The configuration (limits, the public URL).
    pub config: Arc<Config>,
    /// The time connection status is judged on.
    pub clock: Clock,
}

impl std::ops::Deref for Proxy {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

impl Proxy {
    /// The proxy's part of the state, from its handles.
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

/// Why a proxied call got no answer from Hex.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Hex did not start answering in time.
    #[error("Hex did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent (connect, TLS, or a broken connection).
    #[error("Hex could not be reached: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The caller's body could not be read.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// The upstream URL could not be built.
    #[error("the upstream URL is not valid")]
    BadUrl,
    /// The connection's token cannot be sent as a header value.
    #[error("the stored token is not a valid header value")]
    BadToken,
    /// Hex's answer broke before its first byte could be relayed.
    #[error("Hex's answer broke off before any of it was relayed: {0}")]
    BrokenAnswer(String),
    /// Hex answered 101 (switching protocols), which is never relayed.
    #[error("Hex answered 101 Switching Protocols")]
    Upgrade,
    /// The workspace already has as many calls in flight as allowed.
    #[error("too many calls in flight to this workspace")]
    Busy,
}

impl ProxyError {
    /// Logs what went wrong, for the operator (the caller's answer says less). Called where the
    /// error is handled, once; the conversion into an answer has no side effects.
    pub fn report(&self) {
        match self {
            ProxyError::Timeout(_) => tracing::warn!(error = %self, "proxy timeout"),
            ProxyError::Unreachable(e) => tracing::warn!(error = %e, "proxy upstream error"),
            ProxyError::BrokenAnswer(e) => {
                tracing::warn!(error = %e, "Hex's answer broke before any of it was relayed")
            }
            ProxyError::Busy => tracing::warn!("workspace has as many calls in flight to Hex as allowed"),
            ProxyError::Upgrade => tracing::warn!("Hex answered 101 Switching Protocols; not relayed"),
            ProxyError::BadBody(_) | ProxyError::BadUrl | ProxyError::BadToken => {}
        }
    }

    /// The status hexbroker answers with (§7).
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Unreachable(_) | ProxyError::BrokenAnswer(_) | ProxyError::Upgrade => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::BadBody(_) | ProxyError::BadUrl => StatusCode::BAD_REQUEST,
            ProxyError::BadToken => StatusCode::FAILED_DEPENDENCY,
            ProxyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code hexbroker answers with (§7).
    pub fn code(&self) -> Code {
        match self {
            ProxyError::Timeout(_) => Code::HexTimeout,
            ProxyError::Unreachable(_) | ProxyError::BrokenAnswer(_) | ProxyError::Upgrade => {
                Code::HexUnavailable
            }
            ProxyError::BadBody(_) => Code::InvalidBody,
            ProxyError::BadUrl => Code::InvalidPath,
            ProxyError::BadToken => Code::ConnectionTokenUnusable,
            ProxyError::Busy => Code::WorkspaceBusy,
        }
    }
}

/// Why hexbroker answered a proxied call itself instead of relaying Hex's answer. Each has the
/// status and code the caller gets and the request log records (§7, §11); the words the caller
/// reads are the error module's (`From<Refusal> for ApiError`).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A path that could climb out of `/api` once normalised.
    #[error("the path may not be forwarded to Hex")]
    Path(#[from] InvalidPath),
    /// No such connection in the caller's tenant.
    #[error("no such connection")]
    NotFound,
    /// The connection's token has expired.
    #[error("the connection's token has expired")]
    Expired,
    /// Hex no longer accepts the connection's token.
    #[error("the connection's token is invalid")]
    Invalid,
    /// The connection's outbound limit has no slot within the retry budget.
    #[error("the connection's outbound rate limit is reached")]
    RateLimited {
        /// The limit, calls a minute.
        per_minute: u32,
        /// Seconds until a slot frees.
        retry_after: u64,
    },
    /// The call got no answer from Hex.
    #[error(transparent)]
    Failed(#[from] ProxyError),
    /// The stored connection cannot be used.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// The connection could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// The status hexbroker answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Path(_) => StatusCode::BAD_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Expired | Refusal::Invalid => StatusCode::FAILED_DEPENDENCY,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Failed(e) => e.status(),
            Refusal::Stored(StoredError::Crypto(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Stored(_) => StatusCode::FAILED_DEPENDENCY,
            Refusal::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code hexbroker answers with.
    pub fn code(&self) -> Code {
        match self {
            Refusal::Path(_) => Code::InvalidPath,
            Refusal::NotFound => Code::NotFound,
            Refusal::Expired => Code::ConnectionExpired,
            Refusal::Invalid => Code::ConnectionInvalid,
            Refusal::RateLimited { .. } => Code::ConnectionRateLimited,
            Refusal::Failed(e) => e.code(),
            Refusal::Stored(StoredError::Tampered) => Code::ConnectionTampered,
            Refusal::Stored(StoredError::HostNotListed) => Code::HexHostNotAllowed,
            Refusal::Stored(StoredError::Crypto(_)) => Code::InternalError,
            Refusal::Store(e) if e.is_unavailable() => Code::DatabaseUnavailable,
            Refusal::Store(_) => Code::InternalError,
        }
    }
}

/// What a proxied exchange with Hex came to, for the request log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exchange {
    /// Retries made after the first attempt.
    pub retries: u32,
    /// The time the last attempt took to get Hex's response head; `None` when it got none.
    pub hex_time: Option<Duration>,
}

/// Forwards `request`, which `key` sent by `via` naming connection `id`, to that connection's
/// Hex workspace, phase by phase, and records the call in the request log.
pub async fn forward(
    proxy: &Proxy,
    key: &Arc<ApiKey>,
    id: Uuid,
    via: Via,
    request: Request<Body>,
) -> Result<Response<Body>, Refusal> {
    // One reading of the wall clock: the call's start in the log, and the time its connection's
    // status is judged at.
    let now = proxy.clock.now();
    let call = proxy.request_log.begin(key, id, via, &request, now);
    let mut exchange = Exchange::default();
    let result = phases(proxy, &key.tenant, id, via, now, request, &mut exchange).await;
    after::record(proxy, &key.tenant, id, call, after::Outcome { result, exchange }).await
}

/// Records a call that named connection `id` and was refused before any phase ran (the caller
/// lacks the scope) with `status` and `code`, when the connection is one of the caller's tenant.
pub async fn record_refusal<B>(
    proxy: &Proxy,
    key: &Arc<ApiKey>,
    id: Uuid,
    via: Via,
    request: Request<B>,
    (status, code): (StatusCode, Code),
) {
    let call = proxy.request_log.begin(key, id, via, &request, proxy.clock.now());
    drop(request);
    let Some(call) = call else { return };
    if after::known(proxy, &key.tenant, id).await {
        call.refused(status, code, Exchange::default());
    }
}

/// The phases of one call that started at `now`, in order; `exchange` learns what Hex was asked.
async fn phases(
    proxy: &Proxy,
    tenant: &str,
    id: Uuid,
    via: Via,
    now: DateTime<Utc>,
    mut request: Request<Body>,
    exchange: &mut Exchange,
) -> Result<Response<Body>, Refusal> {
    // Admit the path, find the target, admit the call to it.
    let prefix = via.prefix();
    let path = request.uri().path().strip_prefix(prefix).unwrap_or("/");
    check_path(path)?;
    let target = target::find(proxy, tenant, id).await?;
    admit::usable(&target, now)?;
    let limit = admit::outbound_limit(proxy, &target);
    if let Some(limit) = limit {
        admit::hold_for_slot(proxy, limit).await?;
    }
    // Send, and relay the answer.
    let uri = target.uri(request.uri(), path)?;
    let linked = Linked::of(request.method(), path);
    if linked.is_some() {
        // The links are rewritten in the body, which must come uncoded to be read.
        request.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    proxy.usage.touch(id, minute_of(now));
    let response = proxy
        .upstream
        .forward(uri, target.bearer(), target.slots(), request, limit, exchange)
        .await
        .inspect_err(ProxyError::report)?;
    let public = proxy.config.public_url.as_str().trim_end_matches('/');
    // An MCP tool call's links point to the drop-in surface, where the same connection key works.
    let surface = if via == Via::Mcp { Via::Api.prefix() } else { prefix };
    let relink = Relink { origin: target.hex_origin(), public, surface };
    let response = relink.apply(response, linked).await.inspect_err(ProxyError::report)?;
    // After the answer: the request log is told by `forward`; a 401 is followed up here.
    if response.status() == StatusCode::UNAUTHORIZED {
        after::unauthorized(proxy, tenant, &target);
    }
    Ok(response)
}
