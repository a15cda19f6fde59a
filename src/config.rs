//! Configuration from the environment (§2 of the contract), checked once at start-up.
//!
//! A bad value stops the process with one line that names the variable and what is wrong,
//! and never echoes a secret value back.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderValue;
use url::Url;

use crate::crypto::Keyring;

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
            console_session_ttl: nonzero(
                duration(&get, "HEXBROKER_CONSOLE_SESSION_TTL", Duration::from_secs(12 * 3600))?,
                "HEXBROKER_CONSOLE_SESSION_TTL",
            )?,
            console_idle_timeout: nonzero(
                duration(&get, "HEXBROKER_CONSOLE_IDLE_TIMEOUT", Duration::from_secs(3600))?,
                "HEXBROKER_CONSOLE_IDLE_TIMEOUT",
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

/// Refuses a zero duration for `var` (a console session that ends as it starts).
fn nonzero(value: Duration, var: &'static str) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(var, "must be longer than 0s".to_owned()));
    }
    Ok(value)
}

fn parse_bool(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ConfigError::new(var, format!("`{other}` is not true or false"))),
    }
}

fn duration(
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

/// A count from 1 to 1,000,000.
/// The most serving threads `HEXBROKER_WORKERS` may ask for.
const MAX_WORKERS: usize = 256;

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    number_in(get, var, default, 1..=1_000_000)
}

/// A number in `range`, `default` when unset.
fn number_in<N: std::str::FromStr + PartialOrd + std::fmt::Display>(
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
fn parse_attempt_limit(text: &str) -> Option<AttemptLimit> {
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
fn check_hex_url(template: &str, allow_insecure: bool) -> Result<(), String> {
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
fn parse_hex_hosts(value: &str, allow_insecure: bool) -> Result<Vec<String>, String> {
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

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

fn parse_origins(value: &str) -> Result<Vec<HeaderValue>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://hexbroker.db");
        assert_eq!(c.hex_url, "https://{subdomain}.hex.tech");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(c.encryption_keys.is_none());
        assert!(c.allowed_origins.is_empty());
        assert_eq!(c.verify_interval, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(c.expiry_warning, Duration::from_secs(3 * 24 * 3600));
        assert_eq!(config(&[("HEXBROKER_VERIFY_INTERVAL", "off")]).unwrap().verify_interval, None);
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.max_in_flight, 4096);
        assert_eq!(c.key_rate_limit, None);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(
            c.request_log,
            RequestLogConfig {
                enabled: true,
                retention: Duration::from_secs(7 * 86_400),
                max_rows: 1_000_000,
                queue: 10_000,
                prune_interval: Duration::from_secs(300),
            }
        );
        assert!(!config(&[("HEXBROKER_REQUEST_LOG", "off")]).unwrap().request_log.enabled);
        assert_eq!(
            c.connect_attempt_limit,
            Some(AttemptLimit { attempts: 10, window: Duration::from_secs(600) })
        );
    }

    #[test]
    fn edge_limits_parse() {
        let c = config(&[
            ("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "3/1m"),
            ("HEXBROKER_KEY_RATE_LIMIT", "600"),
            ("HEXBROKER_MAX_CONNECTIONS", "50"),
            ("HEXBROKER_METRICS_LISTEN", "127.0.0.1:9100"),
        ])
        .unwrap();
        assert_eq!(
            c.connect_attempt_limit,
            Some(AttemptLimit { attempts: 3, window: Duration::from_secs(60) })
        );
        assert_eq!(c.key_rate_limit, Some(600));
        assert_eq!(c.server.max_connections, 50);
        assert_eq!(c.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
        assert_eq!(
            config(&[("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "off")]).unwrap().connect_attempt_limit,
            None
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("HEXBROKER_LISTEN", "localhost"),
            ("HEXBROKER_DATABASE_URL", "mysql://x"),
            ("HEXBROKER_ENCRYPTION_KEYS", "k1:notbase64!"),
            ("HEXBROKER_HEX_URL", "https://hex.tech"),
            ("HEXBROKER_HEX_URL", "http://{subdomain}.example.com"),
            ("HEXBROKER_HEX_URL", "ftp://{subdomain}.hex.tech"),
            ("HEXBROKER_PUBLIC_URL", "not a url"),
            ("HEXBROKER_ALLOWED_ORIGINS", "https://app.example.com/path"),
            ("HEXBROKER_HEX_TIMEOUT", "ten seconds"),
            ("HEXBROKER_LOG_FORMAT", "xml"),
            ("HEXBROKER_DATABASE_MAX_CONNECTIONS", "0"),
            ("HEXBROKER_PROXY_RETRIES", "11"),
            ("HEXBROKER_CACHE_TTL", "soon"),
            ("HEXBROKER_PROXY_RATE_LIMIT", "0"),
            ("HEXBROKER_CACHE_CAPACITY", "-1"),
            ("HEXBROKER_PROXY_RETRY_BUDGET", "forever"),
            ("HEXBROKER_VERIFY_INTERVAL", "daily"),
            ("HEXBROKER_VERIFY_CONCURRENCY", "0"),
            ("HEXBROKER_EXPIRY_WARNING", "0s"),
            ("HEXBROKER_WATCH_POLL", "soon"),
            ("HEXBROKER_WEBHOOK_URL", "ftp://example.com/hook"),
            ("HEXBROKER_WEBHOOK_CONCURRENCY", "0"),
            ("HEXBROKER_WEBHOOK_TIMEOUT", "1w"),
            ("HEXBROKER_AUDIT_RETENTION", "ninety days"),
            ("HEXBROKER_LOG", "verbose"),
            ("HEXBROKER_LOG", "debug,sqlx=wrn"),
            ("HEXBROKER_HEADER_READ_TIMEOUT", "0s"),
            ("HEXBROKER_IDLE_TIMEOUT", "a while"),
            ("HEXBROKER_MAX_CONNECTIONS", "0"),
            ("HEXBROKER_SHUTDOWN_GRACE", "-1s"),
            ("HEXBROKER_BODY_READ_TIMEOUT", "slowly"),
            ("HEXBROKER_MAX_IN_FLIGHT", "lots"),
            ("HEXBROKER_KEY_RATE_LIMIT", "0"),
            ("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "10"),
            ("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "0/10m"),
            ("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "10/never"),
            ("HEXBROKER_METRICS_LISTEN", "metrics.local"),
            ("HEXBROKER_METRICS_REFRESH", "often"),
            ("HEXBROKER_HEX_HOSTS", "hex.mycorp.com"),
            ("HEXBROKER_REQUEST_LOG", "maybe"),
            ("HEXBROKER_REQUEST_LOG_RETENTION", "a week"),
            ("HEXBROKER_REQUEST_LOG_MAX_ROWS", "0"),
            ("HEXBROKER_REQUEST_LOG_QUEUE", "0"),
            ("HEXBROKER_REQUEST_LOG_PRUNE_INTERVAL", "0s"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn a_setting_that_is_set_but_empty_is_refused_where_empty_would_be_a_surprise() {
        let cases = [
            ("HEXBROKER_HEX_URL", ""),
            ("HEXBROKER_HEX_URL", "   "),
            ("HEXBROKER_ALLOWED_ORIGINS", ""),
            ("HEXBROKER_ALLOWED_ORIGINS", " "),
            ("HEXBROKER_ALLOWED_ORIGINS", ", ,"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value:?}");
            assert!(err.to_string().starts_with(&format!("{var}: is set but empty; unset it")), "{err}");
        }
        let unset = config(&[]).unwrap();
        assert_eq!(unset.hex_url, "https://{subdomain}.hex.tech");
        assert!(unset.allowed_origins.is_empty());
        let one = config(&[("HEXBROKER_ALLOWED_ORIGINS", "https://app.example.com,")]).unwrap();
        assert_eq!(one.allowed_origins.len(), 1, "a trailing comma is forgiven");
    }

    #[test]
    fn a_number_out_of_range_names_the_range() {
        let cases = [
            ("HEXBROKER_DATABASE_MAX_CONNECTIONS", "1001", "`1001` is not a number from 1 to 1000"),
            ("HEXBROKER_PROXY_RETRIES", "11", "`11` is not a number from 0 to 10"),
            ("HEXBROKER_CACHE_CAPACITY", "10000001", "`10000001` is not a number from 0 to 10000000"),
            ("HEXBROKER_VERIFY_CONCURRENCY", "257", "`257` is not a number from 1 to 256"),
            ("HEXBROKER_WEBHOOK_CONCURRENCY", "x", "`x` is not a number from 1 to 1000"),
            ("HEXBROKER_MAX_IN_FLIGHT", "0", "`0` is not a number from 1 to 1000000"),
            ("HEXBROKER_WORKERS", "0", "`0` is not a number from 1 to 256"),
            ("HEXBROKER_WORKERS", "many", "`many` is not a number from 1 to 256"),
        ];
        for (var, value, problem) in cases {
            assert_eq!(config(&[(var, value)]).expect_err(var).problem, problem);
        }
        let edges =
            config(&[("HEXBROKER_PROXY_RETRIES", "0"), ("HEXBROKER_CACHE_CAPACITY", "10000000")]).unwrap();
        assert_eq!((edges.proxy_retries, edges.cache_capacity), (0, 10_000_000));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config(&[]).unwrap().workers, cores, "one per core unless asked");
        assert_eq!(config(&[("HEXBROKER_WORKERS", "1")]).unwrap().workers, 1, "the main runtime when asked");
        assert_eq!(config(&[("HEXBROKER_WORKERS", "auto")]).unwrap().workers, cores, "auto: one per core");
        assert_eq!(config(&[("HEXBROKER_WORKERS", "3")]).unwrap().workers, 3);
    }

    #[test]
    fn a_webhook_url_needs_a_secret_and_secrets_are_not_echoed() {
        let err = config(&[("HEXBROKER_WEBHOOK_URL", "http://127.0.0.1:9/hook")]).unwrap_err();
        assert_eq!(err.var, "HEXBROKER_WEBHOOK_SECRET");
        let c = config(&[
            ("HEXBROKER_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("HEXBROKER_WEBHOOK_SECRET", "s3cret-one, s3cret-two"),
        ])
        .unwrap();
        assert_eq!(c.webhook_secrets.len(), 2);
        assert!(!format!("{c:?}").contains("s3cret"), "Debug redacts webhook secrets");
        assert_eq!(config(&[]).unwrap().audit_retention, Duration::from_secs(90 * 86_400));
        assert_eq!(config(&[]).unwrap().console_session_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(config(&[]).unwrap().console_idle_timeout, Duration::from_secs(3600));
        assert_eq!(
            config(&[("HEXBROKER_CONSOLE_SESSION_TTL", "30m")]).unwrap().console_session_ttl,
            Duration::from_secs(1800)
        );
        assert!(config(&[("HEXBROKER_CONSOLE_SESSION_TTL", "0s")]).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let urls = [
            "postgres://app:s3cr%40t-pw@db.internal:5432/hexbroker",
            "postgresql://app:s3cr%40t-pw@db/hexbroker?sslmode=require",
            "postgres://app:s3cr%40t-pw@[::1/hexbroker",
        ];
        for url in urls {
            let config = Config::from_lookup(|k| match k {
                "HEXBROKER_DATABASE_URL" => Some(url.to_owned()),
                "HEXBROKER_ENCRYPTION_KEYS" => Some(Keyring::generate_entry()),
                _ => None,
            })
            .unwrap();
            let debug = format!("{config:?}");
            assert!(!debug.contains("s3cr"), "{debug}");
            assert!(debug.contains("postgres"), "{debug}");
            assert_eq!(&*config.database_url, url, "the value itself is unchanged");
        }
    }

    #[test]
    fn a_bad_encryption_key_is_not_echoed() {
        let err = config(&[("HEXBROKER_ENCRYPTION_KEYS", "k1:c2VjcmV0LWJ1dC1zaG9ydA==")]).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_or_when_asked() {
        assert!(config(&[("HEXBROKER_HEX_URL", "http://127.0.0.1:9090/{subdomain}")]).is_ok());
        assert!(config(&[("HEXBROKER_HEX_URL", "http://{subdomain}.localhost:9090")]).is_ok());
        assert!(config(&[
            ("HEXBROKER_HEX_URL", "http://{subdomain}.hex.internal"),
            ("HEXBROKER_HEX_ALLOW_INSECURE", "true"),
        ])
        .is_ok());
    }

    #[test]
    fn hex_hosts_are_exact_origins_checked_at_start_up() {
        let parse = |value: &str, insecure: bool| {
            let insecure = if insecure { "true" } else { "false" };
            config(&[("HEXBROKER_HEX_HOSTS", value), ("HEXBROKER_HEX_ALLOW_INSECURE", insecure)])
                .map(|c| c.hex_hosts)
                .map_err(|e| (e.var, e.problem))
        };
        assert!(config(&[]).unwrap().hex_hosts.is_empty(), "none unless named");
        let good = [
            ("https://hex.mycorp.com", vec!["https://hex.mycorp.com"]),
            ("https://hex.mycorp.com/", vec!["https://hex.mycorp.com"]),
            ("HTTPS://Hex.MyCorp.com:443", vec!["https://hex.mycorp.com"]),
            ("https://hex.mycorp.com:8443", vec!["https://hex.mycorp.com:8443"]),
            (
                " https://a.example.com , https://b.example.com,,",
                vec!["https://a.example.com", "https://b.example.com"],
            ),
            ("https://a.example.com,https://a.example.com/", vec!["https://a.example.com"]),
            ("http://127.0.0.2:9090", vec!["http://127.0.0.2:9090"]),
            ("http://[::1]:9090", vec!["http://[::1]:9090"]),
            ("http://hex.localhost", vec!["http://hex.localhost"]),
            ("https://10.0.0.5", vec!["https://10.0.0.5"]),
        ];
        for (value, hosts) in good {
            assert_eq!(parse(value, false), Ok(hosts.iter().map(|h| h.to_string()).collect()), "{value}");
        }
        let bad = [
            "hex.mycorp.com",
            "ftp://hex.mycorp.com",
            "https://",
            "https://hex.mycorp.com/hex",
            "https://hex.mycorp.com/?x=1",
            "https://hex.mycorp.com?",
            "https://hex.mycorp.com#top",
            "https://user@hex.mycorp.com",
            "https://user:pw@hex.mycorp.com",
            "https://hex.mycorp.com:99999",
            "https://hex mycorp.com",
            "http://hex.mycorp.com",
            "https://ok.example.com,http://hex.internal",
            "https://{subdomain}.hex.tech",
        ];
        for value in bad {
            let (var, problem) = parse(value, false).expect_err(value);
            assert_eq!(var, "HEXBROKER_HEX_HOSTS", "{value}");
            assert!(problem.contains('`'), "the problem names the entry: {problem}");
        }
        assert_eq!(parse("http://hex.internal:8080", true), Ok(vec!["http://hex.internal:8080".into()]));
    }

    #[test]
    fn durations_parse_in_five_units() {
        let cases = [
            ("500ms", Some(500)),
            ("10s", Some(10_000)),
            ("2m", Some(120_000)),
            ("7", Some(7_000)),
            ("6h", Some(6 * 3_600_000)),
            ("3d", Some(3 * 86_400_000)),
            ("2w", None),
            ("99999999999999999999d", None),
            ("", None),
        ];
        for (text, millis) in cases {
            assert_eq!(parse_duration(text).map(|d| d.as_millis() as u64), millis, "{text}");
        }
    }

    #[test]
    fn origins_are_kept_canonical() {
        let c =
            config(&[("HEXBROKER_ALLOWED_ORIGINS", "https://a.example.com, http://localhost:3000")]).unwrap();
        assert_eq!(c.allowed_origins, vec!["https://a.example.com", "http://localhost:3000"]);
    }
}
