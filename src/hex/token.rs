//! The Hex API token as submitted: its form, its kind and the hint shown in its place.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A submitted token that is not 1–1024 visible ASCII characters: 422 `invalid_token_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token is not 1 to 1024 visible ASCII characters")]
pub struct InvalidTokenFormat;

/// The kind of a Hex token, from its prefix (`hxtp_`, `hxtw_`): stored and shown as
/// `token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// A personal access token (`hxtp_`).
    Personal,
    /// A workspace token (`hxtw_`).
    Workspace,
    /// Any other prefix.
    Unknown,
}

impl TokenType {
    /// Every kind.
    pub const ALL: [TokenType; 3] = [TokenType::Personal, TokenType::Workspace, TokenType::Unknown];

    /// Its name in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Personal => "personal",
            TokenType::Workspace => "workspace",
            TokenType::Unknown => "unknown",
        }
    }
}

/// A name that is not a token type.
#[derive(Debug, thiserror::Error)]
#[error("not a token type (personal, workspace or unknown)")]
pub struct UnknownTokenType;

impl std::str::FromStr for TokenType {
    type Err = UnknownTokenType;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TokenType::ALL.into_iter().find(|t| t.as_str() == text).ok_or(UnknownTokenType)
    }
}

crate::lifecycle::stored_as_text!(TokenType);

/// Trims a submitted token and checks its form: 1–1024 visible ASCII characters.
pub fn parse_token(input: &str) -> Result<SecretString, InvalidTokenFormat> {
    let token = input.trim();
    if (1..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(SecretString::from(token.to_owned()))
    } else {
        Err(InvalidTokenFormat)
    }
}

/// The kind of Hex token, from its prefix.
pub fn token_type(token: &SecretString) -> TokenType {
    match token.expose_secret() {
        t if t.starts_with("hxtp_") => TokenType::Personal,
        t if t.starts_with("hxtw_") => TokenType::Workspace,
        _ => TokenType::Unknown,
    }
}

/// The token's known prefix and its last four characters, e.g. `hxtp_…a1b2`; short tokens show
/// less so that the hint never gives away a meaningful part of them.
pub fn token_hint(token: &SecretString) -> String {
    let t = token.expose_secret();
    let prefix = if token_type(token) == TokenType::Unknown { "" } else { &t[..5] };
    if t.len() >= 16 {
        format!("{prefix}…{}", &t[t.len() - 4..])
    } else {
        format!("{prefix}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_must_be_visible_ascii() {
        let ok = ["hxtp_abc", "  hxtw_abc\n", "x", &"a".repeat(1024)];
        for input in ok {
            assert_eq!(parse_token(input).unwrap().expose_secret(), input.trim());
        }
        let bad = ["", "   ", "hxtp abc", "hxtp_é", "tab\tinside", &"a".repeat(1025)];
        for input in bad {
            assert_eq!(parse_token(input).unwrap_err(), InvalidTokenFormat, "{input:?}");
        }
    }

    #[test]
    fn token_type_and_hint_come_from_the_token() {
        let cases = [
            ("hxtp_0123456789abcdefWXYZ", TokenType::Personal, "hxtp_…WXYZ"),
            ("hxtw_0123456789abcdefWXYZ", TokenType::Workspace, "hxtw_…WXYZ"),
            ("other_0123456789abcdef1234", TokenType::Unknown, "…1234"),
            ("hxtp_short", TokenType::Personal, "hxtp_…"),
        ];
        for (token, kind, hint) in cases {
            let token = SecretString::from(token);
            assert_eq!(token_type(&token), kind);
            assert_eq!(token_hint(&token), hint);
        }
    }

    #[test]
    fn token_types_read_back_as_written() {
        for kind in TokenType::ALL {
            assert_eq!(kind.as_str().parse::<TokenType>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!("Personal".parse::<TokenType>().is_err());
    }
}
