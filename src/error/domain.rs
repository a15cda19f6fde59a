//! How the domain modules' own errors are answered: one side-effect-free `From` each, so a
//! handler's `?` turns them into the contract's error body. Whatever is worth logging is logged
//! where the error is found or handled, never here.

use axum::http::StatusCode;

use super::{ApiError, Code};

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

/// How a proxied call that got no answer from Hex is answered (status and code are the
/// proxy's); [`ProxyError::report`] logs it where it is handled.
///
/// [`ProxyError::report`]: crate::proxy::ProxyError::report
impl From<crate::proxy::ProxyError> for ApiError {
    fn from(error: crate::proxy::ProxyError) -> Self {
        use crate::proxy::ProxyError;
        let message = match error {
            ProxyError::Timeout(_) => "Hex did not answer in time; try again shortly.",
            ProxyError::Unreachable(_) => "Hex could not be reached; try again shortly.",
            ProxyError::BrokenAnswer(_) => {
                "Hex's answer broke off before it could be relayed; try again shortly."
            }
            ProxyError::BadBody(_) => "The request body could not be read.",
            ProxyError::BadUrl => "The path cannot be forwarded to Hex.",
            ProxyError::BadToken => {
                "This connection's Hex token cannot be sent in a header; reconnect it with a new token."
            }
            ProxyError::Busy => {
                "This Hex workspace has as many calls in flight as hexbroker allows; try again shortly."
            }
            ProxyError::Upgrade => {
                "Hex answered with a protocol switch, which hexbroker does not relay; try again shortly."
            }
        };
        let retry_after = matches!(error, ProxyError::Busy).then_some(1);
        ApiError::new(error.status(), error.code(), message).with_retry_after(retry_after)
    }
}

/// How hexbroker's own answer to a proxied call reads (status and code are the proxy's).
impl From<crate::proxy::Refusal> for ApiError {
    fn from(refusal: crate::proxy::Refusal) -> Self {
        use crate::proxy::Refusal;
        let (status, code) = (refusal.status(), refusal.code());
        match refusal {
            Refusal::Path(invalid) => invalid.into(),
            Refusal::NotFound => ApiError::not_found("connection"),
            Refusal::Expired => ApiError::new(
                status,
                code,
                "This connection's Hex token has expired; reconnect it with a new token.",
            ),
            Refusal::Invalid => ApiError::new(
                status,
                code,
                "Hex no longer accepts this connection's token; verify or reconnect it.",
            ),
            Refusal::RateLimited { per_minute, retry_after } => ApiError::new(
                status,
                code,
                format!("This connection may send {per_minute} calls a minute to Hex; try again shortly."),
            )
            .with_retry_after(Some(retry_after)),
            Refusal::Failed(error) => error.into(),
            Refusal::Stored(error) => error.into(),
            Refusal::Store(error) => error.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// What the request log records of a proxy refusal (its status and code) is what the caller
    /// is answered with.
    #[test]
    fn a_refusal_is_recorded_as_it_is_answered() {
        use crate::crypto::StoredError;
        use crate::proxy::{InvalidPath, ProxyError, Refusal};
        let refusals = || {
            vec![
                Refusal::Path(InvalidPath),
                Refusal::NotFound,
                Refusal::Expired,
                Refusal::Invalid,
                Refusal::RateLimited { per_minute: 5, retry_after: 3 },
                Refusal::Failed(ProxyError::Timeout(std::time::Duration::from_secs(1))),
                Refusal::Failed(ProxyError::BrokenAnswer("x".into())),
                Refusal::Failed(ProxyError::Upgrade),
                Refusal::Failed(ProxyError::BadBody("x".into())),
                Refusal::Failed(ProxyError::BadUrl),
                Refusal::Failed(ProxyError::BadToken),
                Refusal::Failed(ProxyError::Busy),
                Refusal::Stored(StoredError::Tampered),
                Refusal::Stored(StoredError::HostNotListed),
                Refusal::Store(crate::store::StoreError::from(sqlx::Error::PoolTimedOut)),
                Refusal::Store(crate::store::StoreError::from(sqlx::Error::RowNotFound)),
            ]
        };
        for refusal in refusals() {
            let (status, code) = (refusal.status(), refusal.code());
            let answer = ApiError::from(refusal);
            assert_eq!((answer.status_code(), answer.code()), (status, code));
        }
        let limited = ApiError::from(Refusal::RateLimited { per_minute: 5, retry_after: 3 });
        assert_eq!(
            (limited.message(), limited.retry_after()),
            ("This connection may send 5 calls a minute to Hex; try again shortly.", Some(3))
        );
        assert_eq!(ApiError::from(Refusal::Expired).status_code().as_u16(), 424);
        assert_eq!(ApiError::from(Refusal::Invalid).code(), Code::ConnectionInvalid);
    }
}
