//! Relay: Hex's answer as the caller gets it. Its head is cleaned here (hop-by-hop headers, and
//! those that would act on hexbroker's own origin, dropped; HTTP/1.1 whatever Hex spoke; marked as
//! Hex's), and its body streams through with the exchange's deadline, its first frame read ahead
//! so that an answer broken before its first byte is still a clean 502. Links in a JSON body are
//! pointed back at hexbroker by [`super::links`].

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::{ProxyError, UPSTREAM_HEADER};

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
/// Hex's CORS headers never reach the caller: hexbroker's own CORS policy decides.
const CORS_PREFIX: &str = "access-control-";

/// Hex's answer as the caller gets it: hop-by-hop headers, cookies, CORS and the headers that
/// would act on hexbroker's origin dropped, HTTP/1.1 whatever version Hex spoke, marked as Hex's.
pub(super) fn relay(
    outcome: Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
) -> Result<Response<hyper::body::Incoming>, ProxyError> {
    let (mut parts, body) = outcome.map_err(ProxyError::Unreachable)?.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::Upgrade);
    }
    parts.version = axum::http::Version::HTTP_11;
    strip(&mut parts.headers, never_relayed);
    parts.headers.insert(HeaderName::from_static(UPSTREAM_HEADER), HeaderValue::from_static("hex"));
    Ok(Response::from_parts(parts, body))
}

/// Hex's body, cut off at `deadline`, with its first frame already in: a body that breaks
/// before its first byte (a chunk size that overflows, a connection dropped) is an error here,
/// while the caller has received nothing and can still be told 502, instead of a reply that
/// ends before its status line. An answer already complete (a HEAD, a 204) waits for nothing.
pub(super) async fn first_frame(
    body: hyper::body::Incoming,
    deadline: tokio::time::Instant,
) -> Result<Deadline, BoxError> {
    // The request's span, for the one line the body may log once its head has gone out.
    let span = tracing::Span::current();
    let mut body = Deadline { body, first: None, deadline, sleep: None, done: false, span };
    if !body.body.is_end_stream() {
        match body.frame().await {
            Some(Ok(frame)) => body.first = Some(frame),
            Some(Err(e)) => return Err(e),
            None => body.done = true,
        }
    }
    Ok(body)
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hex's body with a deadline: a Hex that trickles bytes cannot hold a connection of the
/// broker's for longer than the exchange timeout. The timer is only made when Hex makes the
/// body wait, so a body that is already there costs no timer at all.
pub(super) struct Deadline {
    body: hyper::body::Incoming,
    /// The frame read ahead by [`first_frame`], given out first.
    first: Option<http_body::Frame<bytes::Bytes>>,
    deadline: tokio::time::Instant,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    /// The request's span, which the body outlives as it streams.
    span: tracing::Span,
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
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.done = true;
                this.span.in_scope(|| {
                    tracing::warn!("Hex did not finish its body within the exchange timeout; cut off");
                });
                Poll::Ready(Some(Err("Hex did not finish the body in time".into())))
            }
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

/// Whether Hex's answer loses `name` on its way to the caller.
fn never_relayed(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || ORIGIN_WIDE.contains(name)
        || *name == REQUEST_ID
        || name.as_str().starts_with(CORS_PREFIX)
}

/// Whether `name` is a hop-by-hop header (or `expect`): see [`HOP_BY_HOP`].
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes every header `doomed` names, and those `Connection` names when `doomed` names
/// `Connection` and it is there. One pass over the headers present (a handful) instead of a
/// lookup per name that might be: the profile showed 48 removals per proxied call, nearly all of
/// absent names, at about 6% of the call. Allocates only when a header goes.
pub(super) fn strip(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&doomed) {
        return;
    }
    let mut names: Vec<HeaderName> = Vec::new();
    if doomed(&header::CONNECTION) {
        names.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
        );
    }
    names.extend(headers.keys().filter(|name| doomed(name)).cloned());
    for name in names {
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
        strip(&mut headers, is_hop_by_hop);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn hex_answers_lose_what_would_act_on_hexbrokers_origin() {
        let mut headers = HeaderMap::new();
        for name in HOP_BY_HOP.iter().chain(&ORIGIN_WIDE).chain([&REQUEST_ID]) {
            headers.append(name.clone(), HeaderValue::from_static("x"));
        }
        headers.append("access-control-allow-origin", HeaderValue::from_static("*"));
        headers.append("Access-Control-Max-Age", HeaderValue::from_static("1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-hex-trace", HeaderValue::from_static("kept"));
        strip(&mut headers, never_relayed);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-hex-trace"]);
        let mut none = HeaderMap::new();
        strip(&mut none, is_hop_by_hop);
        assert!(none.is_empty());
    }
}
