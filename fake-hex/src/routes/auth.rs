//! Bearer-token authentication and scope checks.
//!
//! A missing, unknown, expired or revoked token, or one of another workspace, gets the edge's
//! plain-text `401 Unauthorized`. A good token that lacks a scope gets a JSON 403 in the endpoint's
//! error style. Personal tokens act as their user and hold every scope.
//!
//! Modelling choices where Hex's documents are silent:
//! - `GET /v1/users/me` with a workspace token requires `UsersRead`; without it, JSON 403.
//! - Listing and reading projects requires `ProjectsRead`; starting and cancelling runs requires
//!   `ProjectsRun`; reading runs (status, list) accepts either of the two, since orchestrators that
//!   start runs with a run-only token also poll them.
//!
//! Per-token rate limits belong here too, once modelled: after authentication, keyed by
//! `Identity::token_id`, before the handler runs.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;

use super::context::{TraceId, WorkspaceCtx};
use crate::errors::{self, HexError, Style};
use crate::model::{Identity, Scope};
use crate::{timestamp, FakeHex};

impl FromRequestParts<FakeHex> for Identity {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, hex: &FakeHex) -> Result<Self, Self::Rejection> {
        let workspace =
            WorkspaceCtx::from_request_parts(parts, hex).await.unwrap_or_else(|never| match never {});
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer)
            .ok_or_else(errors::unauthorized)?;
        hex.lock()
            .authenticate(&workspace.subdomain, secret, timestamp::now())
            .ok_or_else(errors::unauthorized)
    }
}

/// The token in an `Authorization: Bearer …` value (scheme matched case-insensitively).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Identity {
    /// `Ok` when the caller holds at least one of `scopes`, else the endpoint's JSON 403.
    pub(crate) fn require(&self, scopes: &[Scope], style: Style, trace: &TraceId) -> Result<(), HexError> {
        if self.has_any(scopes) {
            Ok(())
        } else {
            Err(HexError::forbidden(style, trace.as_str()).with_details(format!(
                "This token lacks the scope this endpoint needs ({})",
                scopes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" or ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_accepted() {
        let cases = [
            ("Bearer hxtp_abc", Some("hxtp_abc")),
            ("bearer  hxtw_x ", Some("hxtw_x")),
            ("Basic hxtp_abc", None),
            ("Bearer ", None),
            ("hxtp_abc", None),
        ];
        for (value, expected) in cases {
            assert_eq!(bearer(value), expected, "{value:?}");
        }
    }
}
