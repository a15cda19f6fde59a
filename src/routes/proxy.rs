//! The two ways in to Hex: `ANY /v1/proxy/{path}` for internal callers that name the connection
//! in `Connection-Id`, and `ANY /api/{path}` (the drop-in surface) for existing Hex clients that
//! hold a connection key in place of a Hex token. Both forward to `{hex origin}/api/{path}`.
//! Only the methods Hex's API uses reach these handlers (the router names them); TRACE, CONNECT
//! and the like answer 405 with `Allow` there.
//!
//! The handlers authorise the caller and name the connection; the call itself, phase by phase,
//! is [`crate::proxy`]'s.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Response, StatusCode};
use uuid::Uuid;

use super::connection_id;
use crate::auth::{Caller, ConnectionCaller, Scope};
use crate::error::{ApiError, Code, Result};
use crate::proxy::{self, Proxy, CONNECTION_ID_HEADER};
use crate::requestlog::Via;

/// The scope a method needs: GET and HEAD read, everything else may change something.
fn scope_for(method: &Method) -> Scope {
    if matches!(*method, Method::GET | Method::HEAD) {
        Scope::ProxyRead
    } else {
        Scope::Proxy
    }
}

/// `ANY /v1/proxy/{path}` with an API key and `Connection-Id`.
pub async fn proxy(State(proxy): State<Proxy>, caller: Caller, request: Request) -> Result<Response<Body>> {
    let scope = caller.require(scope_for(request.method()));
    let id = match (scope, named_connection(&request)) {
        (Ok(()), Ok(id)) => id,
        // A caller without the scope is refused first, and recorded when it named a connection
        // of its tenant.
        (Err(refusal), Ok(id)) => {
            let answer = (refusal.status_code(), refusal.code());
            proxy::record_refusal(&proxy, caller.key(), id, Via::Proxy, request, answer).await;
            return Err(refusal);
        }
        (Err(refusal), Err(_)) | (Ok(()), Err(refusal)) => return Err(refusal),
    };
    Ok(proxy::forward(&proxy, caller.key(), id, Via::Proxy, request).await?)
}

/// The connection that `Connection-Id` names.
fn named_connection(request: &Request) -> Result<Uuid> {
    let mut ids = request.headers().get_all(CONNECTION_ID_HEADER).iter();
    let id = ids.next().ok_or_else(|| {
        ApiError::bad_request(Code::MissingConnectionId, "Name the connection in the Connection-Id header.")
    })?;
    if ids.next().is_some() {
        // Two ids could be read one way here and another way by something in between.
        return Err(ApiError::bad_request(
            Code::InvalidConnectionId,
            "Send one Connection-Id header, naming one connection.",
        ));
    }
    let id = id.to_str().map_err(|_| {
        ApiError::bad_request(
            Code::InvalidConnectionId,
            "The Connection-Id header is not ASCII; send the connection's id as it was given.",
        )
    })?;
    connection_id(id.trim())
}

/// `ANY /api/{path}` with a connection key: a Hex client pointed at hexbroker works unchanged.
pub async fn drop_in(
    State(proxy): State<Proxy>,
    caller: ConnectionCaller,
    request: Request,
) -> Result<Response<Body>> {
    let id = caller.connection_id;
    if caller.require(scope_for(request.method())).is_err() {
        let refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            Code::ReadOnlyKey,
            "This connection key is read-only (proxy:read): it may send only GET and HEAD requests.",
        );
        let answer = (refusal.status_code(), refusal.code());
        proxy::record_refusal(&proxy, caller.key(), id, Via::Api, request, answer).await;
        return Err(refusal);
    }
    Ok(proxy::forward(&proxy, caller.key(), id, Via::Api, request).await?)
}
