//! `ANY /v1/proxy/{path}`: forward a call to the Hex workspace of the connection that
//! `Connection-Id` names, with that connection's token.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Response, StatusCode};

use super::connections::connection_id;
use crate::app::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Result};
use crate::hex::Subdomain;
use crate::proxy::{check_path, CONNECTION_ID_HEADER};
use crate::store;

/// `ANY /v1/proxy/{path}` → `{hex origin}/api/{path}?{query}`.
pub async fn proxy(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response<Body>> {
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    caller.require(if read_only { Scope::ProxyRead } else { Scope::Proxy })?;

    let id = request.headers().get(CONNECTION_ID_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ApiError::bad_request("missing_connection_id", "Name the connection in the Connection-Id header.")
    })?;
    let id = connection_id(id.trim())?;

    let path = request.uri().path().strip_prefix("/v1/proxy").unwrap_or("/");
    check_path(path)?;
    let (connection, sealed) = state
        .store
        .connection_with_token(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    let connection = connection.with_current_status(store::now());
    match connection.status.as_str() {
        "active" => {}
        "expired" => {
            return Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_expired",
                "This connection's Hex token has expired; reconnect it with a new token.",
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "connection_invalid",
                "Hex no longer accepts this connection's token; verify or reconnect it.",
            ))
        }
    }
    let token = state.keyring.open_token(id, &sealed).map_err(ApiError::internal)?;

    let origin = state.hex.origin(&Subdomain::from_stored(connection.subdomain));
    let url = match request.uri().query() {
        Some(query) => format!("{origin}/api{path}?{query}"),
        None => format!("{origin}/api{path}"),
    };
    Ok(state.upstream.forward(&url, &token, request).await?)
}
