//! The HTTP surface: the router, its middleware, and thin handlers per resource.

mod audit;
mod connect;
mod connections;
mod events;
mod health;
mod keys;
mod observe;
mod page;
mod proxy;
mod requests;
mod sessions;
mod webhooks;

// Shared by the handlers above; no routes of their own.
mod paging;
mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use uuid::Uuid;

use crate::audit::RequestInfo;
use crate::error::{ApiError, Code};
use crate::state::AppState;
// The actions the operator console shares with the API: one code path each (§12).
pub(crate) use connections::{delete_connection, verify_connection};
pub(crate) use events::redeliver_event;
pub(crate) use keys::revoke_connection_key;
pub(crate) use requests::status as request_status_filter;
pub(crate) use view::ConnectionView;
pub(crate) use webhooks::{
    create_endpoint, endpoint_id, queue_test_event, rotate_endpoint_secret, update_endpoint,
    UpdateEndpointBody,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The JSON bodies the handlers read, named so that the spec test can compare their fields with
/// `openapi.yaml`'s request schemas.
pub mod bodies {
    pub use super::connect::ConnectBody;
    pub use super::connections::UpdateBody;
    pub use super::keys::CreateKeyBody;
    pub use super::sessions::CreateSessionBody;
    pub use super::webhooks::{CreateEndpointBody, UpdateEndpointBody};
}

/// A router that remembers what it serves: the router is built only through [`Routes::route`],
/// so [`operations`] lists exactly what it serves.
struct Routes {
    router: Router<AppState>,
    served: Vec<(Method, &'static str)>,
}

/// One method of a route and its handler.
struct Endpoint {
    method: Method,
    add: Box<dyn FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>>,
}

/// `handler` for `method` (for GET, as axum's `get`, also for HEAD when no HEAD is named).
fn on<H, T>(method: Method, handler: H) -> Endpoint
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("hexbroker routes only methods axum filters");
    Endpoint { method, add: Box::new(move |methods: MethodRouter<AppState>| methods.on(filter, handler)) }
}

impl Routes {
    fn new() -> Self {
        Self { router: Router::new(), served: Vec::new() }
    }

    /// Serves `path` with each endpoint's method and handler.
    fn route(mut self, path: &'static str, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let mut methods = MethodRouter::new();
        for Endpoint { method, add } in endpoints {
            self.served.push((method, path));
            methods = add(methods);
        }
        self.router = self.router.route(path, methods);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.served.extend(other.served);
        self.router = self.router.merge(other.router);
        self
    }
}

/// Every (method, path) the API serves, as axum writes paths (`{*path}` for a wildcard), with
/// `/metrics` on the main listener. HEAD is listed where it is named, not where GET serves it.
pub fn operations() -> Vec<(Method, &'static str)> {
    api(&[], true).served
}

/// The routes a browser may call from another origin (CORS, from `HEXBROKER_ALLOWED_ORIGINS` only).
fn browser_facing(origins: &[HeaderValue]) -> Routes {
    // The explicit OPTIONS handlers give the CORS layer a preflight to answer: axum layers each
    // method's handler, so a method without one would never reach it.
    let routes = Routes::new()
        .route("/v1/connect", [on(Method::POST, connect::connect), on(Method::OPTIONS, preflight)])
        .route("/v1/connect/sessions", [on(Method::POST, sessions::create), on(Method::OPTIONS, preflight)])
        .route(
            "/v1/connect/sessions/current",
            [on(Method::GET, sessions::status), on(Method::OPTIONS, preflight)],
        );
    if origins.is_empty() {
        return routes;
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([REQUEST_ID])
        .max_age(Duration::from_secs(600));
    Routes { router: routes.router.layer(cors), served: routes.served }
}

/// The operator console (§12): server-rendered pages under `/console`, signed in with a console
/// session (see `crate::console`); every POST is checked for its CSRF token and origin.
fn console_routes() -> Routes {
    use crate::console::{self as c, connections as cc, keys as ck, lists as cl, webhooks as cw};
    use Method as M;
    Routes::new()
        .route("/console", [on(M::GET, c::sign_in_page), on(M::POST, c::sign_in)])
        .route("/console/sign-out", [on(M::POST, c::sign_out)])
        .route("/console/app.css", [on(M::GET, c::style)])
        .route("/console/app.js", [on(M::GET, c::script)])
        .route("/console/connections", [on(M::GET, cc::list)])
        .route("/console/connections/{id}", [on(M::GET, cc::show)])
        .route("/console/connections/{id}/verify", [on(M::POST, cc::verify)])
        .route("/console/connections/{id}/delete", [on(M::POST, cc::delete)])
        .route("/console/connections/{id}/keys/{key_id}/revoke", [on(M::POST, cc::revoke_key)])
        .route("/console/events", [on(M::GET, cl::events)])
        .route("/console/events/{id}/redeliver", [on(M::POST, cl::redeliver)])
        .route("/console/audit", [on(M::GET, cl::audit)])
        .route("/console/keys", [on(M::GET, ck::list), on(M::POST, ck::create)])
        .route("/console/keys/{id}/revoke", [on(M::POST, ck::revoke)])
        .route("/console/webhooks", [on(M::GET, cw::list), on(M::POST, cw::create)])
        .route("/console/webhooks/{id}", [on(M::GET, cw::show)])
        .route("/console/webhooks/{id}/enabled", [on(M::POST, cw::set_enabled)])
        .route("/console/webhooks/{id}/rotate", [on(M::POST, cw::rotate)])
        .route("/console/webhooks/{id}/test", [on(M::POST, cw::test)])
}

/// `/metrics`, when `here`: on the main listener unless `HEXBROKER_METRICS_LISTEN` gives it a
/// listener of its own.
fn metrics_routes(here: bool) -> Routes {
    let routes = Routes::new();
    if !here {
        return routes;
    }
    routes.route("/metrics", [on(Method::GET, health::metrics)])
}

/// The router for `HEXBROKER_METRICS_LISTEN`: `/metrics` alone, with the same middleware.
pub fn metrics_router(state: AppState) -> Router {
    with_middleware(metrics_routes(true).router.fallback(route_not_found).with_state(state.clone()), state)
}

/// The methods Hex's API uses, each named, so that any other (TRACE, CONNECT) answers 405 with
/// `Allow` as every route does: `any` would take them all and leave `Allow` out.
const HEX_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

/// Every route of the API, with CORS for `origins` and `/metrics` when `metrics_here`.
fn api(origins: &[HeaderValue], metrics_here: bool) -> Routes {
    use Method as M;
    Routes::new()
        .route("/healthz", [on(M::GET, health::healthz)])
        .route("/readyz", [on(M::GET, health::readyz)])
        .merge(metrics_routes(metrics_here))
        .route("/openapi.yaml", [on(M::GET, health::openapi)])
        .route("/connect", [on(M::GET, page::index)])
        .route("/connect/app.js", [on(M::GET, page::script)])
        .route("/connect/app.css", [on(M::GET, page::style)])
        .route("/connect/sdk.js", [on(M::GET, page::sdk)])
        .merge(browser_facing(origins))
        .route("/v1/connections", [on(M::GET, connections::list)])
        .route(
            "/v1/connections/{id}",
            [
                on(M::GET, connections::get_one),
                on(M::PATCH, connections::update),
                on(M::DELETE, connections::delete),
            ],
        )
        .route("/v1/connections/{id}/verify", [on(M::POST, connections::verify)])
        .route("/v1/connections/{id}/keys", [on(M::POST, keys::create)])
        .route("/v1/connections/{id}/keys/{key_id}", [on(M::DELETE, keys::revoke)])
        .route("/v1/events", [on(M::GET, events::list)])
        .route("/v1/events/{id}/redeliver", [on(M::POST, events::redeliver)])
        .route("/v1/audit-events", [on(M::GET, audit::list)])
        .route("/v1/webhook-endpoints", [on(M::GET, webhooks::list), on(M::POST, webhooks::create)])
        .route(
            "/v1/webhook-endpoints/{id}",
            [on(M::GET, webhooks::get_one), on(M::PATCH, webhooks::update), on(M::DELETE, webhooks::delete)],
        )
        .route("/v1/webhook-endpoints/{id}/rotate-secret", [on(M::POST, webhooks::rotate_secret)])
        .route("/v1/webhook-endpoints/{id}/test", [on(M::POST, webhooks::test)])
        .route("/v1/webhook-endpoints/{id}/deliveries", [on(M::GET, webhooks::deliveries)])
        .route("/v1/connections/{id}/requests", [on(M::GET, requests::for_connection)])
        .route("/v1/requests", [on(M::GET, requests::list)])
        .route("/v1/proxy/{*path}", HEX_METHODS.map(|method| on(method, proxy::proxy)))
        .route("/api/{*path}", HEX_METHODS.map(|method| on(method, proxy::drop_in)))
        // GET /mcp answers 405 (with `Allow`): hexbroker offers no server-to-client SSE stream, as
        // the Streamable HTTP transport allows.
        .route("/mcp", [on(M::POST, crate::mcp::post), on(M::DELETE, crate::mcp::delete)])
        .merge(console_routes())
}

/// Every route hexbroker serves, with its middleware.
pub fn router(state: AppState) -> Router {
    let routes = api(&state.config.allowed_origins, state.config.metrics_listen.is_none())
        .router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    with_middleware(routes, state)
}

/// Request ids, sensitive-header marking, then (innermost, [`observe`]) the request span and
/// access log line, metrics, and the in-flight cap.
fn with_middleware(routes: Router, state: AppState) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(take_caller_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
            ]))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(observe::ObserveLayer::new(state.metrics.clone(), state.edge.clone())),
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
    /// The random bits, as 16 hex digits.
    prefix: [u8; 16],
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(hex::encode(crate::crypto::random_bytes::<8>()).as_bytes());
        Self { prefix, next: Arc::new(AtomicU64::new(1)) }
    }

    /// `PREFIX-n`, `n` in lowercase hex: written on the stack, copied once.
    fn id(&self, n: u64) -> Option<HeaderValue> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 33];
        buf[..16].copy_from_slice(&self.prefix);
        buf[16] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        for (i, place) in buf[17..17 + digits].iter_mut().enumerate() {
            *place = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf[..17 + digits]).ok()
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        self.id(self.next.fetch_add(1, Ordering::Relaxed)).map(RequestId::new)
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

/// Reads a connection id (from the path or `Connection-Id`); anything that is not one in its
/// canonical spelling names no connection.
pub(crate) fn connection_id(raw: &str) -> Result<Uuid, ApiError> {
    crate::input::canonical_uuid(raw).ok_or_else(|| ApiError::not_found("connection"))
}

/// A CORS preflight; the CORS layer adds the headers when the origin is allowed.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, Code::RouteNotFound, "No such route; see /openapi.yaml for the API.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::MethodNotAllowed,
        "This route does not accept that method.",
    )
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    #[test]
    fn request_ids_are_the_prefix_then_the_counter_in_hex() {
        let ids = RequestIds::new();
        let prefix = std::str::from_utf8(&ids.prefix).unwrap().to_owned();
        assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{prefix}");
        for n in [0, 1, 9, 10, 15, 16, 255, 256, 0xdead_beef, u64::MAX >> 4, u64::MAX] {
            assert_eq!(ids.id(n).unwrap().to_str().unwrap(), format!("{prefix}-{n:x}"));
        }
    }
}
