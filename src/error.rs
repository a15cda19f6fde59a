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

/// Declares [`Code`] with its text and [`Code::ALL`] from one list, so the three cannot drift.
macro_rules! codes {
    ($($variant:ident = $text:literal,)*) => {
        /// Every error code hexbroker answers with (§5), in `openapi.yaml`'s order. The code is the
        /// stable, machine-readable part of an error; its HTTP status is chosen where the error is
        /// made.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in `openapi.yaml`'s order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as sent: `snake_case`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    Unauthorized = "unauthorized",
    InsufficientScope = "insufficient_scope",
    ConnectionKeyNotAllowed = "connection_key_not_allowed",
    ConnectionKeyRequired = "connection_key_required",
    ReadOnlyKey = "read_only_key",
    OriginNotAllowed = "origin_not_allowed",
    SessionExpired = "session_expired",
    SessionUsed = "session_used",
    NotFound = "not_found",
    RouteNotFound = "route_not_found",
    MethodNotAllowed = "method_not_allowed",
    UnsupportedMediaType = "unsupported_media_type",
    BodyTooLarge = "body_too_large",
    InvalidJson = "invalid_json",
    InvalidBody = "invalid_body",
    InvalidRequest = "invalid_request",
    InvalidQuery = "invalid_query",
    InvalidSubdomain = "invalid_subdomain",
    InvalidTokenFormat = "invalid_token_format",
    InvalidWebhookUrl = "invalid_webhook_url",
    HexTokenRejected = "hex_token_rejected",
    HexInsufficientScope = "hex_insufficient_scope",
    HexWorkspaceNotFound = "hex_workspace_not_found",
    HexWorkspaceMismatch = "hex_workspace_mismatch",
    EndUserMismatch = "end_user_mismatch",
    TokenAlreadyConnected = "token_already_connected",
    HexRateLimited = "hex_rate_limited",
    HexUnavailable = "hex_unavailable",
    HexTimeout = "hex_timeout",
    MissingConnectionId = "missing_connection_id",
    InvalidPath = "invalid_path",
    ConnectionInvalid = "connection_invalid",
    ConnectionExpired = "connection_expired",
    ConnectionTampered = "connection_tampered",
    HexHostNotAllowed = "hex_host_not_allowed",
    ConnectionTokenUnusable = "connection_token_unusable",
    InvalidConnectionId = "invalid_connection_id",
    ConnectionRateLimited = "connection_rate_limited",
    KeyRateLimited = "key_rate_limited",
    TooManyAttempts = "too_many_attempts",
    Overloaded = "overloaded",
    WorkspaceBusy = "workspace_busy",
    NotReady = "not_ready",
    DatabaseUnavailable = "database_unavailable",
    InternalError = "internal_error",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

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

impl From<crate::hex::Rejection> for ApiError {
    fn from(rejection: crate::hex::Rejection) -> Self {
        use crate::hex::Rejection;
        match rejection {
            Rejection::TokenRejected => ApiError::unprocessable(
                Code::HexTokenRejected,
                "Hex did not accept this token: it may be mistyped, expired or revoked. Create a new one in Hex (Settings → API keys).",
            ),
            Rejection::InsufficientScope => ApiError::unprocessable(
                Code::HexInsufficientScope,
                "Hex accepted the token but it lacks the scope to read projects; create a token with project read access.",
            ),
            Rejection::WorkspaceNotFound => ApiError::unprocessable(
                Code::HexWorkspaceNotFound,
                "No Hex workspace answers at this subdomain; check the part before .hex.tech in your Hex address.",
            ),
            Rejection::RateLimited { retry_after } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::HexRateLimited,
                "Hex is rate-limiting requests for this token; try again shortly.",
            )
            .with_retry_after(Some(retry_after.unwrap_or(60))),
            Rejection::Unavailable => ApiError::new(
                StatusCode::BAD_GATEWAY,
                Code::HexUnavailable,
                "Hex could not be reached or answered with an error; try again shortly.",
            ),
        }
    }
}

/// §6 step 1: a subdomain that names no workspace hexbroker may talk to.
impl From<crate::hex::InvalidSubdomain> for ApiError {
    fn from(_: crate::hex::InvalidSubdomain) -> Self {
        Self::unprocessable(
            Code::InvalidSubdomain,
            "The workspace subdomain should look like `acme` (the part before .hex.tech; `app` for most workspaces, `eu` for the EU region).",
        )
    }
}

/// §6: a token that is not 1–1024 visible characters.
impl From<crate::hex::InvalidTokenFormat> for ApiError {
    fn from(_: crate::hex::InvalidTokenFormat) -> Self {
        Self::unprocessable(
            Code::InvalidTokenFormat,
            "The Hex API token should be 1 to 1024 visible characters with no spaces; copy it again from Hex (Settings → API keys).",
        )
    }
}

/// How a proxied call that got no answer from Hex is answered; [`ProxyError::report`] logs it
/// where it is handled.
///
/// [`ProxyError::report`]: crate::proxy::ProxyError::report
impl From<crate::proxy::ProxyError> for ApiError {
    fn from(error: crate::proxy::ProxyError) -> Self {
        use crate::proxy::ProxyError;
        match error {
            ProxyError::Timeout(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                Code::HexTimeout,
                "Hex did not answer in time; try again shortly.",
            ),
            ProxyError::Unreachable(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                Code::HexUnavailable,
                "Hex could not be reached; try again shortly.",
            ),
            ProxyError::BrokenAnswer(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                Code::HexUnavailable,
                "Hex's answer broke off before it could be relayed; try again shortly.",
            ),
            ProxyError::BadBody(_) => {
                ApiError::bad_request(Code::InvalidBody, "The request body could not be read.")
            }
            ProxyError::BadUrl => {
                ApiError::bad_request(Code::InvalidPath, "The path cannot be forwarded to Hex.")
            }
            ProxyError::BadToken => ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                Code::ConnectionTokenUnusable,
                "This connection's Hex token cannot be sent in a header; reconnect it with a new token.",
            ),
            ProxyError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::WorkspaceBusy,
                "This Hex workspace has as many calls in flight as hexbroker allows; try again shortly.",
            )
            .with_retry_after(Some(1)),
            ProxyError::Upgrade => ApiError::new(
                StatusCode::BAD_GATEWAY,
                Code::HexUnavailable,
                "Hex answered with a protocol switch, which hexbroker does not relay; try again shortly.",
            ),
        }
    }
}

/// §7: a path that could climb out of `/api` once normalised.
impl From<crate::proxy::InvalidPath> for ApiError {
    fn from(_: crate::proxy::InvalidPath) -> Self {
        ApiError::bad_request(
            Code::InvalidPath,
            "The path may not contain `.` or `..` segments (plain, encoded or with `;` parameters), encoded slashes, backslashes or an encoded `%`.",
        )
    }
}

/// §5: a connect attempt past an allowance of refusals, or one that Hex refused.
impl From<crate::connect::AttemptError> for ApiError {
    fn from(error: crate::connect::AttemptError) -> Self {
        match error {
            crate::connect::AttemptError::TooMany { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::TooManyAttempts,
                "Hex has refused too many connect attempts from here; wait before trying again.",
            )
            .with_retry_after(Some(retry_after)),
            crate::connect::AttemptError::Hex(rejection) => rejection.into(),
        }
    }
}

/// An API key past `HEXBROKER_KEY_RATE_LIMIT`.
impl From<crate::edge::KeyRateLimited> for ApiError {
    fn from(limited: crate::edge::KeyRateLimited) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::KeyRateLimited,
            format!("This API key may make {} requests a minute; try again shortly.", limited.per_minute),
        )
        .with_retry_after(Some(limited.retry_after))
    }
}

/// §9: a stored connection that cannot be used (logged where it was found).
impl From<crate::crypto::StoredError> for ApiError {
    fn from(error: crate::crypto::StoredError) -> Self {
        use crate::crypto::StoredError;
        match error {
            StoredError::Tampered => Self::new(
                StatusCode::FAILED_DEPENDENCY,
                Code::ConnectionTampered,
                "This connection's stored record failed its integrity check, so hexbroker will not use it; reconnect it, and tell the operator (quote the x-request-id).",
            ),
            StoredError::HostNotListed => Self::new(
                StatusCode::FAILED_DEPENDENCY,
                Code::HexHostNotAllowed,
                "This connection's Hex address is not one this deployment may call (HEXBROKER_HEX_HOSTS no longer lists it), so hexbroker will not use it; tell the operator (quote the x-request-id).",
            ),
            StoredError::Crypto(other) => Self::internal(other),
        }
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

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "Send the body as JSON with `Content-Type: application/json`.",
            ),
            JsonRejection::JsonDataError(e) => {
                Self::unprocessable(Code::InvalidBody, describe_data_error(&e))
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::bad_request(Code::InvalidJson, "The body is not valid JSON.")
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BodyTooLarge,
                "The request body is larger than this endpoint accepts.",
            ),
            _ => Self::bad_request(Code::InvalidBody, "The request body could not be read."),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::bad_request(Code::InvalidPath, "The URL path could not be read (is it valid UTF-8?).")
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

/// What did not fit in a JSON body, naming the field and the rule it broke and never the value:
/// serde's messages quote the rejected value (`invalid type: string "…"`), and that value may be
/// a secret put in the wrong field. The field path comes from `serde_path_to_error` (which axum
/// uses), the rule from the head and the `expected …` tail of serde's message, which come from
/// hexbroker's own types.
fn describe_data_error(rejection: &axum::extract::rejection::JsonDataError) -> String {
    type PathError = serde_path_to_error::Error<serde_json::Error>;
    let mut source = std::error::Error::source(rejection);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<PathError>() {
            return describe(&field_path(found.path()), &found.inner().to_string());
        }
        source = e.source();
    }
    "The JSON body does not fit this endpoint's fields.".into()
}

/// `a.b[0]`, with any key that is not a plain field name shown as `…`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if is_field_name(key) { key } else { "…" });
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A name shaped like hexbroker's own fields (`snake_case` letters), so one that a caller made up
/// with a secret's mix of cases and digits is not shown.
fn is_field_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// One sentence from a field path and serde's message, keeping only what hexbroker wrote.
fn describe(path: &str, message: &str) -> String {
    // serde_json appends ` at line L column C`; serde's `expected …` comes after the value.
    let message = message.rsplit_once(" at line ").map_or(message, |(head, _)| head);
    let expected = message.rsplit_once(", expected ").map(|(_, tail)| tail);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`')?.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| is_field_name(name))
    };
    let at = if path.is_empty() { String::new() } else { format!(" at `{path}`") };
    let rule = if let Some(field) = named("missing field ") {
        return format!("The JSON body lacks the required field `{field}`{}.", at);
    } else if message.starts_with("unknown field ") {
        // The unknown name is the caller's text, not hexbroker's: say what is taken instead.
        // (serde_path_to_error's path ends with that name, so it is not shown either.)
        let taken = expected.map(|e| format!("; expected {e}")).unwrap_or_default();
        return format!("The JSON body has a field that this endpoint does not take{taken}.");
    } else if message.starts_with("invalid type") {
        "has the wrong type"
    } else if message.starts_with("invalid length") {
        "has the wrong length"
    } else if message.starts_with("unknown variant") {
        "is not one of the accepted values"
    } else {
        "is not an accepted value"
    };
    match expected.filter(|e| !e.contains('"')) {
        Some(expected) => format!("The JSON body does not fit: the value{at} {rule}; expected {expected}."),
        None => format!("The JSON body does not fit: the value{at} {rule}."),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequest;
    use serde::Deserialize;

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

    #[test]
    fn every_code_is_listed_once_in_snake_case() {
        let texts: std::collections::BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len());
        assert!(texts
            .iter()
            .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(serde_json::to_value(Code::HexTimeout).unwrap(), "hex_timeout");
    }

    /// The domain modules' errors answer with the status, code, message and `Retry-After` the
    /// handlers gave them when the domain modules made `ApiError`s themselves.
    #[test]
    fn domain_errors_answer_as_before() {
        use crate::connect::AttemptError;
        use crate::crypto::StoredError;
        use crate::edge::KeyRateLimited;
        use crate::hex::{InvalidSubdomain, InvalidTokenFormat, Rejection};
        use crate::proxy::{InvalidPath, ProxyError};
        let cases: Vec<(ApiError, u16, Code, &str, Option<u64>)> = vec![
            (InvalidSubdomain.into(), 422, Code::InvalidSubdomain, "The workspace subdomain should look like `acme` (the part before .hex.tech; `app` for most workspaces, `eu` for the EU region).", None),
            (InvalidTokenFormat.into(), 422, Code::InvalidTokenFormat, "The Hex API token should be 1 to 1024 visible characters with no spaces; copy it again from Hex (Settings → API keys).", None),
            (Rejection::TokenRejected.into(), 422, Code::HexTokenRejected, "Hex did not accept this token: it may be mistyped, expired or revoked. Create a new one in Hex (Settings → API keys).", None),
            (Rejection::InsufficientScope.into(), 422, Code::HexInsufficientScope, "Hex accepted the token but it lacks the scope to read projects; create a token with project read access.", None),
            (Rejection::WorkspaceNotFound.into(), 422, Code::HexWorkspaceNotFound, "No Hex workspace answers at this subdomain; check the part before .hex.tech in your Hex address.", None),
            (Rejection::RateLimited { retry_after: None }.into(), 503, Code::HexRateLimited, "Hex is rate-limiting requests for this token; try again shortly.", Some(60)),
            (Rejection::RateLimited { retry_after: Some(7) }.into(), 503, Code::HexRateLimited, "Hex is rate-limiting requests for this token; try again shortly.", Some(7)),
            (Rejection::Unavailable.into(), 502, Code::HexUnavailable, "Hex could not be reached or answered with an error; try again shortly.", None),
            (AttemptError::TooMany { retry_after: 9 }.into(), 429, Code::TooManyAttempts, "Hex has refused too many connect attempts from here; wait before trying again.", Some(9)),
            (AttemptError::Hex(Rejection::TokenRejected).into(), 422, Code::HexTokenRejected, "Hex did not accept this token: it may be mistyped, expired or revoked. Create a new one in Hex (Settings → API keys).", None),
            (KeyRateLimited { per_minute: 5, retry_after: 3 }.into(), 429, Code::KeyRateLimited, "This API key may make 5 requests a minute; try again shortly.", Some(3)),
            (InvalidPath.into(), 400, Code::InvalidPath, "The path may not contain `.` or `..` segments (plain, encoded or with `;` parameters), encoded slashes, backslashes or an encoded `%`.", None),
            (ProxyError::Timeout(std::time::Duration::from_secs(1)).into(), 504, Code::HexTimeout, "Hex did not answer in time; try again shortly.", None),
            (ProxyError::BrokenAnswer("x".into()).into(), 502, Code::HexUnavailable, "Hex's answer broke off before it could be relayed; try again shortly.", None),
            (ProxyError::Upgrade.into(), 502, Code::HexUnavailable, "Hex answered with a protocol switch, which hexbroker does not relay; try again shortly.", None),
            (ProxyError::BadBody("x".into()).into(), 400, Code::InvalidBody, "The request body could not be read.", None),
            (ProxyError::BadUrl.into(), 400, Code::InvalidPath, "The path cannot be forwarded to Hex.", None),
            (ProxyError::BadToken.into(), 424, Code::ConnectionTokenUnusable, "This connection's Hex token cannot be sent in a header; reconnect it with a new token.", None),
            (StoredError::Tampered.into(), 424, Code::ConnectionTampered, "This connection's stored record failed its integrity check, so hexbroker will not use it; reconnect it, and tell the operator (quote the x-request-id).", None),
            (StoredError::HostNotListed.into(), 424, Code::HexHostNotAllowed, "This connection's Hex address is not one this deployment may call (HEXBROKER_HEX_HOSTS no longer lists it), so hexbroker will not use it; tell the operator (quote the x-request-id).", None),
            (ProxyError::Busy.into(), 503, Code::WorkspaceBusy, "This Hex workspace has as many calls in flight as hexbroker allows; try again shortly.", Some(1)),
        ];
        for (error, status, code, message, retry_after) in cases {
            let got = (error.status_code().as_u16(), error.code(), error.message(), error.retry_after());
            assert_eq!(got, (status, code, message, retry_after));
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        token: String,
        label: Option<std::collections::HashMap<String, String>>,
        scopes: Option<Vec<u32>>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Personal,
    }

    async fn message_for(body: &str) -> (String, String) {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let rejection = axum::Json::<Body>::from_request(request, &()).await.unwrap_err();
        let error = ApiError::from(rejection);
        (error.code.as_str().to_owned(), error.message.into_owned())
    }

    #[tokio::test]
    async fn a_rejected_value_is_never_echoed_and_the_field_is_named() {
        let secret = "hxtp_SECRET";
        let hostile = [
            (format!(r#"{{"token": 1, "label": "{secret}"}}"#), "token"),
            (format!(r#"{{"token": "x", "label": "{secret}"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": "a\"b {secret} \"c"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": "\\\" {secret}"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": {{"k": 5}}, "z": "{secret}"}}"#), "label.k"),
            (format!(r#"{{"token": "x", "scopes": ["{secret}"]}}"#), "scopes[0]"),
            (r#"{"token": "x", "scopes": [-1]}"#.to_owned(), "scopes[0]"),
            (format!(r#"{{"token": "x", "kind": "{secret}"}}"#), "kind"),
            (format!(r#"{{"token": "x", "{secret}": 1}}"#), "field"),
            (format!(r#"{{"token": "x", "label": {{"{secret}\"": 5}}}}"#), "label.…"),
            (format!(r#"{{"scopes": null, "z{secret}": 1}}"#), "field"),
            (r#"{"scopes": null}"#.to_owned(), "`token`"),
        ];
        for (body, names) in hostile {
            let (code, message) = message_for(&body).await;
            assert_eq!(code, "invalid_body", "{body}");
            assert!(!message.contains("SECRET"), "{body} gave {message}");
            assert!(message.contains(names), "{body} gave {message}, which should name {names}");
        }
    }

    #[tokio::test]
    async fn the_rule_comes_from_hexbrokers_types() {
        let (_, message) = message_for(r#"{"token": 5}"#).await;
        assert_eq!(
            message,
            "The JSON body does not fit: the value at `token` has the wrong type; expected a string."
        );
        let (_, message) = message_for(r#"{}"#).await;
        assert_eq!(message, "The JSON body lacks the required field `token`.");
        let (_, message) = message_for(r#"{"token": "x", "extra": 1}"#).await;
        assert!(
            message.starts_with("The JSON body has a field that this endpoint does not take; expected"),
            "{message}"
        );
    }
}
