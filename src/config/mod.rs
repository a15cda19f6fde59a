//! Configuration from the environment (§2 of the contract), checked once at start-up.
//!
//! A bad value stops the process with one line that names the variable and what is wrong,
//! and never echoes a secret value back. The settings and how they are read are here; the
//! parsing of one value (durations, numbers, lists, origins) is in `parse`.

mod parse;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use url::Url;

use crate::crypto::Keyring;
pub use parse::parse_duration;
use parse::{
    check_hex_url, duration, number, number_in, parse_attempt_limit, parse_bool, parse_hex_hosts,
    parse_origins,
};

/// The most serving threads `HEXBROKER_WORKERS` may ask for.
const MAX_WORKERS: usize = 256;

/// Everything hexbroker reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HEXBROKER_LISTEN`: the address to bind.
    pub listen: SocketAddr,
    /// `HEXBROKER_DATABASE_URL`: `postgres://…` or `sqlite://…` (its `Debug` hides a password).
    pub database_url: DatabaseUrl,
    /// `HEXBROKER_ENCRYPTION_KEYS`, parsed; `None` when unset.
    pub encryption_keys: Option<Keyring>,
    /// `HEXBROKER_HEX_URL`: the template of a workspace's Hex origin.
    pub hex_url: String,
    /// `HEXBROKER_HEX_HOSTS`: extra Hex origins people may connect to by URL (Hex on its own
    /// domain, §6 step 1b), each canonical (`scheme://host[:port]`, lowercase, no default port).
    pub hex_hosts: Vec<String>,
    /// `HEXBROKER_PUBLIC_URL`: the origin browsers use.
    pub public_url: Url,
    /// `HEXBROKER_ALLOWED_ORIGINS`: browser origins allowed to call the connect endpoints.
    pub allowed_origins: Vec<HeaderValue>,
    /// `HEXBROKER_MCP_TOOLS`: the MCP tools offered (§14), by name; `None` offers them all.
    pub mcp_tools: Option<Vec<String>>,
    /// `HEXBROKER_HEX_TIMEOUT`: the whole-request timeout of hexbroker's own calls to Hex.
    pub hex_timeout: Duration,
    /// `HEXBROKER_PROXY_CONNECT_TIMEOUT`: the time allowed to open a connection to Hex.
    pub proxy_connect_timeout: Duration,
    /// `HEXBROKER_PROXY_TIMEOUT`: the time allowed for Hex to start answering a proxied call.
    pub proxy_timeout: Duration,
    /// `HEXBROKER_PROXY_EXCHANGE_TIMEOUT`: the whole proxied exchange, bodies included.
    pub proxy_exchange_timeout: Duration,
    /// `HEXBROKER_PROXY_RETRIES`: retries of a proxied call after the first attempt (§7's rules).
    pub proxy_retries: u32,
    /// `HEXBROKER_PROXY_MAX_PER_WORKSPACE`: proxied calls in flight to one Hex workspace at once
    /// (per replica); past it a call gets 503 `workspace_busy` after a short wait.
    pub proxy_max_per_workspace: u32,
    /// `HEXBROKER_PROXY_RETRY_BUDGET`: the most time one proxied call waits between attempts.
    pub proxy_retry_budget: Duration,
    /// `HEXBROKER_PROXY_RATE_LIMIT`: calls a minute each connection may send to Hex, unless the
    /// connection sets its own; `None` (the default) for no limit.
    pub proxy_rate_limit: Option<u32>,
    /// `HEXBROKER_CACHE_TTL`: the longest an API key or connection is served from memory without
    /// a notification (default 30s on Postgres, which notifies every replica; 1s on SQLite, where a
    /// second process such as the CLI cannot notify).
    pub cache_ttl: Duration,
    /// `HEXBROKER_CACHE_CAPACITY`: entries per cache; 0 turns caching off.
    pub cache_capacity: usize,
    /// `HEXBROKER_DATABASE_MAX_CONNECTIONS`: the pool's size.
    pub database_max_connections: u32,
    /// `HEXBROKER_LOG_FORMAT`: `json`, `pretty`, or unset for "pretty on a terminal, else JSON".
    pub log_format: Option<LogFormat>,
    /// `HEXBROKER_VERIFY_INTERVAL`: how often each connection's token is checked against Hex in
    /// the background (default 24h); `None` (`off`) for never.
    pub verify_interval: Option<Duration>,
    /// `HEXBROKER_VERIFY_CONCURRENCY`: background checks in flight at once, per replica.
    pub verify_concurrency: usize,
    /// `HEXBROKER_EXPIRY_WARNING`: how long before `token_expires_at` `connection.expiring` fires.
    pub expiry_warning: Duration,
    /// `HEXBROKER_WATCH_POLL`: how often each replica looks for due checks, expiries and warnings,
    /// and writes `last_used_at` marks to the database.
    pub watch_poll: Duration,
    /// `HEXBROKER_WEBHOOK_URL`: where events are delivered (§8); `None`: recorded, not sent.
    pub webhook_url: Option<Url>,
    /// `HEXBROKER_WEBHOOK_SECRET`: every delivery is signed with each of these.
    pub webhook_secrets: Vec<secrecy::SecretString>,
    /// `HEXBROKER_WEBHOOK_TIMEOUT`: the time a receiver has to answer one delivery.
    pub webhook_timeout: Duration,
    /// `HEXBROKER_WEBHOOK_CONCURRENCY`: deliveries in flight at once, per replica.
    pub webhook_concurrency: usize,
    /// `HEXBROKER_WEBHOOK_BACKOFF`: the wait before the first retry; each retry doubles it.
    pub webhook_backoff: Duration,
    /// `HEXBROKER_WEBHOOK_BACKOFF_MAX`: the longest wait between two attempts.
    pub webhook_backoff_max: Duration,
    /// `HEXBROKER_WEBHOOK_RETRY_FOR`: how long an event is retried before it is `dead`.
    pub webhook_retry_for: Duration,
    /// `HEXBROKER_WEBHOOK_POLL`: how often the delivery worker looks for due events when nothing
    /// woke it (the safety net behind the commit-time wake-up).
    pub webhook_poll: Duration,
    /// `HEXBROKER_WEBHOOK_ALLOW_HOSTS`: hosts (names or addresses, lower-cased) that tenants'
    /// webhook endpoints may use although they are, or resolve to, non-public addresses, and over
    /// plain `http` (§13).
    pub webhook_allow_hosts: Vec<String>,
    /// `HEXBROKER_AUDIT_RETENTION`: how long audit entries (and delivered events) are kept.
    pub audit_retention: Duration,
    /// `HEXBROKER_CONSOLE_SESSION_TTL`: how long an operator console session lasts at most (§12).
    pub console_session_ttl: Duration,
    /// `HEXBROKER_CONSOLE_IDLE_TIMEOUT`: how long a console session lasts unused (at most its TTL).
    pub console_idle_timeout: Duration,
    /// `HEXBROKER_LOG`: the log filter, checked (tracing's env-filter syntax).
    pub log_filter: String,
    /// The listener's limits against slow, idle and too many clients (`HEXBROKER_HEADER_READ_TIMEOUT`,
    /// `HEXBROKER_BODY_READ_TIMEOUT`, `HEXBROKER_IDLE_TIMEOUT`, `HEXBROKER_MAX_CONNECTIONS`,
    /// `HEXBROKER_SHUTDOWN_GRACE`).
    pub server: ServerLimits,
    /// `HEXBROKER_MAX_IN_FLIGHT`: requests served at once; past it, 503 `overloaded` at once.
    pub max_in_flight: usize,
    /// `HEXBROKER_WORKERS`: serving threads, each with its own accept loop, runtime and
    /// connections to Hex (`auto`: one per core); 1, the default, serves on the main runtime.
    pub workers: usize,
    /// `HEXBROKER_KEY_RATE_LIMIT`: requests a minute each API key may make; `None` (the default)
    /// for no limit.
    pub key_rate_limit: Option<u32>,
    /// `HEXBROKER_CONNECT_ATTEMPT_LIMIT`: connect attempts that Hex refuses, allowed per session,
    /// API key and client address within a window (default 10 per 10 minutes); `None` when off.
    pub connect_attempt_limit: Option<AttemptLimit>,
    /// `HEXBROKER_METRICS_LISTEN`: when set, `/metrics` is served only on this address.
    pub metrics_listen: Option<SocketAddr>,
    /// `HEXBROKER_METRICS_REFRESH`: how often the connection gauges are counted in the database.
    pub metrics_refresh: Duration,
    /// The request log's settings (`HEXBROKER_REQUEST_LOG*`, §11).
    pub request_log: RequestLogConfig,
}

/// The request log's settings (§11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLogConfig {
    /// `HEXBROKER_REQUEST_LOG`: `on` (the default) or `off` (nothing is recorded).
    pub enabled: bool,
    /// `HEXBROKER_REQUEST_LOG_RETENTION`: how long entries are kept (default 7d).
    pub retention: Duration,
    /// `HEXBROKER_REQUEST_LOG_MAX_ROWS`: the most entries kept (default 1,000,000).
    pub max_rows: u64,
    /// `HEXBROKER_REQUEST_LOG_QUEUE`: entries waiting to be written, per replica; past it, entries
    /// are dropped and counted (default 10,000).
    pub queue: usize,
    /// `HEXBROKER_REQUEST_LOG_PRUNE_INTERVAL`: how often old entries are pruned (default 5m).
    pub prune_interval: Duration,
}

/// The listener's limits (§2): how long a client may take, and how many may be connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The time a client has to send a request's headers: the first request's from when it
    /// connects, a later one's from its first byte.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Client connections open at once; past it, new ones get a 503 and are closed.
    pub max_connections: usize,
    /// How long a shutdown waits for in-flight requests before closing their connections.
    pub shutdown_grace: Duration,
    /// The time a client has to send a request's body, from the end of its headers.
    pub body_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(20),
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

/// So many refused attempts per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimit {
    /// Refusals allowed in a burst.
    pub attempts: u32,
    /// The window over which they are allowed again.
    pub window: Duration,
}

/// A database URL: reads as the `&str` it is, and its `Debug` never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                write!(f, "{:?}", url.as_str())
            }
            Ok(_) => write!(f, "{:?}", self.0),
            // Unparsable: it might hold anything, so show only its scheme.
            Err(_) => write!(f, "\"{}:…\"", self.0.split(':').next().unwrap_or_default()),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, for machines.
    Json,
    /// Human-readable lines, for terminals.
    Pretty,
}

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong, in a sentence that never quotes a secret.
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self { var, problem: problem.into() }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, which maps a variable name to its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let listen = match get("HEXBROKER_LISTEN") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new("HEXBROKER_LISTEN", format!("`{v}` is not an address like 127.0.0.1:8080"))
            })?,
        };

        let database_url = get("HEXBROKER_DATABASE_URL").unwrap_or_else(|| "sqlite://hexbroker.db".into());
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError::new(
                "HEXBROKER_DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }

        let encryption_keys = get("HEXBROKER_ENCRYPTION_KEYS")
            .map(|v| Keyring::parse(&v))
            .transpose()
            .map_err(|e| ConfigError::new("HEXBROKER_ENCRYPTION_KEYS", e.to_string()))?;

        // Set but empty is a mistake for these two (a compose file passing `${VAR:-}`, a line
        // `VAR=` left in an env file), not a request for the default: the default of the one is
        // the real Hex, of the other no browser origin at all, and neither should come silently.
        for (var, unset) in [
            ("HEXBROKER_HEX_URL", "for the default, https://{subdomain}.hex.tech"),
            ("HEXBROKER_ALLOWED_ORIGINS", "to allow no browser origin"),
        ] {
            let blank = |v: String| v.split(',').all(|part| part.trim().is_empty());
            if lookup(var).is_some_and(blank) {
                return Err(ConfigError::new(
                    var,
                    format!("is set but empty; unset it {unset}, or give a value"),
                ));
            }
        }

        let allow_insecure = parse_bool(&get, "HEXBROKER_HEX_ALLOW_INSECURE")?;
        let hex_url = get("HEXBROKER_HEX_URL").unwrap_or_else(|| "https://{subdomain}.hex.tech".into());
        check_hex_url(&hex_url, allow_insecure).map_err(|p| ConfigError::new("HEXBROKER_HEX_URL", p))?;
        let hex_hosts = get("HEXBROKER_HEX_HOSTS")
            .map(|v| parse_hex_hosts(&v, allow_insecure))
            .transpose()
            .map_err(|p| ConfigError::new("HEXBROKER_HEX_HOSTS", p))?
            .unwrap_or_default();

        let public_url = match get("HEXBROKER_PUBLIC_URL") {
            None => Url::parse(&format!("http://{listen}")).expect("a socket address makes a URL"),
            Some(v) => Url::parse(&v)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    ConfigError::new("HEXBROKER_PUBLIC_URL", format!("`{v}` is not an http(s) URL"))
                })?,
        };

        let allowed_origins = get("HEXBROKER_ALLOWED_ORIGINS")
            .map(|v| parse_origins(&v))
            .transpose()
            .map_err(|p| ConfigError::new("HEXBROKER_ALLOWED_ORIGINS", p))?
            .unwrap_or_default();

        let mcp_tools = get("HEXBROKER_MCP_TOOLS").map(|v| {
            v.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect::<Vec<_>>()
        });
        if let Some(names) = &mcp_tools {
            crate::mcp::Tools::from_hex_spec(Some(names))
                .map_err(|e| ConfigError::new("HEXBROKER_MCP_TOOLS", e.to_string()))?;
        }

        let log_format = match get("HEXBROKER_LOG_FORMAT").as_deref() {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("pretty") => Some(LogFormat::Pretty),
            Some(other) => {
                return Err(ConfigError::new(
                    "HEXBROKER_LOG_FORMAT",
                    format!("`{other}` is neither json nor pretty"),
                ))
            }
        };

        let database_max_connections = number_in(&get, "HEXBROKER_DATABASE_MAX_CONNECTIONS", 10, 1..=1000)?;

        let proxy_retries = number_in(&get, "HEXBROKER_PROXY_RETRIES", 2, 0..=10)?;
        let proxy_max_per_workspace = number_in(&get, "HEXBROKER_PROXY_MAX_PER_WORKSPACE", 64, 1..=100_000)?;

        let cache_capacity = number_in(&get, "HEXBROKER_CACHE_CAPACITY", 100_000, 0..=10_000_000)?;
        let default_ttl = if database_url.starts_with("sqlite:") {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };

        let proxy_rate_limit = match get("HEXBROKER_PROXY_RATE_LIMIT").as_deref() {
            None | Some("off") => None,
            Some(v) => Some(v.parse().ok().filter(|n| (1..=100_000).contains(n)).ok_or_else(|| {
                ConfigError::new(
                    "HEXBROKER_PROXY_RATE_LIMIT",
                    format!("`{v}` is not off or calls a minute from 1 to 100000"),
                )
            })?),
        };

        let verify_interval = match get("HEXBROKER_VERIFY_INTERVAL").as_deref() {
            Some("off") => None,
            _ => Some(duration(&get, "HEXBROKER_VERIFY_INTERVAL", Duration::from_secs(24 * 3600))?),
        };
        let verify_concurrency = number_in(&get, "HEXBROKER_VERIFY_CONCURRENCY", 4, 1..=256)?;

        let webhook_url = match get("HEXBROKER_WEBHOOK_URL") {
            None => None,
            Some(v) => Some(
                Url::parse(&v)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| ConfigError::new("HEXBROKER_WEBHOOK_URL", "is not an http(s) URL"))?,
            ),
        };
        let webhook_secrets: Vec<secrecy::SecretString> = get("HEXBROKER_WEBHOOK_SECRET")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| secrecy::SecretString::from(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if webhook_url.is_some() && webhook_secrets.is_empty() {
            return Err(ConfigError::new(
                "HEXBROKER_WEBHOOK_SECRET",
                "is required with HEXBROKER_WEBHOOK_URL, so that receivers can check each delivery",
            ));
        }
        let webhook_concurrency = number_in(&get, "HEXBROKER_WEBHOOK_CONCURRENCY", 16, 1..=1000)?;
        let webhook_allow_hosts: Vec<String> = get("HEXBROKER_WEBHOOK_ALLOW_HOSTS")
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if webhook_allow_hosts
            .iter()
            .any(|h| url::Host::parse(h).is_err() && h.parse::<std::net::Ipv6Addr>().is_err())
        {
            return Err(ConfigError::new(
                "HEXBROKER_WEBHOOK_ALLOW_HOSTS",
                "is a comma-separated list of host names or addresses (no scheme, port or path)",
            ));
        }

        let log_filter = get("HEXBROKER_LOG").unwrap_or_else(|| crate::telemetry::DEFAULT_FILTER.into());
        crate::telemetry::check_filter(&log_filter).map_err(|p| ConfigError::new("HEXBROKER_LOG", p))?;
        let server_defaults = ServerLimits::default();
        let server = ServerLimits {
            header_read_timeout: duration(
                &get,
                "HEXBROKER_HEADER_READ_TIMEOUT",
                server_defaults.header_read_timeout,
            )?,
            idle_timeout: duration(&get, "HEXBROKER_IDLE_TIMEOUT", server_defaults.idle_timeout)?,
            max_connections: number(&get, "HEXBROKER_MAX_CONNECTIONS", server_defaults.max_connections)?,
            shutdown_grace: duration(&get, "HEXBROKER_SHUTDOWN_GRACE", server_defaults.shutdown_grace)?,
            body_read_timeout: duration(
                &get,
                "HEXBROKER_BODY_READ_TIMEOUT",
                server_defaults.body_read_timeout,
            )?,
        };
        let max_in_flight = number(&get, "HEXBROKER_MAX_IN_FLIGHT", 4096)?;
        let workers = match get("HEXBROKER_WORKERS").as_deref().map(str::trim) {
            None | Some("auto") => {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
            }
            Some(_) => number_in(&get, "HEXBROKER_WORKERS", 1, 1..=MAX_WORKERS)?,
        };
        let key_rate_limit = match get("HEXBROKER_KEY_RATE_LIMIT").as_deref() {
            None | Some("off") => None,
            Some(v) => Some(v.parse().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                ConfigError::new(
                    "HEXBROKER_KEY_RATE_LIMIT",
                    format!("`{v}` is not off or requests a minute from 1 to 1000000"),
                )
            })?),
        };
        let connect_attempt_limit = match get("HEXBROKER_CONNECT_ATTEMPT_LIMIT").as_deref() {
            None => Some(AttemptLimit { attempts: 10, window: Duration::from_secs(600) }),
            Some("off") => None,
            Some(v) => Some(parse_attempt_limit(v).ok_or_else(|| {
                ConfigError::new(
                    "HEXBROKER_CONNECT_ATTEMPT_LIMIT",
                    format!("`{v}` is not off or attempts per window like 10/10m"),
                )
            })?),
        };
        let metrics_listen = get("HEXBROKER_METRICS_LISTEN")
            .map(|v| {
                v.parse().map_err(|_| {
                    ConfigError::new(
                        "HEXBROKER_METRICS_LISTEN",
                        format!("`{v}` is not an address like 127.0.0.1:9100"),
                    )
                })
            })
            .transpose()?;

        let request_log = RequestLogConfig {
            enabled: match get("HEXBROKER_REQUEST_LOG").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(ConfigError::new(
                        "HEXBROKER_REQUEST_LOG",
                        format!("`{other}` is neither on nor off"),
                    ))
                }
            },
            retention: duration(&get, "HEXBROKER_REQUEST_LOG_RETENTION", Duration::from_secs(7 * 86_400))?,
            max_rows: number_in(&get, "HEXBROKER_REQUEST_LOG_MAX_ROWS", 1_000_000, 1..=1_000_000_000)?,
            queue: number_in(&get, "HEXBROKER_REQUEST_LOG_QUEUE", 10_000, 1..=1_000_000)?,
            prune_interval: duration(&get, "HEXBROKER_REQUEST_LOG_PRUNE_INTERVAL", Duration::from_secs(300))?,
        };

        Ok(Self {
            request_log,
            verify_interval,
            verify_concurrency,
            expiry_warning: duration(&get, "HEXBROKER_EXPIRY_WARNING", Duration::from_secs(3 * 24 * 3600))?,
            watch_poll: duration(&get, "HEXBROKER_WATCH_POLL", Duration::from_secs(10))?,
            webhook_url,
            webhook_secrets,
            webhook_timeout: duration(&get, "HEXBROKER_WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            webhook_concurrency,
            webhook_backoff: duration(&get, "HEXBROKER_WEBHOOK_BACKOFF", Duration::from_secs(10))?,
            webhook_backoff_max: duration(&get, "HEXBROKER_WEBHOOK_BACKOFF_MAX", Duration::from_secs(3600))?,
            webhook_retry_for: duration(&get, "HEXBROKER_WEBHOOK_RETRY_FOR", Duration::from_secs(86_400))?,
            webhook_poll: duration(&get, "HEXBROKER_WEBHOOK_POLL", Duration::from_secs(5))?,
            webhook_allow_hosts,
            audit_retention: duration(&get, "HEXBROKER_AUDIT_RETENTION", Duration::from_secs(90 * 86_400))?,
            // A zero duration is refused (a session that ends as it starts).
            console_session_ttl: duration(
                &get,
                "HEXBROKER_CONSOLE_SESSION_TTL",
                Duration::from_secs(12 * 3600),
            )?,
            console_idle_timeout: duration(
                &get,
                "HEXBROKER_CONSOLE_IDLE_TIMEOUT",
                Duration::from_secs(3600),
            )?,
            server,
            max_in_flight,
            workers,
            key_rate_limit,
            connect_attempt_limit,
            metrics_listen,
            metrics_refresh: duration(&get, "HEXBROKER_METRICS_REFRESH", Duration::from_secs(30))?,
            listen,
            proxy_rate_limit,
            cache_ttl: duration(&get, "HEXBROKER_CACHE_TTL", default_ttl)?,
            cache_capacity,
            proxy_retries,
            proxy_max_per_workspace,
            proxy_retry_budget: duration(&get, "HEXBROKER_PROXY_RETRY_BUDGET", Duration::from_secs(10))?,
            database_url: DatabaseUrl(database_url),
            encryption_keys,
            hex_url,
            hex_hosts,
            public_url,
            allowed_origins,
            mcp_tools,
            hex_timeout: duration(&get, "HEXBROKER_HEX_TIMEOUT", Duration::from_secs(10))?,
            proxy_connect_timeout: duration(&get, "HEXBROKER_PROXY_CONNECT_TIMEOUT", Duration::from_secs(5))?,
            proxy_timeout: duration(&get, "HEXBROKER_PROXY_TIMEOUT", Duration::from_secs(60))?,
            proxy_exchange_timeout: duration(
                &get,
                "HEXBROKER_PROXY_EXCHANGE_TIMEOUT",
                Duration::from_secs(300),
            )?,
            database_max_connections,
            log_format,
            log_filter,
        })
    }

    /// Whether the database is SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests;
