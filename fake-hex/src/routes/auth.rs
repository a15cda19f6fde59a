//! Bearer-token authentication: who a request's token acts as.
//!
//! A missing, unknown, expired or revoked token, one of another workspace, or one of a
//! deactivated user gets the edge's plain-text `401 Unauthorized`. Hex API handlers go through
//! the [`super::caller::Caller`] guard, which authenticates with this and then applies rate limits
//! and scopes; the test instruments only authenticate.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;

use super::context::WorkspaceCtx;
use crate::errors;
use crate::model::Identity;
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
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
