//! Hex's error responses. Hex has three shapes, and the spec says which endpoint uses which:
//! - the edge's `401` with a plain-text body `Unauthorized` (no JSON at all);
//! - older (tsoa) endpoints such as ListProjects and CancelRun:
//!   `{"reason": "…", "details": "…", "traceId": "…"}` (`TsoaErrorResponsePayload`);
//! - newer endpoints such as Me, GetProject, RunProject, GetRunStatus and GetProjectRuns:
//!   `{"code": "FORBIDDEN", "message": "…", "issues": [{"message": "…"}]}` (`error.FORBIDDEN`, …).
//!
//! Which endpoint takes which style is in the endpoint table (`routes/endpoints.rs`), read from
//! the error responses each operation documents.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Which body shape an endpoint's errors take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{reason, details, traceId}`.
    Tsoa,
    /// `{code, message, issues}`.
    Coded,
    /// The tsoa style of UpdateSemanticProject and UpdateDataConnectionSchema, whose 400 and 404
    /// bodies carry `details` as an array of objects: a textual detail goes into `reason`
    /// instead, so `details` is only ever that array.
    TsoaDetailList,
}

/// An error answer from an endpoint, written in that endpoint's style (boxed: handlers pass it
/// around in every `Result`).
#[derive(Debug)]
pub(crate) struct HexError(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    style: Style,
    message: String,
    /// A string, or (for the few tsoa endpoints whose spec says so) an array of objects.
    details: Option<Value>,
    /// Extra top-level fields (IngestSemanticProject's `problems`).
    extra: Vec<(&'static str, Value)>,
    retry_after: Option<u64>,
    trace_id: String,
}

impl HexError {
    pub(crate) fn new(style: Style, status: StatusCode, message: impl Into<String>, trace_id: &str) -> Self {
        HexError(Box::new(Parts {
            status,
            style,
            message: message.into(),
            details: None,
            extra: Vec::new(),
            retry_after: None,
            trace_id: trace_id.to_owned(),
        }))
    }

    /// Adds detail: `details` in the tsoa style, one entry of `issues` in the coded style.
    pub(crate) fn with_details(mut self, details: impl Into<String>) -> Self {
        self.0.details = Some(Value::String(details.into()));
        self
    }

    /// Adds structured detail: `details` as this array in the tsoa style (UpdateSemanticProject and
    /// UpdateDataConnectionSchema), one `issues` entry per item in the coded style.
    pub(crate) fn with_detail_list(mut self, details: Vec<Value>) -> Self {
        self.0.details = Some(Value::Array(details));
        self
    }

    /// Adds a top-level field to the body.
    pub(crate) fn with_field(mut self, name: &'static str, value: Value) -> Self {
        self.0.extra.push((name, value));
        self
    }

    /// The answer to a request over a rate limit: 429 with `Retry-After: seconds`.
    pub(crate) fn rate_limited(style: Style, group: &str, seconds: u64, trace_id: &str) -> Self {
        let mut error = HexError::new(style, StatusCode::TOO_MANY_REQUESTS, "Too many requests", trace_id)
            .with_details(format!("Rate limit of group {group} exceeded; retry in {seconds} s"));
        error.0.retry_after = Some(seconds);
        error
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
        let error = *self.0;
        let mut body = match error.style {
            Style::TsoaDetailList => match error.details {
                Some(Value::String(details)) => {
                    json!({"reason": format!("{}: {details}", error.message), "traceId": error.trace_id})
                }
                Some(details) => {
                    json!({"reason": error.message, "details": details, "traceId": error.trace_id})
                }
                None => json!({"reason": error.message, "traceId": error.trace_id}),
            },
            Style::Tsoa => match error.details {
                Some(details) => {
                    json!({"reason": error.message, "details": details, "traceId": error.trace_id})
                }
                None => json!({"reason": error.message, "traceId": error.trace_id}),
            },
            Style::Coded => {
                let issues: Vec<Value> = match error.details {
                    None => Vec::new(),
                    Some(Value::Array(items)) => {
                        items.iter().map(|item| json!({ "message": item.to_string() })).collect()
                    }
                    Some(Value::String(message)) => vec![json!({ "message": message })],
                    Some(other) => vec![json!({ "message": other.to_string() })],
                };
                json!({"code": code_for(error.status), "message": error.message, "issues": issues})
            }
        };
        for (name, value) in error.extra {
            body[name] = value;
        }
        let mut response = (error.status, Json(body)).into_response();
        if let Some(seconds) = error.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
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
