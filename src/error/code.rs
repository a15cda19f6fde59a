//! [`Code`]: every error code hexbroker answers with, and the list of them all.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_snake_case() {
        let texts: std::collections::BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len());
        assert!(texts
            .iter()
            .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(serde_json::to_value(Code::HexTimeout).unwrap(), "hex_timeout");
    }
}
