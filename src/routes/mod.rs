//! The HTTP surface: the router, its middleware, and thin handlers per resource.

mod audit;
mod connect;
mod connections;
mod events;
mod health;
mod keys;
mod page;
mod paging;
mod proxy;
mod requests;
mod sessions;
mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::app::AppState;
use crate::audit::RequestInfo;
use crate::error::ApiError;
pub(crate) use connections::connection_id;
// The actions the operator console shares with the API: one code path each (§12).
pub(crate) use connections::{delete_connection, verify_connection, ConnectionView};
pub(crate) use events::redeliver_event;
pub(crate) use keys::revoke_connection_key;
pub(crate) use proxy::forward_tool_call;
pub(crate) use requests::status as request_status_filter;
pub(crate) use webhooks::{
    create_endpoint, endpoint_id, queue_test_event, rotate_endpoint_secret, update_endpoint,
    UpdateEndpointBody,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes a browser may call from another origin (CORS, from `HEXBROKER_ALLOWED_ORIGINS` only).
fn browser_facing(state: &AppState) -> Router<AppState> {
    // The explicit OPTIONS handlers give the CORS layer a preflight to answer: axum layers each
    // method's handler, so a method without one would never reach it.
    let routes = Router::new()
        .route("/v1/connect", post(connect::connect).options(preflight))
        .route("/v1/connect/sessions", post(sessions::create).options(preflight))
        .route("/v1/connect/sessions/current", get(sessions::status).options(preflight));
    let origins = &state.config.allowed_origins;
    if origins.is_empty() {
        return routes;
    }
    routes.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([REQUEST_ID])
            .max_age(Duration::from_secs(600)),
    )
}

/// The operator console (§12): server-rendered pages under `/console`, signed in with a console
/// session (see `crate::console`); every POST is checked for its CSRF token and origin.
fn console_routes() -> Router<AppState> {
    use crate::console::{self as c, connections as cc, keys as ck, lists as cl, webhooks as cw};
    Router::new()
        .route("/console", get(c::sign_in_page).post(c::sign_in))
        .route("/console/sign-out", post(c::sign_out))
        .route("/console/app.css", get(c::style))
        .route("/console/app.js", get(c::script))
        .route("/console/connections", get(cc::list))
        .route("/console/connections/{id}", get(cc::show))
        .route("/console/connections/{id}/verify", post(cc::verify))
        .route("/console/connections/{id}/delete", post(cc::delete))
        .route("/console/connections/{id}/keys/{key_id}/revoke", post(cc::revoke_key))
        .route("/console/events", get(cl::events))
        .route("/console/events/{id}/redeliver", post(cl::redeliver))
        .route("/console/audit", get(cl::audit))
        .route("/console/keys", get(ck::list).post(ck::create))
        .route("/console/keys/{id}/revoke", post(ck::revoke))
        .route("/console/webhooks", get(cw::list).post(cw::create))
        .route("/console/webhooks/{id}", get(cw::show))
        .route("/console/webhooks/{id}/enabled", post(cw::set_enabled))
        .route("/console/webhooks/{id}/rotate", post(cw::rotate))
        .route("/console/webhooks/{id}/test", post(cw::test))
}

/// `/metrics`, when `here`: on the main listener unless `HEXBROKER_METRICS_LISTEN` gives it a
/// listener of its own.
fn metrics_routes(here: bool) -> Router<AppState> {
    let routes = Router::new();
    if !here {
        return routes;
    }
    routes.route("/metrics", get(health::metrics))
}

/// The router for `HEXBROKER_METRICS_LISTEN`: `/metrics` alone, with the same middleware.
pub fn metrics_router(state: AppState) -> Router {
    with_middleware(metrics_routes(true).fallback(route_not_found).with_state(state.clone()), state)
}

/// Every route hexbroker serves, with its middleware.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(metrics_routes(state.config.metrics_listen.is_none()))
        .route("/openapi.yaml", get(health::openapi))
        .route("/connect", get(page::index))
        .route("/connect/app.js", get(page::script))
        .route("/connect/app.css", get(page::style))
        .route("/connect/sdk.js", get(page::sdk))
        .merge(browser_facing(&state))
        .merge(console_routes())
        .route("/v1/connections", get(connections::list))
        .route(
            "/v1/connections/{id}",
            get(connections::get_one).patch(connections::update).delete(connections::delete),
        )
        .route("/v1/connections/{id}/verify", post(connections::verify))
        .route("/v1/connections/{id}/keys", post(keys::create))
        .route("/v1/connections/{id}/keys/{key_id}", delete(keys::revoke))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}/redeliver", post(events::redeliver))
        .route("/v1/audit-events", get(audit::list))
        .route("/v1/webhook-endpoints", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhooks::get_one).patch(webhooks::update).delete(webhooks::delete),
        )
        .route("/v1/webhook-endpoints/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhook-endpoints/{id}/test", post(webhooks::test))
        .route("/v1/webhook-endpoints/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/connections/{id}/requests", get(requests::for_connection))
        .route("/v1/requests", get(requests::list))
        // The methods Hex's API uses, each named, so that any other (TRACE, CONNECT) answers 405
        // with `Allow` as every route does: `any` would take them all and leave `Allow` out.
        .route(
            "/v1/proxy/{*path}",
            get(proxy::proxy)
                .head(proxy::proxy)
                .post(proxy::proxy)
                .put(proxy::proxy)
                .patch(proxy::proxy)
                .delete(proxy::proxy)
                .options(proxy::proxy),
        )
        .route(
            "/api/{*path}",
            get(proxy::drop_in)
                .head(proxy::drop_in)
                .post(proxy::drop_in)
                .put(proxy::drop_in)
                .patch(proxy::drop_in)
                .delete(proxy::drop_in)
                .options(proxy::drop_in),
        )
        // GET /mcp answers 405 (with `Allow`): hexbroker offers no server-to-client SSE stream, as
        // the Streamable HTTP transport allows.
        .route("/mcp", post(crate::mcp::post).delete(crate::mcp::delete))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    with_middleware(routes, state)
}

/// Request ids, sensitive-header marking, the request span, metrics, and the in-flight cap.
fn with_middleware(routes: Router, state: AppState) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            let request_id =
                request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
            let caller_request_id =
                request.extensions().get::<CallerRequestId>().and_then(|id| id.0.to_str().ok());
            tracing::info_span!(
                "request",
                method = %request.method(),
                route,
                request_id,
                caller_request_id,
                key_id = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(|response: &Response, latency: Duration, span: &Span| {
            span.record("status", response.status().as_u16());
            tracing::info!(latency_ms = latency.as_secs_f64() * 1000.0, "finished");
        })
        .on_failure(());

    routes.layer(
        ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(take_caller_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
            ]))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::track))
            .layer(axum::middleware::from_fn_with_state(state, crate::edge::shed)),
    )
}

/// The caller's own `X-Request-Id`, when it has §5's shape: kept beside hexbroker's id (in the
/// request's span and the audit trail), never in its place.
#[derive(Clone, Debug)]
pub struct CallerRequestId(pub HeaderValue);

/// Takes the caller's `X-Request-Id` off the request, so that the id layer always sets
/// hexbroker's own: a caller cannot make two requests share an id, nor have a 60 KB id echoed
/// and stored. One that fits §5's shape is kept as [`CallerRequestId`]; any other is dropped.
/// Without the header this is one lookup, and nothing is allocated.
fn take_caller_request_id(mut request: Request) -> Request {
    if let Some(value) = request.headers_mut().remove(&REQUEST_ID) {
        if crate::input::caller_request_id(value.as_bytes()).is_some() {
            request.extensions_mut().insert(CallerRequestId(value));
        }
    }
    request
}

/// Request ids: 64 random bits per process, then a counter, so a fresh id costs no system call
/// yet ids from different replicas and restarts do not collide.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let prefix = hex::encode(crate::crypto::random_bytes::<8>());
        Self { prefix: prefix.into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        use std::io::Write as _;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // 16 hex digits, a dash and at most 16 more: written on the stack, copied once.
        let mut buf = [0u8; 40];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        write!(cursor, "{}-{n:x}", self.prefix).ok()?;
        let len = usize::try_from(cursor.position()).ok()?;
        HeaderValue::from_bytes(buf.get(..len)?).ok().map(RequestId::new)
    }
}

/// The request's id and client address, for the audit trail.
impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .map(str::to_owned);
        let caller_request_id =
            parts.extensions.get::<CallerRequestId>().and_then(|id| id.0.to_str().ok()).map(str::to_owned);
        let client_addr =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Self { request_id, caller_request_id, client_addr })
    }
}

/// A CORS preflight; the CORS layer adds the headers when the origin is allowed.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "No such route; see /openapi.yaml for the API.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not accept that method.",
    )
}
