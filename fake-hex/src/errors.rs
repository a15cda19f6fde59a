//! Hex's error responses. Hex has three shapes, and the spec says which endpoint uses which:
//! - the edge's `401` with a plain-text body `Unauthorized` (no JSON at all);
//! - older (tsoa) endpoints such as ListProjects and CancelRun:
//!   `{"reason": "…", "details": "…", "traceId": "…"}` (`TsoaErrorResponsePayload`);
//! - newer endpoints such as Me, GetProject, RunProject, GetRunStatus and GetProjectRuns:
//!   `{"code": "FORBIDDEN", "message": "…", "issues": [{"message": "…"}]}` (`error.FORBIDDEN`, …).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which body shape an endpoint's errors take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{reason, details, traceId}`.
    Tsoa,
    /// `{code, message, issues}`.
    Coded,
}

/// An error answer from an endpoint, written in that endpoint's style.
#[derive(Debug)]
pub(crate) struct HexError {
    status: StatusCode,
    style: Style,
    message: String,
    details: Option<String>,
    trace_id: String,
}

impl HexError {
    pub(crate) fn new(style: Style, status: StatusCode, message: impl Into<String>, trace_id: &str) -> Self {
        HexError { status, style, message: message.into(), details: None, trace_id: trace_id.to_owned() }
    }

    /// Adds detail: `details` in the tsoa style, one entry of `issues` in the coded style.
    pub(crate) fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub(crate) fn forbidden(style: Style, trace_id: &str) -> Self {
        HexError::new(style, StatusCode::FORBIDDEN, "Insufficient access", trace_id)
    }

    pub(crate) fn not_found(style: Style, what: &str, trace_id: &str) -> Self {
        HexError::new(style, StatusCode::NOT_FOUND, format!("{what} not found"), trace_id)
    }

    pub(crate) fn bad_request(style: Style, details: impl Into<String>, trace_id: &str) -> Self {
        HexError::new(style, StatusCode::BAD_REQUEST, "Invalid input data", trace_id).with_details(details)
    }
}

impl IntoResponse for HexError {
    fn into_response(self) -> Response {
        let body = match self.style {
            Style::Tsoa => match self.details {
                Some(details) => {
                    json!({"reason": self.message, "details": details, "traceId": self.trace_id})
                }
                None => json!({"reason": self.message, "traceId": self.trace_id}),
            },
            Style::Coded => {
                let issues: Vec<_> =
                    self.details.into_iter().map(|message| json!({ "message": message })).collect();
                json!({"code": code_for(self.status), "message": self.message, "issues": issues})
            }
        };
        (self.status, Json(body)).into_response()
    }
}

/// The code word Hex's coded errors use for a status.
pub(crate) fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "UNPROCESSABLE_CONTENT",
        429 => "TOO_MANY_REQUESTS",
        502 => "BAD_GATEWAY",
        503 => "SERVICE_UNAVAILABLE",
        504 => "GATEWAY_TIMEOUT",
        500..=599 => "INTERNAL_SERVER_ERROR",
        _ => "ERROR",
    }
}

/// The edge's answer to a missing or bad token: `401`, `text/plain`, body `Unauthorized`.
pub(crate) fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Unauthorized")
        .into_response()
}

/// The answer to a request for a workspace that does not exist (Hex would fail DNS): an empty 404.
pub(crate) fn no_such_workspace() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// The answer to a request caught by [`crate::FakeHex::fail_next`]: a coded JSON error with the
/// queued status, plus `Retry-After` when one was queued.
pub(crate) fn injected(status: u16, retry_after: Option<&str>, trace_id: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = status.canonical_reason().unwrap_or("Error");
    let mut response = HexError::new(Style::Coded, status, message, trace_id).into_response();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
