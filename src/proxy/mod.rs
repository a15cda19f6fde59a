//! The proxy to Hex (§7 of the contract): one pooled HTTP/1.1 client with keep-alive, bodies
//! streamed both ways, hop-by-hop headers dropped, and the caller's credentials replaced by the
//! connection's Hex token.

mod limit;
mod links;
mod origins;
mod path;
mod retry;
mod target;
mod usage;

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::ApiError;
use crate::metrics::{method_label, Metrics};
pub use limit::{OutboundLimit, RateLimiter};
pub use links::{HexOrigin, Linked, Relink, MAX_LINKED_BODY};
pub use origins::{OriginSlots, Origins};
pub use path::{check_path, InvalidPath};
pub use retry::{retry_after, Attempt, RetryPolicy};
pub use target::{Target, Targets};
pub use usage::{minute_of, Usage};

/// Marks a response relayed from Hex, as opposed to one hexbroker made.
pub const UPSTREAM_HEADER: &str = "hexbroker-upstream";
/// The header that names the connection on `/v1/proxy`.
pub const CONNECTION_ID_HEADER: &str = "connection-id";

/// Headers that belong to one hop and never cross the proxy (RFC 9110 §7.6.1), plus `expect`,
/// which hexbroker answers itself by streaming.
///
/// Names, not strings: removing by a `&str` parses the name again on every call, which the
/// profile showed at about 4% of a proxied call.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
];

/// The caller's headers that must never reach Hex: its credentials, and (§7) headers that could
/// change what Hex does with the request behind the broker's back: method overrides, rewrites,
/// and claims about the client's address or host. Every `x-forwarded-*` goes too.
static CALLER_ONLY: [HeaderName; 14] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static(CONNECTION_ID_HEADER),
    header::HOST,
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];
/// Hex's answer headers that would act on hexbroker's own origin rather than on one answer (§7):
/// cookies, transport and content policies, alternative services, refreshes, reporting, and
/// `Link` (which may preload or prefetch other resources). None is relayed.
static ORIGIN_WIDE: [HeaderName; 12] = [
    header::SET_COOKIE,
    HeaderName::from_static("set-cookie2"),
    header::STRICT_TRANSPORT_SECURITY,
    HeaderName::from_static("clear-site-data"),
    header::REFRESH,
    header::CONTENT_SECURITY_POLICY,
    header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    header::ALT_SVC,
    header::LINK,
    HeaderName::from_static("nel"),
    HeaderName::from_static("report-to"),
    HeaderName::from_static("reporting-endpoints"),
];
/// hexbroker's own request id names the exchange; Hex's (if any) would hide it.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Every header with this prefix is dropped on the way to Hex.
const FORWARDED_PREFIX: &str = "x-forwarded-";
/// Hex's CORS headers never reach the caller: hexbroker's own CORS policy decides.
const CORS_PREFIX: &str = "access-control-";

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

impl From<ProxyError> for ApiError {
    fn from(error: ProxyError) -> Self {
        match error {
            ProxyError::Timeout(_) => {
                tracing::warn!(error = %error, "proxy timeout");
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "hex_timeout",
                    "Hex did not answer in time; try again shortly.",
                )
            }
            ProxyError::Unreachable(ref e) => {
                tracing::warn!(error = %e, "proxy upstream error");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "hex_unavailable",
                    "Hex could not be reached; try again shortly.",
                )
            }
            ProxyError::BrokenAnswer(ref e) => {
                tracing::warn!(error = %e, "Hex's answer broke before any of it was relayed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "hex_unavailable",
                    "Hex's answer broke off before it could be relayed; try again shortly.",
                )
            }
            ProxyError::BadBody(_) => {
                ApiError::bad_request("invalid_body", "The request body could not be read.")
            }
            ProxyError::BadUrl => {
                ApiError::bad_request("invalid_path", "The path cannot be forwarded to Hex.")
            }
            ProxyError::BadToken => ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_token_unusable",
                "This connection's Hex token cannot be sent in a header; reconnect it with a new token.",
            ),
            ProxyError::Busy => {
                tracing::warn!("workspace has as many calls in flight to Hex as allowed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "workspace_busy",
                    "This Hex workspace has as many calls in flight as hexbroker allows; try again shortly.",
                )
                .with_retry_after(Some(1))
            }
            ProxyError::Upgrade => {
                tracing::warn!("Hex answered 101 Switching Protocols; not relayed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "hex_unavailable",
                    "Hex answered with a protocol switch, which hexbroker does not relay; try again shortly.",
                )
            }
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

/// The largest request body kept in memory so that the request can be retried; larger or
/// unsized bodies stream through once.
const MAX_REPLAY_BODY: u64 = 64 * 1024;
/// How long a call past its workspace's in-flight bound waits for a slot before `workspace_busy`.
const ORIGIN_WAIT: Duration = Duration::from_millis(250);

type Pooled = Client<HttpsConnector<HttpConnector>, Body>;

/// The pooled clients that carry proxied calls to Hex: one per serving worker, so that a call's
/// connection to Hex lives on the thread that serves the call (see `edge::workers`).
#[derive(Clone, Debug)]
pub struct Upstream {
    clients: std::sync::Arc<[Pooled]>,
    timeout: Duration,
    exchange_timeout: Duration,
    retry: RetryPolicy,
    metrics: Metrics,
    origins: std::sync::Arc<Origins>,
}

/// The proxy's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection to Hex.
    pub connect: Duration,
    /// For Hex to start answering.
    pub head: Duration,
    /// For the whole exchange, bodies included.
    pub exchange: Duration,
}

impl Upstream {
    /// Clients for `workers` serving threads with the given time limits and retry policy.
    pub fn new(timeouts: Timeouts, retry: RetryPolicy, metrics: Metrics, workers: usize) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeouts.connect));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let clients = (0..workers.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    // Each connection's read buffer grows up to this (hyper's default is about
                    // 400 KiB) while a long body streams, and a pooled idle connection keeps
                    // it: the same cap as the client side's (Hex's headers fit many times over).
                    .http1_max_buf_size(crate::edge::server::MAX_BUF)
                    .build(https.clone())
            })
            .collect();
        let origins = std::sync::Arc::new(Origins::new(64, ORIGIN_WAIT));
        Self { clients, timeout: timeouts.head, exchange_timeout: timeouts.exchange, retry, metrics, origins }
    }

    /// The same client with at most `max` calls in flight to each workspace's origin.
    pub fn with_max_per_workspace(mut self, max: u32) -> Self {
        self.origins = std::sync::Arc::new(Origins::new(max, ORIGIN_WAIT));
        self
    }

    /// The per-workspace bounds, for a target to take its workspace's share once.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// This serving worker's client.
    fn client(&self) -> &Pooled {
        &self.clients[crate::edge::workers::current() % self.clients.len()]
    }

    /// Sends `request` to `uri` with `bearer` as its `Authorization`, and relays Hex's answer,
    /// streaming, retrying by §7's rules when the body can be sent again. The caller's request is
    /// edited in place: its credentials and the headers that never reach Hex are removed, and
    /// its head is copied only when another attempt may need it. The first attempt's slot under
    /// the connection's outbound limit is the caller's to take; each retry takes one of its own
    /// from `limit`, within the same wait budget, or is not made. `exchange` learns how many
    /// retries the call made and how long Hex took to answer (for the request log), whether or
    /// not Hex answered.
    pub async fn forward(
        &self,
        uri: Uri,
        bearer: HeaderValue,
        slots: &OriginSlots,
        request: Request<Body>,
        limit: Option<OutboundLimit<'_>>,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, ProxyError> {
        let slot = slots.acquire().await.map_err(|_| ProxyError::Busy)?;
        let (parts, body) = request.into_parts();
        let (method, mut headers) = (parts.method, parts.headers);
        strip_caller_only(&mut headers);
        headers.insert(header::AUTHORIZATION, bearer);

        // GET and HEAD carry no body to Hex (§7): a read-only key cannot smuggle a write in one.
        // What the caller sent with them is left unread (the listener drains or closes it).
        let bodiless = matches!(method, Method::GET | Method::HEAD);
        // A small body of known length is kept so the request can be sent again.
        let mut streamed = None;
        let replay = if bodiless {
            headers.remove(header::CONTENT_LENGTH);
            drop(body);
            Some(bytes::Bytes::new())
        } else {
            match body.size_hint().exact() {
                Some(len) if len <= MAX_REPLAY_BODY => {
                    Some(body.collect().await.map_err(|e| ProxyError::BadBody(e.to_string()))?.to_bytes())
                }
                _ => {
                    streamed = Some(body);
                    None
                }
            }
        };

        let deadline = tokio::time::Instant::now()
            .checked_add(self.exchange_timeout)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let (mut retries, mut waited) = (0, Duration::ZERO);
        loop {
            let body = match (&replay, streamed.take()) {
                (Some(_), _) if bodiless => Body::empty(),
                (Some(bytes), _) => Body::from(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => unreachable!("a streamed body is never retried"),
            };
            let mut upstream = Request::new(body);
            *upstream.method_mut() = method.clone();
            *upstream.uri_mut() = uri.clone();
            let last = replay.is_none() || retries >= self.retry.max_retries;
            *upstream.headers_mut() = if last { std::mem::take(&mut headers) } else { headers.clone() };

            let started = Instant::now();
            let outcome = tokio::time::timeout(self.timeout, self.client().request(upstream)).await;
            exchange.retries = retries;
            exchange.hex_time = matches!(outcome, Ok(Ok(_))).then(|| started.elapsed());
            if let Ok(Err(e)) = &outcome {
                if caller_body_failed(e) {
                    // The caller's body broke (a malformed chunk, a body that stopped coming):
                    // the caller's fault, never counted against Hex.
                    tracing::info!(error = %e, "the caller's request body could not be read");
                    return Err(ProxyError::BadBody(e.to_string()));
                }
            }
            let method_name = method_label(&method);
            let (attempt, hint) = match &outcome {
                Err(_) => {
                    self.metrics.upstream_error("timeout");
                    (Attempt::Lost, None)
                }
                Ok(Err(e)) if e.is_connect() => {
                    self.metrics.upstream_error("connect");
                    (Attempt::NotSent, None)
                }
                Ok(Err(_)) => {
                    self.metrics.upstream_error("lost");
                    (Attempt::Lost, None)
                }
                Ok(Ok(response)) => {
                    self.metrics.observe_upstream(method_name, response.status().as_u16(), started.elapsed());
                    (Attempt::Answered(response.status()), retry_after(response.headers(), SystemTime::now()))
                }
            };
            let wait = replay
                .as_ref()
                .and_then(|_| self.retry.next_wait(&method, attempt, hint, retries, waited))
                .and_then(|wait| match &limit {
                    Some(limit) => limit.reserve_within(wait, self.retry.budget.saturating_sub(waited)).ok(),
                    None => Some(wait),
                });
            match wait {
                Some(wait) => {
                    self.metrics.retry(match attempt {
                        Attempt::NotSent => "not_sent",
                        Attempt::Answered(StatusCode::TOO_MANY_REQUESTS) => "rate_limited",
                        _ => "unavailable",
                    });
                    tracing::info!(
                        ?attempt,
                        wait_ms = wait.as_millis() as u64,
                        retry = retries + 1,
                        "retrying Hex"
                    );
                    tokio::time::sleep(wait).await;
                    retries += 1;
                    waited = waited.saturating_add(wait);
                }
                None => {
                    let response = relay(outcome.map_err(|_| ProxyError::Timeout(self.timeout))?)?;
                    let (parts, body) = response.into_parts();
                    let body = first_frame(body, deadline).await.map_err(|e| {
                        self.metrics.upstream_error("lost");
                        if tokio::time::Instant::now() >= deadline {
                            ProxyError::Timeout(self.exchange_timeout)
                        } else {
                            ProxyError::BrokenAnswer(e.to_string())
                        }
                    })?;
                    return Ok(Response::from_parts(parts, origins::hold(slot, Body::new(body))));
                }
            }
        }
    }
}

/// Hex's answer as the caller gets it: hop-by-hop headers, cookies, CORS and the headers that
/// would act on hexbroker's origin dropped, HTTP/1.1 whatever version Hex spoke, marked as Hex's.
fn relay(
    outcome: Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
) -> Result<Response<hyper::body::Incoming>, ProxyError> {
    let (mut parts, body) = outcome.map_err(ProxyError::Unreachable)?.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::Upgrade);
    }
    parts.version = axum::http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    for name in &ORIGIN_WIDE {
        parts.headers.remove(name);
    }
    remove_prefixed(&mut parts.headers, CORS_PREFIX);
    parts.headers.remove(&REQUEST_ID);
    parts.headers.insert(HeaderName::from_static(UPSTREAM_HEADER), HeaderValue::from_static("hex"));
    Ok(Response::from_parts(parts, body))
}

/// Whether a failed exchange failed on the caller's side: the request body (an axum body, the
/// caller's) returned an error while hyper sent it. Hex's failures never carry an axum error.
fn caller_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<axum::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Hex's body, cut off at `deadline`, with its first frame already in: a body that breaks
/// before its first byte (a chunk size that overflows, a connection dropped) is an error here,
/// while the caller has received nothing and can still be told 502, instead of a reply that
/// ends before its status line. An answer already complete (a HEAD, a 204) waits for nothing.
async fn first_frame(
    body: hyper::body::Incoming,
    deadline: tokio::time::Instant,
) -> Result<Deadline, BoxError> {
    let mut body =
        Deadline { body, first: None, sleep: Box::pin(tokio::time::sleep_until(deadline)), done: false };
    if !body.body.is_end_stream() {
        match body.frame().await {
            Some(Ok(frame)) => body.first = Some(frame),
            Some(Err(e)) => return Err(e),
            None => body.done = true,
        }
    }
    Ok(body)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hex's body with a deadline: a Hex that trickles bytes cannot hold a connection of the
/// broker's for longer than the exchange timeout. The timer is only armed when Hex makes the
/// body wait, so a body that is already there costs no timer at all.
struct Deadline {
    body: hyper::body::Incoming,
    /// The frame read ahead by [`first_frame`], given out first.
    first: Option<http_body::Frame<bytes::Bytes>>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if this.sleep.as_mut().poll(cx).is_ready() => {
                this.done = true;
                tracing::warn!("Hex did not finish its body within the exchange timeout; cut off");
                Poll::Ready(Some(Err("Hex did not finish the body in time".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && (self.done || self.body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let ahead = self.first.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = if self.done { http_body::SizeHint::with_exact(0) } else { self.body.size_hint() };
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(ahead));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

/// Removes what never reaches Hex from the caller's headers: hop-by-hop headers, the caller's
/// credentials, and method-override, rewrite and forwarding headers.
fn strip_caller_only(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    for name in &CALLER_ONLY {
        headers.remove(name);
    }
    remove_prefixed(headers, FORWARDED_PREFIX);
}

/// Removes every header whose name starts with `prefix` (lowercase); allocates only when one is
/// there.
fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    if !headers.keys().any(|name| name.as_str().starts_with(prefix)) {
        return;
    }
    let names: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with(prefix)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes the hop-by-hop headers, including any that `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn overrides_rewrites_and_forwarding_headers_never_reach_hex() {
        let mut headers = HeaderMap::new();
        let names = CALLER_ONLY.iter().map(HeaderName::as_str);
        for name in names.chain(["x-forwarded-for", "x-forwarded-host", "X-Forwarded-Proto"]) {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("x"));
        }
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("x-forwardedness", HeaderValue::from_static("kept: not the prefix"));
        strip_caller_only(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwardedness"]);
    }
}
