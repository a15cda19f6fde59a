//! The one error type that handlers return, and the contract's error body (§5):
//! `{"error": {"code": "snake_case_code", "message": "…"}}`.
//!
//! Internal causes are logged inside the request span and never sent to the caller.

mod code;
mod domain;
mod extract;

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use code::Code;
pub use extract::{Json, Path};

/// `Result` with [`ApiError`] as the default error.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// An error that becomes an HTTP response in the contract's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Code,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    internal: Option<anyhow::Error>,
}

impl ApiError {
    /// An error the caller can act on, with its status, stable code and a sentence for a person.
    pub fn new(status: StatusCode, code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, internal: None }
    }

    /// A 422 for input that parsed but cannot be accepted.
    pub fn unprocessable(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A 400 for a malformed request.
    pub fn bad_request(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The one 401: missing, unknown, revoked and expired credentials all look the same.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Code::Unauthorized,
            "Send a valid credential as `Authorization: Bearer <key>`.",
        )
    }

    /// A 403 for a caller whose credential lacks the scope an operation needs.
    pub fn insufficient_scope(needed: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            Code::InsufficientScope,
            format!("This credential lacks the `{needed}` scope that this operation needs."),
        )
    }

    /// A 404; also what a caller gets for anything outside its tenant.
    pub fn not_found(what: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, Code::NotFound, format!("No such {what}."))
    }

    /// A 500 that logs `cause` and tells the caller nothing internal.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            internal: Some(cause.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::InternalError,
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
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message sent with the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Retry-After` seconds it carries, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
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
            tracing::error!(code = self.code.as_str(), error = format!("{cause:#}"), "request failed");
        } else if self.status.is_server_error() {
            tracing::warn!(code = self.code.as_str(), "request failed");
        } else {
            tracing::debug!(code = self.code.as_str(), "request refused");
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

/// A caller's string that broke its kind's rule (§5): 422 `invalid_request`, naming the field.
impl From<crate::input::Refused> for ApiError {
    fn from(refused: crate::input::Refused) -> Self {
        Self::unprocessable(Code::InvalidRequest, refused.into_message())
    }
}

impl ApiError {
    /// A 422 `invalid_query` for a query filter that broke its rule.
    pub fn invalid_query(refused: crate::input::Refused) -> Self {
        Self::unprocessable(Code::InvalidQuery, refused.into_message())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        if error.is_unavailable() {
            // Logged (the cause names no value), answered as a 503 the caller may retry.
            tracing::warn!(error = %error, "database unavailable");
            return Self::database_unavailable();
        }
        Self::internal(error)
    }
}

impl ApiError {
    /// A 503 for a request that needed the database while it cannot be reached.
    pub fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::DatabaseUnavailable,
            "The database is not answering; try again shortly.",
        )
        .with_retry_after(Some(DATABASE_RETRY_AFTER_SECS))
    }
}

/// The `Retry-After` of a `database_unavailable` answer.
const DATABASE_RETRY_AFTER_SECS: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    /// A database nothing answers on (a real refused socket, through a real pool) is a 503
    /// `database_unavailable` with `Retry-After`, quickly; a query the database rejects stays 500.
    #[tokio::test]
    async fn an_unreachable_database_is_a_503_and_a_bad_query_a_500() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(300))
            .connect_lazy("postgres://postgres@127.0.0.1:1/nothing")
            .expect("a lazy pool");
        let started = std::time::Instant::now();
        let failed = sqlx::query("select 1").execute(&pool).await.expect_err("nothing listens on port 1");
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "the acquire timeout bounds it");
        let error = crate::store::StoreError::from(failed);
        assert!(error.is_unavailable(), "{error}");
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.expect("a body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "database_unavailable");

        let sqlite = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await.expect("sqlite");
        let failed = sqlx::query("select * from no_such_table").execute(&sqlite).await.expect_err("no table");
        let error = crate::store::StoreError::from(failed);
        assert!(!error.is_unavailable(), "{error}");
        assert_eq!(ApiError::from(error).status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
