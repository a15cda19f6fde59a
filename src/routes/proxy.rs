//! The two ways in to Hex: `ANY /v1/proxy/{path}` for internal callers that name the connection
//! in `Connection-Id`, and `ANY /api/{path}` (the drop-in surface) for existing Hex clients that
//! hold a connection key in place of a Hex token. Both forward to `{hex origin}/api/{path}`.
//! Only the methods Hex's API uses reach these handlers (the router names them); TRACE, CONNECT
//! and the like answer 405 with `Allow` there.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::connections::{connection_id, open_stored};
use crate::app::AppState;
use crate::auth::{Caller, ConnectionCaller, Scope};
use crate::error::{ApiError, Result};
use crate::lifecycle::Status;
use crate::proxy::{check_path, Exchange, Linked, OutboundLimit, Relink, Target, CONNECTION_ID_HEADER};
use crate::requestlog::{self, Via};
use crate::store::ApiKey;
use crate::verify;

/// The scope a method needs: GET and HEAD read, everything else may change something.
fn scope_for(method: &Method) -> Scope {
    if matches!(*method, Method::GET | Method::HEAD) {
        Scope::ProxyRead
    } else {
        Scope::Proxy
    }
}

/// `ANY /v1/proxy/{path}` with an API key and `Connection-Id`.
pub async fn proxy(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response<Body>> {
    let scope = caller.require(scope_for(request.method()));
    let id = match (scope, named_connection(&request)) {
        (Ok(()), Ok(id)) => id,
        // A caller without the scope is refused first, and recorded when it named a connection
        // of its tenant.
        (Err(refusal), Ok(id)) => {
            let call = state.request_log.begin(caller.key(), id, Via::Proxy, &request, state.clock.now());
            return finish(&state, &caller.tenant, id, call, Outcome::refused(refusal)).await;
        }
        (Err(refusal), Err(_)) | (Ok(()), Err(refusal)) => return Err(refusal),
    };
    let call = state.request_log.begin(caller.key(), id, Via::Proxy, &request, state.clock.now());
    let outcome = forward(&state, &caller.tenant, id, "/v1/proxy", request).await;
    finish(&state, &caller.tenant, id, call, outcome).await
}

/// The connection that `Connection-Id` names.
fn named_connection(request: &Request) -> Result<Uuid> {
    let mut ids = request.headers().get_all(CONNECTION_ID_HEADER).iter();
    let id = ids.next().ok_or_else(|| {
        ApiError::bad_request("missing_connection_id", "Name the connection in the Connection-Id header.")
    })?;
    if ids.next().is_some() {
        // Two ids could be read one way here and another way by something in between.
        return Err(ApiError::bad_request(
            "invalid_connection_id",
            "Send one Connection-Id header, naming one connection.",
        ));
    }
    let id = id.to_str().map_err(|_| {
        ApiError::bad_request(
            "invalid_connection_id",
            "The Connection-Id header is not ASCII; send the connection's id as it was given.",
        )
    })?;
    connection_id(id.trim())
}

/// `ANY /api/{path}` with a connection key: a Hex client pointed at hexbroker works unchanged.
pub async fn drop_in(
    State(state): State<AppState>,
    caller: ConnectionCaller,
    request: Request,
) -> Result<Response<Body>> {
    let id = caller.connection_id;
    let call = state.request_log.begin(caller.key(), id, Via::Api, &request, state.clock.now());
    let outcome = if caller.require(scope_for(request.method())).is_err() {
        Outcome::refused(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_key",
            "This connection key is read-only (proxy:read): it may send only GET and HEAD requests.",
        ))
    } else {
        forward(&state, &caller.tenant, id, "/api", request).await
    };
    finish(&state, &caller.tenant, id, call, outcome).await
}

/// How a forwarded call ended, with what the request log wants to know of it.
struct Outcome {
    result: Result<Response<Body>>,
    exchange: Exchange,
    /// Whether the connection was found in the caller's tenant.
    known: bool,
}

impl Outcome {
    fn refused(error: ApiError) -> Self {
        Self { result: Err(error), exchange: Exchange::default(), known: false }
    }
}

/// Records the call (when the log is on) and returns its answer. A refusal is recorded only when
/// the call named a connection of the caller's tenant: one that names none is nobody's call.
async fn finish(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    call: Option<requestlog::Call>,
    outcome: Outcome,
) -> Result<Response<Body>> {
    let Some(call) = call else { return outcome.result };
    match outcome.result {
        Ok(response) => Ok(call.answered(response, outcome.exchange)),
        Err(error) => {
            let known = outcome.known
                || (error.code() != "not_found"
                    && (state.targets.get(tenant, id).is_some()
                        || matches!(state.store.connection(tenant, id).await, Ok(Some(_)))));
            if known {
                call.refused(&error, outcome.exchange);
            }
            Err(error)
        }
    }
}

/// An MCP tool call (§14): the request the MCP layer built (`/mcp/v1/...?query`), sent through
/// the same path as `/v1/proxy` and recorded in the request log with `via: mcp`.
pub(crate) async fn forward_tool_call(
    state: &AppState,
    key: &Arc<ApiKey>,
    tenant: &str,
    id: Uuid,
    request: Request,
) -> Result<Response<Body>> {
    let call = state.request_log.begin(key, id, Via::Mcp, &request, state.clock.now());
    let outcome = forward(state, tenant, id, "/mcp", request).await;
    finish(state, tenant, id, call, outcome).await
}

/// Forwards `request` (whose path starts with `prefix`) to the Hex workspace of connection `id`.
async fn forward(state: &AppState, tenant: &str, id: Uuid, prefix: &str, request: Request) -> Outcome {
    let (mut exchange, mut known) = (Exchange::default(), false);
    let result = forward_to(state, tenant, id, prefix, request, &mut exchange, &mut known).await;
    Outcome { result, exchange, known }
}

async fn forward_to(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    prefix: &str,
    request: Request,
    exchange: &mut Exchange,
    known: &mut bool,
) -> Result<Response<Body>> {
    let path = request.uri().path().strip_prefix(prefix).unwrap_or("/");
    check_path(path)?;
    let target = target(state, tenant, id).await?;
    *known = true;
    let now = state.clock.now();
    match target.status(now) {
        Status::Active => {}
        Status::Expired => {
            return Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_expired",
                "This connection's Hex token has expired; reconnect it with a new token.",
            ))
        }
        Status::Invalid => {
            return Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_invalid",
                "Hex no longer accepts this connection's token; verify or reconnect it.",
            ))
        }
    }
    let limit = target.rate_limit_per_minute.or(state.config.proxy_rate_limit);
    let limit = limit.map(|per_minute| OutboundLimit { limiter: &state.limiter, connection: id, per_minute });
    if let Some(limit) = limit {
        hold_for_slot(state, limit).await?;
    }
    let uri = target.uri(request.uri(), path)?;
    let linked = Linked::of(request.method(), path);
    let mut request = request;
    if linked.is_some() {
        // The links are rewritten in the body, which must come uncoded to be read.
        request.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    state.usage.touch(id, crate::proxy::minute_of(now));
    let response =
        state.upstream.forward(uri, target.bearer(), target.slots(), request, limit, exchange).await?;
    let public = state.config.public_url.as_str().trim_end_matches('/');
    // An MCP tool call's links point to the drop-in surface, where the same connection key works.
    let surface = if prefix == "/mcp" { "/api" } else { prefix };
    let relink = Relink { origin: target.hex_origin(), public, surface };
    let response = relink.apply(response, linked).await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        // One odd path may answer 401 for a good token: ask Hex about the token itself, beside
        // this response, and invalidate only if it refuses this very token. The caller gets
        // Hex's own answer whatever the bookkeeping does.
        tracing::info!(connection_id = %id, "Hex answered 401 to a proxied call; re-checking the token");
        verify::after_unauthorized(
            state,
            verify::Unauthorized {
                tenant: tenant.to_owned(),
                id,
                subdomain: target.subdomain.to_string(),
                hex_url: target.hex_url.as_deref().map(str::to_owned),
                nonce: target.token_nonce.to_vec(),
                token: target.token(),
            },
        );
    }
    Ok(response)
}

/// Connection `id`'s prepared target: from the cache, or read from the store, opened and
/// prepared (then cached, unless the connection changed meanwhile).
async fn target(state: &AppState, tenant: &str, id: Uuid) -> Result<Arc<Target>> {
    if let Some(target) = state.targets.get(tenant, id) {
        return Ok(target);
    }
    let fill = state.targets.fill();
    let row = state
        .store
        .connection_with_token(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    let (connection, sealed) = &*row;
    let (workspace, token) = open_stored(state, connection, sealed)?;
    let origin = state.hex.origin(&workspace);
    let target = Arc::new(Target::new(connection, &token, &origin, &sealed.nonce, state.upstream.origins())?);
    state.targets.insert(fill, target.clone());
    Ok(target)
}

/// Takes a slot under the connection's outbound limit, waiting for one within the retry budget;
/// past the budget, hexbroker answers 429 itself and Hex never sees the call.
async fn hold_for_slot(state: &AppState, limit: OutboundLimit<'_>) -> Result<()> {
    match limit.reserve_within(Duration::ZERO, state.config.proxy_retry_budget) {
        Ok(wait) if wait.is_zero() => Ok(()),
        Ok(wait) => {
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Err(wait) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "connection_rate_limited",
            format!(
                "This connection may send {} calls a minute to Hex; try again shortly.",
                limit.per_minute
            ),
        )
        .with_retry_after(Some(wait.as_secs_f64().ceil() as u64))),
    }
}
