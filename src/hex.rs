//! Everything that knows Hex: the origin template and the operator's own Hex origins
//! (`HEXBROKER_HEX_HOSTS`), the subdomain and token rules, and `verify` (§6 steps 1–3 and 1b of
//! the contract), with the mapping of Hex's answers to hexbroker's error codes. Nothing else
//! builds Hex URLs.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

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

    /// For values read back from the database: checked by the same rule again (§9), since a row
    /// edited behind hexbroker's back must never choose another upstream host. Stored labels are
    /// already normalised, so nothing is normalised here.
    pub fn from_stored(label: &str) -> Result<Self, BadStoredSubdomain> {
        if is_dns_label(label) {
            Ok(Self(label.to_owned()))
        } else {
            Err(BadStoredSubdomain)
        }
    }
}

/// A stored subdomain that fails §6's rule: its row was edited outside hexbroker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored subdomain is not a DNS label; the row was edited outside hexbroker")]
pub struct BadStoredSubdomain;

/// The Hex workspace a connection talks to: a subdomain substituted into the template, or one of
/// the operator's own Hex origins (`HEXBROKER_HEX_HOSTS`, §6 step 1b). Made only by
/// [`HexClient::workspace`] from a submission and [`HexClient::stored_workspace`] from a row,
/// both of which hold the wall: no other host is ever named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workspace {
    /// `{subdomain}` in the template.
    Template(Subdomain),
    /// One origin of the operator's list, exactly as listed (canonical).
    Host(HexHost),
}

/// One of the operator's own Hex origins, exactly as `HEXBROKER_HEX_HOSTS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexHost {
    origin: String,
    host: String,
}

impl Workspace {
    /// What is stored (and shown) as the connection's `subdomain`: the label, or for an origin
    /// of its own the origin's host name (e.g. `hex.mycorp.com`).
    pub fn subdomain(&self) -> &str {
        match self {
            Workspace::Template(subdomain) => subdomain.as_str(),
            Workspace::Host(host) => &host.host,
        }
    }

    /// What is stored as the connection's `hex_url`: its own origin, or `None` for the template.
    pub fn hex_url(&self) -> Option<&str> {
        match self {
            Workspace::Template(_) => None,
            Workspace::Host(host) => Some(&host.origin),
        }
    }

    /// What a token's fingerprint is taken over: the label, or the whole origin (which, holding
    /// `:`, is never a label), so one token connected to two workspaces makes two fingerprints.
    pub fn fingerprint_key(&self) -> &str {
        self.hex_url().unwrap_or_else(|| self.subdomain())
    }
}

/// Why a stored workspace cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadStoredWorkspace {
    /// The subdomain fails §6's rule, or does not match the stored origin: the row was edited
    /// outside hexbroker.
    #[error("the stored workspace fails its check; the row was edited outside hexbroker")]
    Tampered,
    /// The stored origin is not (or no longer) in `HEXBROKER_HEX_HOSTS`.
    #[error("the stored Hex origin is not in HEXBROKER_HEX_HOSTS")]
    HostNotListed,
}

impl From<BadStoredSubdomain> for BadStoredWorkspace {
    fn from(_: BadStoredSubdomain) -> Self {
        BadStoredWorkspace::Tampered
    }
}

/// The host name of a canonical origin (`[::1]` for an IPv6 one), or `None` if it is not one.
fn host_of(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin).ok()?;
    (url.origin().ascii_serialization() == origin).then(|| url.host_str().map(str::to_owned)).flatten()
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
    /// The operator's own Hex origins, canonical (as `Config::hex_hosts` holds them).
    hosts: Arc<[String]>,
    http: reqwest::Client,
}

impl HexClient {
    /// A client for the origin `template` (`{subdomain}` is substituted).
    pub fn new(template: &str, timeout: Duration) -> anyhow::Result<Self> {
        Self::with_hosts(template, &[], timeout)
    }

    /// A client for the origin `template` and the operator's own Hex origins `hosts` (canonical,
    /// as [`crate::Config`] checked them).
    pub fn with_hosts(template: &str, hosts: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            // The environment's HTTP_PROXY and the like would see every Hex token in the clear.
            .no_proxy()
            .dns_resolver(Arc::new(SystemResolver))
            .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { template: template.into(), hosts: hosts.into(), http })
    }

    /// Whether the operator named any Hex origins of their own.
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The workspace a submitted subdomain field names (§6 steps 1 and 1b): a URL on one of the
    /// operator's own origins (exactly: scheme, host and port; no user name; any path after it
    /// ignored), or the host name alone of an https one; otherwise the subdomain rule, which
    /// refuses every other host as `invalid_subdomain`.
    pub fn workspace(&self, input: &str) -> Result<Workspace, ApiError> {
        let text = input.trim();
        let has_scheme = {
            let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
            lower.starts_with("https://") || lower.starts_with("http://")
        };
        if has_scheme {
            if let Some(host) = self.listed(text) {
                return Ok(Workspace::Host(host));
            }
        }
        match Subdomain::parse(text) {
            Ok(subdomain) => Ok(Workspace::Template(subdomain)),
            Err(refused) if has_scheme || !text.starts_with(|c: char| c.is_ascii_alphanumeric()) => {
                Err(refused)
            }
            Err(refused) => self.listed(&format!("https://{text}")).map(Workspace::Host).ok_or(refused),
        }
    }

    /// The listed origin `url` is on, if it is exactly on one.
    fn listed(&self, url: &str) -> Option<HexHost> {
        // A backslash reads as a slash to URL parsers but not to people: refused, as is space.
        if self.hosts.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return None;
        }
        let url = url::Url::parse(url).ok()?;
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let origin = url.origin().ascii_serialization();
        let listed = self.hosts.iter().find(|h| **h == origin)?;
        Some(HexHost { origin: listed.clone(), host: url.host_str()?.to_owned() })
    }

    /// The workspace of a stored row, checked again (§9): a template row's subdomain by §6's
    /// rule; a row with its own origin only while that origin is still listed, and only with the
    /// subdomain that origin gives.
    pub fn stored_workspace(
        &self,
        subdomain: &str,
        hex_url: Option<&str>,
    ) -> Result<Workspace, BadStoredWorkspace> {
        let Some(origin) = hex_url else {
            return Ok(Workspace::Template(Subdomain::from_stored(subdomain)?));
        };
        let host = host_of(origin).ok_or(BadStoredWorkspace::Tampered)?;
        if host != subdomain {
            return Err(BadStoredWorkspace::Tampered);
        }
        match self.hosts.iter().find(|h| *h == origin) {
            Some(listed) => Ok(Workspace::Host(HexHost { origin: listed.clone(), host })),
            None => Err(BadStoredWorkspace::HostNotListed),
        }
    }

    /// The workspace's origin, e.g. `https://acme.hex.tech`, with no trailing slash.
    pub fn origin(&self, workspace: &Workspace) -> String {
        match workspace {
            Workspace::Template(subdomain) => {
                self.template.replace("{subdomain}", subdomain.as_str()).trim_end_matches('/').to_owned()
            }
            Workspace::Host(host) => host.origin.clone(),
        }
    }

    /// Asks Hex whether `token` works in `workspace`: `users/me`, falling back to listing one
    /// project when Hex forbids or does not know `users/me` for this token, answers it with a
    /// 5xx, or answers 200 with a body that does not read as the spec's (§6 step 3).
    #[tracing::instrument(skip_all, fields(subdomain = workspace.subdomain()))]
    pub async fn verify(
        &self,
        workspace: &Workspace,
        token: &SecretString,
    ) -> Result<HexIdentity, Rejection> {
        let origin = self.origin(workspace);
        let me = self.get(&format!("{origin}/api/v1/users/me"), token).await?;
        match me.status() {
            StatusCode::OK => {
                match read_capped(me, MAX_ME_BODY).await.as_deref().and_then(identity_from_me) {
                    Some(identity) => return Ok(identity),
                    None => tracing::warn!(
                        "Hex's users/me answer does not read as the spec's; checking projects instead"
                    ),
                }
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {}
            status if status.is_server_error() => {
                tracing::warn!(status = status.as_u16(), "Hex's users/me failed; checking projects instead");
            }
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

/// The longest `Retry-After` hexbroker passes on from Hex to a connect's caller.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

fn common_rejection(status: StatusCode, response: &reqwest::Response) -> Rejection {
    match status {
        StatusCode::UNAUTHORIZED => Rejection::TokenRejected,
        // Either form, whatever the value: a wait past an hour is read as an hour.
        StatusCode::TOO_MANY_REQUESTS => Rejection::RateLimited {
            retry_after: crate::proxy::retry_after(response.headers(), std::time::SystemTime::now())
                .map(|wait| wait.min(MAX_RETRY_AFTER).as_secs_f64().ceil() as u64),
        },
        other => {
            tracing::warn!(status = other.as_u16(), "Hex answered unexpectedly");
            Rejection::Unavailable
        }
    }
}

/// The most of a `users/me` body hexbroker reads; a bigger one is treated as unreadable.
const MAX_ME_BODY: usize = 64 * 1024;

/// The body of `response`, or `None` when it cannot be read or is larger than `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// The identity in Hex's `users/me` answer (user fields only for personal tokens), or `None`
/// when the body is not the spec's shape: a JSON object with `org`. A field of an unexpected
/// type or form is kept as unknown: it never fails a connect.
fn identity_from_me(body: &[u8]) -> Option<HexIdentity> {
    let me: serde_json::Value = serde_json::from_slice(body).ok()?;
    let me = me.as_object()?;
    let org = me.get("org")?;
    let org_id = org.get("id").and_then(|v| v.as_str()).map(str::trim).filter(|id| is_org_id(id));
    let user_email = me.get("email").and_then(|v| v.as_str()).map(str::trim).filter(|e| is_email(e));
    let exp = me.get("token").and_then(|t| t.get("exp")).and_then(serde_json::Value::as_f64);
    Some(HexIdentity {
        org_id: org_id.map(str::to_owned),
        user_email: user_email.map(str::to_owned),
        token_expires_at: exp.and_then(expiry_from_number),
    })
}

/// An org id as Hex gives them (a UUID in practice): 1–128 visible ASCII characters.
fn is_org_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Something that reads as one email address: `local@domain.tld`, visible characters, no spaces,
/// at most 254 bytes.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else { return false };
    text.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && text.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// Hex sends `exp` as a number; read it as Unix seconds, or milliseconds when it is that large.
fn expiry_from_number(exp: f64) -> Option<DateTime<Utc>> {
    if !exp.is_finite() || exp <= 0.0 {
        return None;
    }
    let millis = if exp > 1e11 { exp } else { exp * 1000.0 };
    // Past the year 9999 or so the number is not a date anyone meant; keep it unknown.
    if millis > 253_402_300_799_000.0 {
        return None;
    }
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
    fn stored_subdomains_are_checked_again_without_normalising() {
        assert_eq!(Subdomain::from_stored("acme").unwrap().as_str(), "acme");
        let edited = ["", "ACME", "acme.evil.com", "127.0.0.1:9/x", "evil.com#", "acme/../x", " acme", "a@b"];
        for label in edited {
            assert_eq!(Subdomain::from_stored(label), Err(BadStoredSubdomain), "{label:?}");
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
        assert_eq!(expiry_from_number(f64::MAX), None);
        assert_eq!(expiry_from_number(f64::INFINITY), None);
    }

    #[test]
    fn identity_fields_of_unexpected_types_or_forms_are_unknown() {
        let exp = 1_767_225_600;
        let good = format!(r#"{{"email":"ada@example.com","org":{{"id":"org-1"}},"token":{{"exp":{exp}}}}}"#);
        let identity = identity_from_me(good.as_bytes()).unwrap();
        assert_eq!(identity.org_id.as_deref(), Some("org-1"));
        assert_eq!(identity.user_email.as_deref(), Some("ada@example.com"));
        assert_eq!(identity.token_expires_at, expiry_from_number(exp as f64));
        let odd = [
            r#"{"org":{"id":42},"email":"not an email","token":{"exp":"2026-01-01"}}"#,
            r#"{"org":{"id":null},"email":17,"token":{"exp":{"seconds":1}}}"#,
            r#"{"org":{},"email":"a@b@c.d","token":"soon"}"#,
            r#"{"org":"acme","email":["ada@example.com"],"token":{"exp":1e300}}"#,
            r#"{"org":{"id":""},"email":"ada@localhost","token":{"exp":-5}}"#,
            r#"{"org":{"id":"bad id"},"email":"ada@exa mple.com","token":null}"#,
        ];
        for body in odd {
            assert_eq!(identity_from_me(body.as_bytes()), Some(HexIdentity::default()), "{body}");
        }
        for unreadable in ["", "null", "[]", "\"just text\"", "{\"email\":\"ada@example.com\"}", "<html>"] {
            assert_eq!(identity_from_me(unreadable.as_bytes()), None, "{unreadable}");
        }
    }

    #[test]
    fn the_origin_substitutes_the_subdomain() {
        let client = HexClient::new("https://{subdomain}.hex.tech", Duration::from_secs(1)).unwrap();
        let acme = Workspace::Template(Subdomain::parse("acme").unwrap());
        assert_eq!(client.origin(&acme), "https://acme.hex.tech");
        let local = HexClient::new("http://127.0.0.1:9/{subdomain}/", Duration::from_secs(1)).unwrap();
        assert_eq!(local.origin(&acme), "http://127.0.0.1:9/acme");
    }

    fn with_hosts() -> HexClient {
        let hosts = ["https://hex.mycorp.com".to_owned(), "http://127.0.0.2:9090".to_owned()];
        HexClient::with_hosts("https://{subdomain}.hex.tech", &hosts, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn a_url_on_a_listed_origin_names_that_origin_and_nothing_else_does() {
        let client = with_hosts();
        let hosted = [
            ("https://hex.mycorp.com", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("  https://hex.mycorp.com/ ", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("https://hex.mycorp.com/hex/projects/1?x=y#z", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("HTTPS://HEX.MyCorp.COM:443/home", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("hex.mycorp.com", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("hex.mycorp.com/home", "https://hex.mycorp.com", "hex.mycorp.com"),
            ("http://127.0.0.2:9090/api/v1", "http://127.0.0.2:9090", "127.0.0.2"),
        ];
        for (input, origin, subdomain) in hosted {
            let workspace = client.workspace(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(workspace.hex_url(), Some(origin), "{input:?}");
            assert_eq!(workspace.subdomain(), subdomain, "{input:?}");
            assert_eq!(client.origin(&workspace), origin, "{input:?}");
            assert_eq!(workspace.fingerprint_key(), origin);
        }
        let template = [("acme", "acme"), ("https://acme.hex.tech/x", "acme"), ("eu.hex.tech", "eu")];
        for (input, label) in template {
            let workspace = client.workspace(input).unwrap();
            assert_eq!((workspace.subdomain(), workspace.hex_url()), (label, None), "{input:?}");
        }
        let refused = [
            "https://hex.mycorp.com.evil.com",
            "https://hex.mycorp.com@evil.com",
            "https://user@hex.mycorp.com",
            "https://user:pw@hex.mycorp.com/",
            "https://evil.com/https://hex.mycorp.com",
            "https://evil.com?https://hex.mycorp.com",
            "https://evil.com#@hex.mycorp.com",
            "http://hex.mycorp.com",
            "https://hex.mycorp.com:8443",
            "https://hex.mycorp.com.",
            "https://xhex.mycorp.com",
            "https://mycorp.com",
            "hex.mycorp.com.evil.com",
            "evil.com",
            "https://127.0.0.2:9090",
            "http://127.0.0.2:9091",
            "http://127.0.0.2",
            "127.0.0.2:9090",
            "http://127.1:9090",
            "http://localhost:9090",
            "https://hex.my\ncorp.com",
            "https://hex.mycorp.com/\tx",
            "https://hex.mycorp.com\\@evil.com",
            "https://hex.my corp.com",
            "https://hex.mycorp.com/\u{0}",
            "ftp://hex.mycorp.com",
            "//hex.mycorp.com",
            "https://hеx.mycorp.com",
        ];
        for input in refused {
            let err = client.workspace(input).expect_err(input);
            assert_eq!(err.code(), "invalid_subdomain", "{input:?}");
        }
        // With no hosts named, a URL is read by the subdomain rule alone, as before.
        let plain = HexClient::new("https://{subdomain}.hex.tech", Duration::from_secs(1)).unwrap();
        assert_eq!(plain.workspace("https://hex.mycorp.com").unwrap_err().code(), "invalid_subdomain");
    }

    #[test]
    fn a_stored_origin_is_used_only_while_listed_and_with_its_own_subdomain() {
        let client = with_hosts();
        let stored = client.stored_workspace("hex.mycorp.com", Some("https://hex.mycorp.com")).unwrap();
        assert_eq!(client.origin(&stored), "https://hex.mycorp.com");
        assert_eq!(client.stored_workspace("acme", None).unwrap().subdomain(), "acme");
        let cases = [
            ("hex.other.com", Some("https://hex.other.com"), BadStoredWorkspace::HostNotListed),
            ("hex.mycorp.com", Some("https://hex.other.com"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", Some("https://hex.mycorp.com:8443"), BadStoredWorkspace::HostNotListed),
            ("evil.com", Some("https://evil.com"), BadStoredWorkspace::HostNotListed),
            ("acme", Some("https://hex.mycorp.com"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", Some("https://hex.mycorp.com/"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", Some("https://HEX.mycorp.com"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", Some("https://u@hex.mycorp.com"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", Some("not a url"), BadStoredWorkspace::Tampered),
            ("hex.mycorp.com", None, BadStoredWorkspace::Tampered),
        ];
        for (subdomain, hex_url, expected) in cases {
            assert_eq!(client.stored_workspace(subdomain, hex_url), Err(expected), "{subdomain} {hex_url:?}");
        }
        let unlisted = HexClient::new("https://{subdomain}.hex.tech", Duration::from_secs(1)).unwrap();
        assert_eq!(
            unlisted.stored_workspace("hex.mycorp.com", Some("https://hex.mycorp.com")),
            Err(BadStoredWorkspace::HostNotListed),
            "an origin taken off the list is not used"
        );
    }
}
