//! The configuration's rules, variable by variable.

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
    assert_eq!(c.connect_attempt_limit, Some(AttemptLimit { attempts: 3, window: Duration::from_secs(60) }));
    assert_eq!(c.key_rate_limit, Some(600));
    assert_eq!(c.server.max_connections, 50);
    assert_eq!(c.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
    assert_eq!(config(&[("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "off")]).unwrap().connect_attempt_limit, None);
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
    let c = config(&[("HEXBROKER_ALLOWED_ORIGINS", "https://a.example.com, http://localhost:3000")]).unwrap();
    assert_eq!(c.allowed_origins, vec!["https://a.example.com", "http://localhost:3000"]);
}
