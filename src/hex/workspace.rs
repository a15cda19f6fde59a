//! Which Hex workspace a connection talks to: the subdomain rule, the origin template and the
//! operator's own Hex origins (`HEXBROKER_HEX_HOSTS`, §6 steps 1 and 1b), for a submission and
//! again for a stored row (§9). Nothing else names a Hex host.

use super::HexClient;

/// A submitted subdomain (or URL) that names no workspace hexbroker may talk to: 422
/// `invalid_subdomain` (the wall against server-side request forgery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the workspace subdomain is not a DNS label, nor on a listed Hex origin")]
pub struct InvalidSubdomain;

/// A workspace subdomain that passed the contract's check: the one label a caller chooses of the
/// upstream host, and so the wall against server-side request forgery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subdomain(String);

impl Subdomain {
    /// Accepts `acme`, `acme.hex.tech`, `https://acme.hex.tech/…` (any case, surrounding space),
    /// and returns `acme`; anything that is not then a DNS label is refused.
    pub fn parse(input: &str) -> Result<Self, InvalidSubdomain> {
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
            Err(InvalidSubdomain)
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

impl HexClient {
    /// The workspace a submitted subdomain field names (§6 steps 1 and 1b): a URL on one of the
    /// operator's own origins (exactly: scheme, host and port; no user name; any path after it
    /// ignored), or the host name alone of an https one; otherwise the subdomain rule, which
    /// refuses every other host as `invalid_subdomain`.
    pub fn workspace(&self, input: &str) -> Result<Workspace, InvalidSubdomain> {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            assert_eq!(client.workspace(input), Err(InvalidSubdomain), "{input:?}");
        }
        // With no hosts named, a URL is read by the subdomain rule alone, as before.
        let plain = HexClient::new("https://{subdomain}.hex.tech", Duration::from_secs(1)).unwrap();
        assert_eq!(plain.workspace("https://hex.mycorp.com"), Err(InvalidSubdomain));
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
