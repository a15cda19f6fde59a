//! The one error type that handlers return, and the contract's error body (§5):
//! `{"error": {"code": "snake_case_code", "message": "…"}}`.
//!
//! Internal causes are logged inside the request span and never sent to the caller.

use std::borrow::Cow;

use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::json;

/// `Result` with [`ApiError`] as the default error.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// An error that becomes an HTTP response in the contract's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    internal: Option<anyhow::Error>,
}

impl ApiError {
    /// An error the caller can act on, with its status, stable code and a sentence for a person.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, internal: None }
    }

    /// A 422 for input that parsed but cannot be accepted.
    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A 400 for a malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The one 401: missing, unknown, revoked and expired credentials all look the same.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid credential as `Authorization: Bearer <key>`.",
        )
    }

    /// A 403 for a caller whose credential lacks the scope an operation needs.
    pub fn insufficient_scope(needed: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("This credential lacks the `{needed}` scope that this operation needs."),
        )
    }

    /// A 404; also what a caller gets for anything outside its tenant.
    pub fn not_found(what: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("No such {what}."))
    }

    /// A 500 that logs `cause` and tells the caller nothing internal.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            internal: Some(cause.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; try again, and quote the x-request-id if it persists.",
            )
        }
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(code = self.code, error = format!("{cause:#}"), "request failed");
        } else if self.status.is_server_error() {
            tracing::warn!(code = self.code, "request failed");
        } else {
            tracing::debug!(code = self.code, "request refused");
        }
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::internal(error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ),
            JsonRejection::JsonDataError(e) => Self::unprocessable(
                "invalid_body",
                format!("The JSON body does not fit: {}", redact_quoted(&e.body_text())),
            ),
            JsonRejection::JsonSyntaxError(_) => {
                Self::bad_request("invalid_json", "The body is not valid JSON.")
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request body is larger than this endpoint accepts.",
            ),
            _ => Self::bad_request("invalid_body", "The request body could not be read."),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::bad_request("invalid_path", "The URL path could not be read (is it valid UTF-8?).")
    }
}

/// `axum::extract::Path` whose rejections come out in the contract's error shape.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::Json` whose rejections come out in the contract's error shape, and which reads only a
/// JSON object: serde's derived structs would also take an array (`[null, null]`), field by
/// field in order, which no request schema allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(Object(value)) = axum::Json::<Object<T>>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// `T`, read from a JSON object only.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visit(PhantomData)).map(Object)
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// serde quotes the offending string value in its messages (`invalid type: string "…"`), and that
/// value may be a secret the caller put in the wrong field: keep the field path, drop the value.
fn redact_quoted(message: &str) -> String {
    let message =
        message.strip_prefix("Failed to deserialize the JSON body into the target type: ").unwrap_or(message);
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_quoted;

    #[test]
    fn json_error_messages_keep_the_field_and_drop_quoted_values() {
        let cases = [
            (
                "Failed to deserialize the JSON body into the target type: label: invalid type: string \"hxtp_secret\", expected a map at line 1 column 20",
                "label: invalid type: string \"…\", expected a map at line 1 column 20",
            ),
            ("missing field `token` at line 1 column 2", "missing field `token` at line 1 column 2"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_quoted(input), expected);
        }
    }
}
