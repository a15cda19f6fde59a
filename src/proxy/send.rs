//! Send: the upstream request made from the caller's (its credentials and the headers that never
//! reach Hex removed, the connection's token put in), sent on the serving worker's pooled client,
//! and retried by §7's rules while its body can be sent again. Hex's answer goes on to
//! [`super::relay`] before the caller sees any of it.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::relay::{first_frame, is_hop_by_hop, relay, strip};
use super::{
    origins, retry_after, Attempt, Exchange, OriginSlots, Origins, OutboundLimit, ProxyError, RetryPolicy,
    CONNECTION_ID_HEADER,
};
use crate::metrics::{method_label, Metrics};

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
/// Every header with this prefix is dropped on the way to Hex.
const FORWARDED_PREFIX: &str = "x-forwarded-";
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

        // One clock reading per attempt: it starts the attempt's timeout and its time to answer,
        // and the first one the exchange's deadline.
        let mut started = tokio::time::Instant::now();
        let deadline = later(started, self.exchange_timeout);
        let (mut retries, mut waited) = (0, Duration::ZERO);
        loop {
            if retries > 0 {
                started = tokio::time::Instant::now();
            }
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

            let outcome =
                tokio::time::timeout_at(later(started, self.timeout), self.client().request(upstream)).await;
            let answered_in = matches!(outcome, Ok(Ok(_))).then(|| started.elapsed());
            exchange.retries = retries;
            exchange.hex_time = answered_in;
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
                    let status = response.status();
                    self.metrics.observe_upstream(
                        method_name,
                        status.as_u16(),
                        answered_in.unwrap_or_default(),
                    );
                    // The wall clock only for a `Retry-After` (which may be a date).
                    let hint = response
                        .headers()
                        .contains_key(header::RETRY_AFTER)
                        .then(|| retry_after(response.headers(), SystemTime::now()))
                        .flatten();
                    (Attempt::Answered(status), hint)
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

/// `by` after `at`, or a year after it when that is past what an instant can hold.
fn later(at: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    at.checked_add(by).unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
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

/// Removes what never reaches Hex from the caller's headers: hop-by-hop headers, the caller's
/// credentials, and method-override, rewrite and forwarding headers.
fn strip_caller_only(headers: &mut HeaderMap) {
    strip(headers, |name| {
        is_hop_by_hop(name) || CALLER_ONLY.contains(name) || name.as_str().starts_with(FORWARDED_PREFIX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_rewrites_and_forwarding_headers_never_reach_hex() {
        let mut headers = HeaderMap::new();
        let names = CALLER_ONLY.iter().map(HeaderName::as_str);
        for name in names.chain(["x-forwarded-for", "x-forwarded-host", "X-Forwarded-Proto"]) {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("x"));
        }
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("x-forwardedness", HeaderValue::from_static("kept: not the prefix"));
        headers.insert("connection", HeaderValue::from_static("x-private"));
        headers.insert("x-private", HeaderValue::from_static("named by connection"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        strip_caller_only(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwardedness"]);
    }
}
