//! Reading one variable's value: booleans, durations, numbers in a range, and the lists and
//! URLs that need more than a parse (Hex's origin template and hosts, browser origins). Each
//! problem is told in a sentence that never quotes a secret.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use url::Url;

use super::{AttemptLimit, ConfigError};

/// `true` or `false` (also 1/0, yes/no); `false` when unset.
pub(super) fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<bool, ConfigError> {
    match get(var).as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ConfigError::new(var, format!("`{other}` is not true or false"))),
    }
}

/// A duration like `10s`, not zero; `default` when unset.
pub(super) fn duration(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
            ConfigError::new(var, format!("`{v}` is not a duration like 500ms, 10s, 2m, 6h or 3d"))
        }),
    }
}

/// A count from 1 to 1,000,000, `default` when unset.
pub(super) fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    number_in(get, var, default, 1..=1_000_000)
}

/// A number in `range`, `default` when unset.
pub(super) fn number_in<N: std::str::FromStr + PartialOrd + std::fmt::Display>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: N,
    range: std::ops::RangeInclusive<N>,
) -> Result<N, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            ConfigError::new(var, format!("`{v}` is not a number from {} to {}", range.start(), range.end()))
        }),
    }
}

/// Parses `10/10m`: so many attempts (1 to 1,000,000) per window.
pub(super) fn parse_attempt_limit(text: &str) -> Option<AttemptLimit> {
    let (attempts, window) = text.split_once('/')?;
    let attempts = attempts.trim().parse().ok().filter(|n| (1..=1_000_000).contains(n))?;
    let window = parse_duration(window).filter(|d| !d.is_zero())?;
    Some(AttemptLimit { attempts, window })
}

/// Parses `500ms`, `10s`, `2m`, `6h`, `3d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

/// Checks the Hex origin template: it names `{subdomain}` once, makes an http(s) URL with no query,
/// and is https unless its host is loopback or insecure use is allowed.
pub(super) fn check_hex_url(template: &str, allow_insecure: bool) -> Result<(), String> {
    if template.matches("{subdomain}").count() != 1 {
        return Err("must contain `{subdomain}` exactly once".into());
    }
    let url = Url::parse(&template.replace("{subdomain}", "example"))
        .map_err(|e| format!("is not a URL template ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback_host(&url) => Ok(()),
        "http" => {
            Err("is not https; use https, a loopback host, or set HEXBROKER_HEX_ALLOW_INSECURE=true".into())
        }
        other => Err(format!("has scheme `{other}`; only https (or http to loopback) is allowed")),
    }
}

/// Parses `HEXBROKER_HEX_HOSTS`: comma-separated origins, each `https://host[:port]` (plain
/// http only to a loopback host, or when insecure use is allowed, as for the template), with no
/// user name, path, query or fragment. Returns them canonical and without repeats.
pub(super) fn parse_hex_hosts(value: &str, allow_insecure: bool) -> Result<Vec<String>, String> {
    let mut hosts: Vec<String> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let shape = || {
            format!("`{entry}` is not an origin like https://hex.example.com (scheme://host[:port], nothing after)")
        };
        let lower = entry.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || entry.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(shape());
        }
        let url = Url::parse(entry).map_err(|_| shape())?;
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && !entry.trim_end_matches('/').ends_with('?')
            && url.query().is_none()
            && url.fragment().is_none()
            && match url.host() {
                Some(url::Host::Domain(d)) => {
                    d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                }
                Some(_) => true,
                None => false,
            };
        if !bare {
            return Err(shape());
        }
        if url.scheme() == "http" && !(allow_insecure || is_loopback_host(&url)) {
            return Err(format!(
                "`{entry}` is not https; use https, a loopback host, or set HEXBROKER_HEX_ALLOW_INSECURE=true"
            ));
        }
        let origin = url.origin().ascii_serialization();
        if !hosts.contains(&origin) {
            hosts.push(origin);
        }
    }
    Ok(hosts)
}

/// Whether the URL's host is loopback (an address, `localhost` or a name under it).
pub(super) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

/// Parses `HEXBROKER_ALLOWED_ORIGINS`: comma-separated bare origins, canonical.
pub(super) fn parse_origins(value: &str) -> Result<Vec<HeaderValue>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let url = Url::parse(origin)
                .map_err(|_| format!("`{origin}` is not an origin like https://app.example.com"))?;
            let canonical = url.origin().ascii_serialization();
            if canonical == "null" || canonical != origin.trim_end_matches('/') {
                return Err(format!("`{origin}` is not a bare origin (scheme://host[:port], no path)"));
            }
            HeaderValue::from_str(&canonical).map_err(|_| format!("`{origin}` is not a valid header value"))
        })
        .collect()
}
