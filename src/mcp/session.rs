//! MCP sessions without server-side state: `Mcp-Session-Id` is `<nonce>.<mac>`, the mac being
//! the keyed hash of the nonce, the key's id and the connection's id, so a session works on every
//! replica, and only for the key and connection that opened it. An ended session (DELETE) is
//! written down in the database under its nonce, so that every replica refuses it afterwards.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use super::{rpc_error_response, Mcp, McpCaller, SESSION_HEADER};
use crate::error::ApiError;

/// The mark of an ended session in the store's table of named sealed values.
const ENDED_PREFIX: &str = "mcp_session_ended:";

/// The mac of `nonce` for this caller, as 32 hex digits.
fn mac(state: &Mcp, caller: &McpCaller, nonce: &str) -> String {
    let message = format!("mcp-session\0{}\0{}\0{nonce}", caller.key.id, caller.connection_id);
    hex::encode(&state.auth.hasher.secret_hash(&message)[..16])
}

/// A new session id for `caller`.
pub(super) fn issue(state: &Mcp, caller: &McpCaller) -> String {
    let nonce = hex::encode(crate::crypto::random_bytes::<16>());
    let mac = mac(state, caller, &nonce);
    format!("{nonce}.{mac}")
}

/// The nonce of the request's session id; `Err` says why there is none to use: 400 when the
/// header is missing, 404 when it is not a session of this caller's.
fn nonce<'a>(
    state: &Mcp,
    caller: &McpCaller,
    headers: &'a HeaderMap,
) -> Result<&'a str, (StatusCode, &'static str)> {
    let Some(value) = headers.get(SESSION_HEADER) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Bad request: send the Mcp-Session-Id that initialize returned.",
        ));
    };
    let unknown = (StatusCode::NOT_FOUND, "Session not found; initialize again.");
    let text = value.to_str().map_err(|_| unknown)?;
    let (nonce, given) = text.split_once('.').ok_or(unknown)?;
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown);
    }
    let expected = mac(state, caller, nonce);
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(unknown);
    }
    Ok(nonce)
}

/// `None` when the request carries a live session of this caller's; otherwise the answer to send.
pub(super) async fn check(
    state: &Mcp,
    caller: &McpCaller,
    headers: &HeaderMap,
) -> Result<Option<Response>, ApiError> {
    let nonce = match nonce(state, caller, headers) {
        Ok(nonce) => nonce,
        Err((status, message)) => {
            let code = if status == StatusCode::NOT_FOUND { -32001 } else { -32600 };
            return Ok(Some(rpc_error_response(status, Value::Null, code, message)));
        }
    };
    if state.proxy.store.sealed_secret(&format!("{ENDED_PREFIX}{nonce}")).await?.is_some() {
        return Ok(Some(
            rpc_error_response(
                StatusCode::NOT_FOUND,
                Value::Null,
                -32001,
                "Session ended; initialize again.",
            )
            .into_response(),
        ));
    }
    Ok(None)
}

/// Ends the (already checked) session of the request.
pub(super) async fn end(state: &Mcp, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(nonce) =
        headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once('.'))
    else {
        return Ok(());
    };
    let name = format!("{ENDED_PREFIX}{}", nonce.0);
    let sealed = state.proxy.keyring.seal(name.as_bytes(), b"");
    state.proxy.store.insert_sealed_secret_if_absent(&name, &sealed).await?;
    Ok(())
}
