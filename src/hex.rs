//! Everything that knows Hex: the origin template, the subdomain and token rules, and `verify`
//! (§6 step 1–3 of the contract), with the mapping of Hex's answers to hexbroker's error codes.
//! Nothing else builds Hex URLs.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::ApiError;
use crate::store::HexIdentity;

/// A workspace subdomain that passed the contract's check: the one label a caller chooses of the
/// upstream host, and so the wall against server-side request forgery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subdomain(String);

impl Subdomain {
    /// Accepts `acme`, `acme.hex.tech`, `https://acme.hex.tech/…` (any case, surrounding space),
    /// and returns `acme`; anything that is not then a DNS label is `invalid_subdomain`.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut text = input.trim().to_ascii_lowercase();
        for scheme in ["https://", "http://"] {
            if let Some(rest) = text.strip_prefix(scheme) {
                text = rest.to_owned();
            }
        }
        let host = text.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.trim_end_matches('.');
        let label = host.strip_suffix(".hex.tech").unwrap_or(host);
        if is_dns_label(label) {
            Ok(Self(label.to_owned()))
        } else {
            Err(ApiError::unprocessable(
                "invalid_subdomain",
                "The workspace subdomain should look like `acme` (the part before .hex.tech; `app` for most workspaces, `eu` for the EU region).",
            ))
        }
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For values read back from the database, which were checked when stored.
    pub fn from_stored(label: String) -> Self {
        Self(label)
    }
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match bytes {
        [] => false,
        [only] => edge(only),
        [first, middle @ .., last] => {
            bytes.len() <= 63 && edge(first) && edge(last) && middle.iter().all(inner)
        }
    }
}

/// Trims a submitted token and checks its form: 1–1024 visible ASCII characters.
pub fn parse_token(input: &str) -> Result<SecretString, ApiError> {
    let token = input.trim();
    if (1..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(SecretString::from(token.to_owned()))
    } else {
        Err(ApiError::unprocessable(
            "invalid_token_format",
            "The Hex API token should be 1 to 1024 visible characters with no spaces; copy it again from Hex (Settings → API keys).",
        ))
    }
}

/// `personal`, `workspace` or `unknown`, from the token's prefix.
pub fn token_type(token: &SecretString) -> &'static str {
    match token.expose_secret() {
        t if t.starts_with("hxtp_") => "personal",
        t if t.starts_with("hxtw_") => "workspace",
        _ => "unknown",
    }
}

/// The token's known prefix and its last four characters, e.g. `hxtp_…a1b2`; short tokens show
/// less so that the hint never gives away a meaningful part of them.
pub fn token_hint(token: &SecretString) -> String {
    let t = token.expose_secret();
    let prefix = if token_type(token) == "unknown" { "" } else { &t[..5] };
    if t.len() >= 16 {
        format!("{prefix}…{}", &t[t.len() - 4..])
    } else {
        format!("{prefix}…")
    }
}

/// Why Hex did not accept a token, as the contract maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Hex answered 401.
    TokenRejected,
    /// Hex answered 403 to both checks.
    InsufficientScope,
    /// No such workspace (404, or its host does not resolve).
    WorkspaceNotFound,
    /// Hex answered 429.
    RateLimited {
        /// Seconds Hex asked us to wait, if it said.
        retry_after: Option<u64>,
    },
    /// Timeout, refused connection, 5xx or an answer we cannot read.
    Unavailable,
}

impl Rejection {
    /// For answers that say the stored token no longer works, why (for `status_reason`);
    /// `None` for passing trouble (rate limits, Hex unavailable) that says nothing about it.
    pub fn invalidation_reason(&self) -> Option<&'static str> {
        match self {
            Rejection::TokenRejected => Some("Hex rejected the token (expired, revoked or regenerated)."),
            Rejection::InsufficientScope => Some("The token no longer has the scope to read projects."),
            Rejection::WorkspaceNotFound => Some("The Hex workspace no longer answers at this subdomain."),
            Rejection::RateLimited { .. } | Rejection::Unavailable => None,
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::TokenRejected => ApiError::unprocessable(
                "hex_token_rejected",
                "Hex did not accept this token: it may be mistyped, expired or revoked. Create a new one in Hex (Settings → API keys).",
            ),
            Rejection::InsufficientScope => ApiError::unprocessable(
                "hex_insufficient_scope",
                "Hex accepted the token but it lacks the scope to read projects; create a token with project read access.",
            ),
            Rejection::WorkspaceNotFound => ApiError::unprocessable(
                "hex_workspace_not_found",
                "No Hex workspace answers at this subdomain; check the part before .hex.tech in your Hex address.",
            ),
            Rejection::RateLimited { retry_after } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hex_rate_limited",
                "Hex is rate-limiting requests for this token; try again shortly.",
            )
            .with_retry_after(Some(retry_after.unwrap_or(60))),
            Rejection::Unavailable => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "hex_unavailable",
                "Hex could not be reached or answered with an error; try again shortly.",
            ),
        }
    }
}

/// hexbroker's own client for Hex (connect and verify); the proxy has its own.
#[derive(Debug, Clone)]
pub struct HexClient {
    template: Arc<str>,
    http: reqwest::Client,
}

impl HexClient {
    /// A client for the origin `template` (`{subdomain}` is substituted).
    pub fn new(template: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            // The environment's HTTP_PROXY and the like would see every Hex token in the clear.
            .no_proxy()
            .dns_resolver(Arc::new(SystemResolver))
            .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { template: template.into(), http })
    }

    /// The workspace's origin, e.g. `https://acme.hex.tech`, with no trailing slash.
    pub fn origin(&self, subdomain: &Subdomain) -> String {
        self.template.replace("{subdomain}", subdomain.as_str()).trim_end_matches('/').to_owned()
    }

    /// Asks Hex whether `token` works in `subdomain`'s workspace: `users/me`, falling back to
    /// listing one project when Hex forbids or does not know `users/me` for this token.
    #[tracing::instrument(skip_all, fields(subdomain = subdomain.as_str()))]
    pub async fn verify(
        &self,
        subdomain: &Subdomain,
        token: &SecretString,
    ) -> Result<HexIdentity, Rejection> {
        let origin = self.origin(subdomain);
        let me = self.get(&format!("{origin}/api/v1/users/me"), token).await?;
        match me.status() {
            StatusCode::OK => {
                let me: Me = me.json().await.map_err(|e| {
                    tracing::warn!(error = %e, "Hex's users/me answer did not parse");
                    Rejection::Unavailable
                })?;
                return Ok(me.identity());
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {}
            other => return Err(common_rejection(other, &me)),
        }
        let projects = self.get(&format!("{origin}/api/v1/projects?limit=1"), token).await?;
        match projects.status() {
            StatusCode::OK => Ok(HexIdentity::default()),
            StatusCode::FORBIDDEN => Err(Rejection::InsufficientScope),
            StatusCode::NOT_FOUND => Err(Rejection::WorkspaceNotFound),
            other => Err(common_rejection(other, &projects)),
        }
    }

    async fn get(&self, url: &str, token: &SecretString) -> Result<reqwest::Response, Rejection> {
        self.http.get(url).bearer_auth(token.expose_secret()).send().await.map_err(|e| {
            if find_source::<DnsFailure>(&e).is_some() {
                tracing::info!("workspace host did not resolve");
                Rejection::WorkspaceNotFound
            } else {
                // reqwest's errors name the URL, which holds no secret.
                tracing::warn!(error = %e, timeout = e.is_timeout(), "Hex could not be reached");
                Rejection::Unavailable
            }
        })
    }
}

fn common_rejection(status: StatusCode, response: &reqwest::Response) -> Rejection {
    match status {
        StatusCode::UNAUTHORIZED => Rejection::TokenRejected,
        StatusCode::TOO_MANY_REQUESTS => Rejection::RateLimited {
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        },
        other => {
            tracing::warn!(status = other.as_u16(), "Hex answered unexpectedly");
            Rejection::Unavailable
        }
    }
}

/// Hex's `users/me`: user fields only for personal tokens.
#[derive(Debug, Deserialize)]
struct Me {
    email: Option<String>,
    org: Option<Org>,
    token: Option<TokenInfo>,
}

#[derive(Debug, Deserialize)]
struct Org {
    id: String,
}

#[derive(Debug, Deserialize)]
struct TokenInfo {
    exp: Option<f64>,
}

impl Me {
    fn identity(self) -> HexIdentity {
        HexIdentity {
            org_id: self.org.map(|o| o.id),
            user_email: self.email,
            token_expires_at: self.token.and_then(|t| t.exp).and_then(expiry_from_number),
        }
    }
}

/// Hex sends `exp` as a number; read it as Unix seconds, or milliseconds when it is that large.
fn expiry_from_number(exp: f64) -> Option<DateTime<Utc>> {
    if !exp.is_finite() || exp <= 0.0 {
        return None;
    }
    let millis = if exp > 1e11 { exp } else { exp * 1000.0 };
    DateTime::from_timestamp_millis(millis as i64)
}

/// A name that did not resolve: the workspace does not exist.
#[derive(Debug, thiserror::Error)]
#[error("the host does not resolve")]
struct DnsFailure;

/// The system resolver, marking its failures so that `verify` can tell "no such workspace"
/// from "Hex is down".
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        return Err(Box::new(DnsFailure) as Box<dyn StdError + Send + Sync>);
                    }
                    Ok(Box::new(addrs.into_iter()) as Addrs)
                }
                Err(_) => Err(Box::new(DnsFailure) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_normalised_then_checked() {
        let cases = [
            ("acme", Some("acme")),
            ("  Acme ", Some("acme")),
            ("acme.hex.tech", Some("acme")),
            ("https://acme.hex.tech/acme/hex/123", Some("acme")),
            ("http://ACME.hex.tech", Some("acme")),
            ("https://eu.hex.tech/", Some("eu")),
            ("acme.hex.tech.", Some("acme")),
            ("a", Some("a")),
            ("a-b-1", Some("a-b-1")),
            (&"a".repeat(63), Some(&*"a".repeat(63))),
            (&"a".repeat(64), None),
            ("", None),
            ("-acme", None),
            ("acme-", None),
            ("ac_me", None),
            ("acme.evil.com", None),
            ("evil.com/x.hex.tech", None),
            ("127.0.0.1", None),
            ("acme@evil.com", None),
            ("acme:8080", None),
            ("ацме", None),
        ];
        for (input, expected) in cases {
            let got = Subdomain::parse(input).ok();
            assert_eq!(got.as_ref().map(Subdomain::as_str), expected, "{input:?}");
        }
    }

    #[test]
    fn invalid_subdomains_answer_422_invalid_subdomain() {
        let err = Subdomain::parse("evil.com").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), "invalid_subdomain");
    }

    #[test]
    fn tokens_are_trimmed_and_must_be_visible_ascii() {
        let ok = ["hxtp_abc", "  hxtw_abc\n", "x", &"a".repeat(1024)];
        for input in ok {
            assert_eq!(parse_token(input).unwrap().expose_secret(), input.trim());
        }
        let bad = ["", "   ", "hxtp abc", "hxtp_é", "tab\tinside", &"a".repeat(1025)];
        for input in bad {
            assert_eq!(parse_token(input).unwrap_err().code(), "invalid_token_format", "{input:?}");
        }
    }

    #[test]
    fn token_type_and_hint_come_from_the_token() {
        let cases = [
            ("hxtp_0123456789abcdefWXYZ", "personal", "hxtp_…WXYZ"),
            ("hxtw_0123456789abcdefWXYZ", "workspace", "hxtw_…WXYZ"),
            ("other_0123456789abcdef1234", "unknown", "…1234"),
            ("hxtp_short", "personal", "hxtp_…"),
        ];
        for (token, kind, hint) in cases {
            let token = SecretString::from(token);
            assert_eq!(token_type(&token), kind);
            assert_eq!(token_hint(&token), hint);
        }
    }

    #[test]
    fn expiry_reads_seconds_or_milliseconds() {
        let t = expiry_from_number(1_767_225_600.0).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(expiry_from_number(1_767_225_600_000.0), Some(t));
        assert_eq!(expiry_from_number(0.0), None);
        assert_eq!(expiry_from_number(f64::NAN), None);
    }

    #[test]
    fn the_origin_substitutes_the_subdomain() {
        let client = HexClient::new("https://{subdomain}.hex.tech", Duration::from_secs(1)).unwrap();
        assert_eq!(client.origin(&Subdomain::parse("acme").unwrap()), "https://acme.hex.tech");
        let local = HexClient::new("http://127.0.0.1:9/{subdomain}/", Duration::from_secs(1)).unwrap();
        assert_eq!(local.origin(&Subdomain::parse("acme").unwrap()), "http://127.0.0.1:9/acme");
    }
}
