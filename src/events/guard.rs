//! No way in through a webhook URL (§13): which URLs a tenant may register, and the resolver that
//! the endpoints' HTTP client connects through, so that the address actually connected to is
//! checked at send time too (DNS can change between registration and delivery).
//!
//! A host is refused when it is, or resolves to, an address that is not on the public internet:
//! loopback, private, shared (carrier-grade NAT), link-local (cloud metadata lives there),
//! unspecified, multicast, broadcast, and their IPv6 and IPv4-mapped forms. Hosts named in
//! `HEXBROKER_WEBHOOK_ALLOW_HOSTS` are exempt (and may use plain `http`).

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2048;

/// How long registration waits for a name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a URL is refused; the text is a sentence for the caller (it never echoes the URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

/// Whether an address is off-limits to webhook deliveries.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is a metadata address)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed privately)
                // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judge the IPv4 inside.
                || (s[..6] == [0, 0, 0, 0, 0, 0] && forbidden_v4(embedded_v4(v6)))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && forbidden_v4(embedded_v4(v6)))
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (100.100.100.200 is a metadata address)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// The allow-list, lower-cased.
#[derive(Debug, Clone, Default)]
pub struct AllowHosts(Arc<HashSet<String>>);

impl AllowHosts {
    /// From `HEXBROKER_WEBHOOK_ALLOW_HOSTS`' entries.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a String>) -> Self {
        Self(Arc::new(hosts.into_iter().map(|h| normalise(h)).collect()))
    }

    /// Whether `host` (a name or an address, as a URL writes it) is listed.
    pub fn contains(&self, host: &str) -> bool {
        !self.0.is_empty() && self.0.contains(&normalise(host))
    }
}

fn normalise(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a URL's shape: `https` (or `http` for an allow-listed host), a host, no credentials,
/// not too long. Returns the host as text.
pub fn check_shape(url: &Url, allow: &AllowHosts) -> Result<String, Refused> {
    if url.as_str().len() > MAX_URL_LEN {
        return Err(Refused("url is at most 2048 characters."));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(Refused("url must name a host."))?;
    let listed = allow.contains(host);
    match url.scheme() {
        "https" => {}
        "http" if listed => {}
        _ => {
            return Err(Refused(
                "url must be https (plain http only for hosts in HEXBROKER_WEBHOOK_ALLOW_HOSTS).",
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused(
            "url must not carry a user name or password; the signature authenticates deliveries.",
        ));
    }
    Ok(host.to_owned())
}

/// Checks a URL at registration: its shape, then its host's addresses (an address in the URL, or
/// every address its name resolves to now), unless the host is allow-listed.
pub async fn check_registration(url: &Url, allow: &AllowHosts) -> Result<(), Refused> {
    let host = check_shape(url, allow)?;
    if allow.contains(&host) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(name)) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => return Err(Refused("url's host name does not resolve.")),
            }
        }
        None => return Err(Refused("url must name a host.")),
    };
    if addresses.is_empty() {
        return Err(Refused("url's host name does not resolve."));
    }
    if addresses.into_iter().any(is_forbidden) {
        return Err(Refused(
            "url's host is or resolves to a loopback, private, link-local or otherwise non-public address.",
        ));
    }
    Ok(())
}

/// Checks a URL just before sending: its shape under today's allow-list, and an address written
/// in the URL (a name is checked by [`GuardedResolver`] on the addresses it resolves to, which
/// are the ones connected to).
pub fn check_send(url: &Url, allow: &AllowHosts) -> Result<(), Refused> {
    let host = check_shape(url, allow)?;
    if allow.contains(&host) {
        return Ok(());
    }
    let literal = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(is_forbidden) {
        return Err(Refused("the endpoint's address is not a public address"));
    }
    Ok(())
}

/// A name lookup: the system resolver, or a fixed answer in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync,
>;

/// The system's resolver (getaddrinfo, through tokio).
pub fn system_lookup() -> Lookup {
    Arc::new(|name: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((name.as_str(), 0)).await?.collect()) })
    })
}

/// The endpoints' client resolves names through this: it drops every forbidden address from the
/// answer (unless the name is allow-listed), so the client never connects to one, whatever the
/// name resolved to at registration.
pub struct GuardedResolver {
    allow: AllowHosts,
    lookup: Lookup,
}

impl GuardedResolver {
    /// A resolver over `lookup` that lets `allow`'s names through unfiltered.
    pub fn new(allow: AllowHosts, lookup: Lookup) -> Self {
        Self { allow, lookup }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        let listed = self.allow.contains(&name);
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let found = lookup(name).await?;
            let kept: Vec<SocketAddr> =
                found.into_iter().filter(|a| listed || !is_forbidden(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(ForbiddenAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The error a resolve ends with when every address was forbidden.
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's host resolves only to non-public addresses")]
pub struct ForbiddenAddress;

/// Whether a send failed because the guard refused every address.
pub fn is_forbidden_error(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<ForbiddenAddress>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The HTTP client for tenants' endpoints: guarded resolution, no proxy, no redirects.
pub fn endpoint_client(
    allow: AllowHosts,
    lookup: Lookup,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(allow, lookup)))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_non_public_class_is_forbidden_and_public_addresses_are_not() {
        let forbidden = [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.100.100.200",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fec0::1",
        ];
        for text in forbidden {
            assert!(is_forbidden(text.parse().unwrap()), "{text} is forbidden");
        }
        let public =
            ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"];
        for text in public {
            assert!(!is_forbidden(text.parse().unwrap()), "{text} is public");
        }
    }

    #[tokio::test]
    async fn registration_refuses_each_class_and_names_that_resolve_to_loopback() {
        let none = AllowHosts::default();
        let cases = [
            ("http://example.com/hook", "https"),
            ("ftp://example.com/hook", "https"),
            ("https://user:pw@93.184.216.34/hook", "password"),
            ("https://127.0.0.1/hook", "non-public"),
            ("https://[::1]/hook", "non-public"),
            ("https://10.1.2.3/hook", "non-public"),
            ("https://169.254.169.254/latest/meta-data", "non-public"),
            ("https://0.0.0.0/hook", "non-public"),
            ("https://[::ffff:192.168.0.1]/hook", "non-public"),
            ("https://localhost/hook", "non-public"),
            ("https://LOCALHOST/hook", "non-public"),
        ];
        for (url, says) in cases {
            let refused = check_registration(&Url::parse(url).unwrap(), &none).await.unwrap_err();
            assert!(refused.0.contains(says), "{url}: {refused}");
        }
        // With a trailing dot the name either resolves to loopback or not at all: refused both ways.
        assert!(check_registration(&Url::parse("https://localhost./hook").unwrap(), &none).await.is_err());
        assert_eq!(check_registration(&Url::parse("https://93.184.216.34/x").unwrap(), &none).await, Ok(()));
        let allow = AllowHosts::new(&["127.0.0.1".to_owned(), "Localhost".to_owned()]);
        for url in ["http://127.0.0.1:9/hook", "https://localhost/hook", "http://localhost:1/x"] {
            assert_eq!(check_registration(&Url::parse(url).unwrap(), &allow).await, Ok(()), "{url}");
        }
        assert!(check_send(&Url::parse("https://127.0.0.1/x").unwrap(), &none).is_err());
        assert!(check_send(&Url::parse("http://127.0.0.1/x").unwrap(), &none).is_err());
        assert!(check_send(&Url::parse("http://127.0.0.1/x").unwrap(), &allow).is_ok());
    }

    /// A name that resolved to a public address at registration and to loopback at send time
    /// (DNS rebinding): the client built over the guarded resolver never connects, while the same
    /// name allow-listed does reach the listener (so the check can fail).
    #[tokio::test]
    async fn the_client_refuses_a_name_that_now_resolves_to_loopback_and_never_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = Arc::new(Mutex::new(vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([93, 184, 216, 34], port)),
        ]));
        let lookup: Lookup = {
            let answers = answers.clone();
            Arc::new(move |_name: String| {
                let next = answers.lock().unwrap().pop().into_iter().collect();
                Box::pin(async move { Ok(next) })
            })
        };
        // At registration the name was public.
        let first = (lookup)("rebind.test".into()).await.unwrap();
        assert!(!is_forbidden(first[0].ip()));
        // Now it is loopback: the send is refused before any connection.
        let client = endpoint_client(AllowHosts::default(), lookup.clone(), Duration::from_secs(2)).unwrap();
        let url = format!("http://rebind.test:{port}/hook");
        let error = client.post(&url).send().await.unwrap_err();
        assert!(is_forbidden_error(&error), "{error:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected to the loopback listener");

        // The same name allow-listed goes through to the listener: the refusal above was the guard.
        answers.lock().unwrap().push(SocketAddr::from(([127, 0, 0, 1], port)));
        let allow = AllowHosts::new(&["rebind.test".to_owned()]);
        let client = endpoint_client(allow, lookup, Duration::from_secs(2)).unwrap();
        let sent = tokio::spawn(async move { client.post(&url).send().await });
        let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
        assert!(accepted.is_ok(), "an allow-listed name connects");
        sent.abort();
    }
}
