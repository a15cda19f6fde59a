//! What happens to every request before routing: give it a trace id, record it, answer it with a
//! queued failure if a test asked for one, and turn away unknown workspaces. Every response leaves
//! with an `x-trace-id` header.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::context::{TraceId, WorkspaceCtx};
use super::instruments::ECHO_SUFFIX;
use super::AtRoot;
use crate::errors;
use crate::model::RecordedRequest;
use crate::FakeHex;

/// Largest body buffered for recording; only the echo instrument streams without buffering.
const MAX_BUFFERED_BODY: usize = 64 * 1024 * 1024;

pub(crate) async fn front_door(State(hex): State<FakeHex>, request: Request, next: Next) -> Response {
    let trace = TraceId::new();
    let mut response = admit(&hex, request, next, &trace).await;
    if let Ok(value) = HeaderValue::from_str(trace.as_str()) {
        response.headers_mut().insert("x-trace-id", value);
    }
    response
}

async fn admit(hex: &FakeHex, request: Request, next: Next, trace: &TraceId) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let at_root = parts.extensions.get::<AtRoot>().cloned();
    let index = hex.record(RecordedRequest {
        method: parts.method.to_string(),
        path: at_root.as_ref().map_or_else(|| path.clone(), |r| r.path.clone()),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body_len: 0,
    });

    // The echo instrument must stream, so its bytes are counted as they pass; any other body is
    // small in practice and is read whole here, so its length is recorded even when the handler
    // never reads it (a 401, a 404).
    let body = if path.ends_with(ECHO_SUFFIX) {
        let counter = hex.clone();
        Body::from_stream(body.into_data_stream().inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.add_body_bytes(index, bytes.len() as u64);
            }
        }))
    } else {
        match axum::body::to_bytes(body, MAX_BUFFERED_BODY).await {
            Ok(bytes) => {
                hex.add_body_bytes(index, bytes.len() as u64);
                Body::from(bytes)
            }
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response(),
        }
    };

    if let Some(failure) = hex.take_failure() {
        if let Some((headers, body)) = failure.canned {
            return canned(failure.status, &headers, body);
        }
        return errors::injected(failure.status, failure.retry_after.as_deref(), trace.as_str());
    }

    let subdomain = path.split('/').nth(1).unwrap_or_default().to_owned();
    if !hex.has_workspace(&subdomain) {
        return errors::no_such_workspace();
    }
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let origin = format!("http://{host}");
    // Served at the root (Hex on its own domain), the workspace is the whole origin.
    let base_url = if at_root.is_some() { origin.clone() } else { format!("{origin}/{subdomain}") };
    parts.extensions.insert(trace.clone());
    parts.extensions.insert(WorkspaceCtx { subdomain, base_url });
    next.run(Request::from_parts(parts, body)).await
}

/// A canned answer queued by [`FakeHex::answer_next`]: exactly the status, headers and body asked.
fn canned(status: u16, headers: &[(String, String)], body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}
