//! The guard every Hex API handler starts with. For the operation the request was routed to (found
//! in the endpoint table), in this order:
//! 1. authenticate the bearer token: a missing, unknown, expired or revoked token, one of another
//!    workspace or of a deactivated user gets the edge's plain-text `401 Unauthorized`;
//! 2. apply the token's rate limit for the operation's group: over it, `429` with `Retry-After`
//!    (seconds) in the operation's error style; refused requests do not count;
//! 3. check scopes: a workspace token without what the operation needs gets a JSON `403` in the
//!    operation's style (personal tokens hold every scope).
//!
//! Rate limits come before scopes: Hex limits requests at its edge, whatever their outcome.
//!
//! The [`Caller`] it yields carries the operation's error style, so handlers answer every error
//! in the right shape through its helpers.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::body::Fields;
use super::context::{Params, TraceId, WorkspaceCtx};
use super::endpoints::{self, Endpoint};
use crate::errors::{HexError, Style};
use crate::model::{decode_cursor, Identity, PageRequest};
use crate::FakeHex;

/// An authenticated, admitted caller of one operation.
pub(crate) struct Caller {
    pub(crate) identity: Identity,
    pub(crate) endpoint: &'static Endpoint,
    pub(crate) trace: TraceId,
    pub(crate) workspace: WorkspaceCtx,
}

impl FromRequestParts<FakeHex> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, hex: &FakeHex) -> Result<Self, Self::Rejection> {
        let trace = TraceId::from_request_parts(parts, hex).await.unwrap_or_else(|never| match never {});
        let workspace =
            WorkspaceCtx::from_request_parts(parts, hex).await.unwrap_or_else(|never| match never {});
        let routed = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let path = routed.strip_prefix("/{subdomain}/api").unwrap_or(&routed);
        // HEAD is GET without the body (RFC 9110 §9.3.2), as on any HTTP server: axum routes it
        // to the GET handler, and it is the GET operation's row that applies.
        let method = if parts.method == axum::http::Method::HEAD { "GET" } else { parts.method.as_str() };
        let Some(endpoint) = endpoints::lookup(method, path) else {
            let message = format!("fake-hex: no endpoint table row for {} {path}", parts.method);
            return Err(HexError::new(
                Style::Coded,
                StatusCode::INTERNAL_SERVER_ERROR,
                message,
                trace.as_str(),
            )
            .into_response());
        };
        let identity = Identity::from_request_parts(parts, hex).await?;
        let style = endpoint.style;

        let mut model = hex.lock();
        let windows = model.rate_limits.windows(endpoint.group).to_vec();
        if let Err(wait) = model.limiter.admit(identity.token_id, endpoint.group, &windows, Instant::now()) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(HexError::rate_limited(style, endpoint.group.name(), seconds.max(1), trace.as_str())
                .into_response());
        }
        drop(model);

        if !endpoint.needs.met_by(&identity.scopes) {
            let details = format!(
                "This token lacks the scope {} needs ({})",
                endpoint.operation,
                endpoint.needs.describe()
            );
            return Err(HexError::forbidden(style, trace.as_str()).with_details(details).into_response());
        }
        Ok(Caller { identity, endpoint, trace, workspace })
    }
}

impl Caller {
    pub(crate) fn style(&self) -> Style {
        self.endpoint.style
    }

    pub(crate) fn subdomain(&self) -> &str {
        &self.workspace.subdomain
    }

    /// An error with this status and message in the operation's style.
    pub(crate) fn error(&self, status: StatusCode, message: impl Into<String>) -> HexError {
        HexError::new(self.style(), status, message, self.trace.as_str())
    }

    /// `400 Invalid input data` with `details`.
    pub(crate) fn bad_request(&self, details: impl Into<String>) -> HexError {
        HexError::bad_request(self.style(), details, self.trace.as_str())
    }

    /// `404 <what> not found`.
    pub(crate) fn not_found(&self, what: &str) -> HexError {
        HexError::not_found(self.style(), what, self.trace.as_str())
    }

    /// `403` for a caller whose role does not allow the operation.
    pub(crate) fn forbidden(&self, details: impl Into<String>) -> HexError {
        HexError::forbidden(self.style(), self.trace.as_str()).with_details(details)
    }

    /// `422` with this message.
    pub(crate) fn unprocessable(&self, message: impl Into<String>) -> HexError {
        self.error(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// A path or body id the spec declares a UUID: malformed ids are a 400.
    pub(crate) fn uuid(&self, raw: &str, name: &str) -> Result<Uuid, HexError> {
        Uuid::parse_str(raw).map_err(|_| self.bad_request(format!("{name} must be a UUID")))
    }

    /// An id the spec declares a plain string: anything that is not one of the fake's ids (all
    /// UUIDs) names nothing, so it is a 404.
    pub(crate) fn id(&self, raw: &str, what: &str) -> Result<Uuid, HexError> {
        Uuid::parse_str(raw).map_err(|_| self.not_found(what))
    }

    /// The JSON object body of an operation whose spec requires one (400 when absent or not an
    /// object).
    pub(crate) fn body(&self, bytes: &[u8]) -> Result<Fields, HexError> {
        self.optional_body(bytes)?.ok_or_else(|| self.bad_request("a JSON request body is required"))
    }

    /// The JSON object body of an operation whose body is optional.
    pub(crate) fn optional_body(&self, bytes: &[u8]) -> Result<Option<Fields>, HexError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| self.bad_request(format!("request body is not valid JSON: {e}")))?;
        match value {
            serde_json::Value::Object(map) => {
                Ok(Some(Fields::new(map, "body", self.style(), self.trace.as_str())))
            }
            _ => Err(self.bad_request("request body must be a JSON object")),
        }
    }

    /// `limit`, `after` and `before` of a cursor-paginated list whose cursors are tagged `kind`.
    pub(crate) fn page_request(
        &self,
        params: &Params,
        kind: &str,
        max: u64,
        default: u64,
    ) -> Result<PageRequest, HexError> {
        let limit = params.int("limit", 1, max, default).map_err(|e| self.bad_request(e))?;
        let cursor = |name: &str| match params.get(name) {
            None | Some("") => Ok(None),
            Some(raw) => decode_cursor(kind, raw)
                .map(Some)
                .ok_or_else(|| self.bad_request(format!("{name} is not a valid cursor"))),
        };
        let (after, before) = (cursor("after")?, cursor("before")?);
        if after.is_some() && before.is_some() {
            return Err(self.bad_request("after and before cannot be used together"));
        }
        Ok(PageRequest { limit: limit as usize, after, before })
    }

    /// The email of the user a personal token acts as.
    pub(crate) fn email(&self) -> Option<&str> {
        self.identity.user.as_ref().map(|u| u.email.as_str())
    }
}
