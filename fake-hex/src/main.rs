//! `fake-hex [--listen 127.0.0.1:9090] [--public-url URL] [--unlimited] [--print-env] [--tokens N
//! --tokens-file PATH]`: serves a fake Hex seeded with a `demo` workspace (a personal token, a
//! workspace token with every scope, three projects, a chart cell, a semantic project and a thread
//! topic), prints how to reach it, and runs until Ctrl-C or SIGTERM. Hex's default rate limits apply
//! unless `--unlimited` turns them off.
//!
//! What it prints (`HEXBROKER_HEX_URL` above all) uses `--public-url`, the origin hexbroker reaches
//! it by (`http://fake-hex:9090` in the compose file), else the listen address, with an unspecified
//! one (`0.0.0.0`) shown as loopback.
//!
//! For scripts (the README's walkthrough), `--print-env` writes only `NAME='value'` lines to stdout
//! (`HEXBROKER_HEX_URL`, `HEX_SUBDOMAIN`, `HEX_TOKEN`, `HEX_WORKSPACE_TOKEN`, `HEX_ORG_ID`), in one
//! write once the port is bound, for a shell to `source`; the description goes to stderr.
//!
//! For benchmarks (`bench/run`), `--tokens N --tokens-file PATH` also mints N more personal tokens
//! in `demo`, all acting as one user (`bench@example.com`), and writes them to PATH one per line
//! before serving.
//!
//! For proofs that need more than one workspace (`proofs/hex-misbehaves`), `--workspace
//! NAME:PATH` (repeatable) also serves workspace NAME and writes one personal token of it to PATH.
//!
//! To stand in for Hex on its own domain (`HEXBROKER_HEX_HOSTS`), `--at-root ADDR` also serves the
//! `demo` workspace at the root of `http://ADDR` (`http://ADDR/api/v1/…`).

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fake_hex::{FakeHex, RateLimits, Scope};

const USAGE: &str =
    "usage: fake-hex [--listen ADDR] [--unlimited] [--print-env] [--tokens N --tokens-file PATH]
  --listen ADDR        address to bind (default 127.0.0.1:9090)
  --public-url URL     the origin hexbroker reaches it by, e.g. http://fake-hex:9090, for what it
                       prints (default: http:// and the listen address, 0.0.0.0 as 127.0.0.1)
  --unlimited          turn Hex's per-token rate limits off
  --print-env          print only NAME='value' lines (HEXBROKER_HEX_URL, HEX_TOKEN, ...) to stdout
                       for a shell to source; the description goes to stderr
  --tokens N           also mint N personal tokens in `demo` (all as bench@example.com) ...
  --tokens-file PATH   ... and write them to PATH, one per line, before serving
  --workspace NAME:PATH  also serve workspace NAME, and write one personal token of it to PATH
                       (repeatable)
  --at-root ADDR       also serve workspace `demo` at the root of http://ADDR, as Hex on its own
                       domain answers (for HEXBROKER_HEX_HOSTS)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    listen: SocketAddr,
    /// The origin printed instead of the listen address.
    public_url: Option<String>,
    unlimited: bool,
    /// Print shell assignments on stdout and the description on stderr.
    print_env: bool,
    /// How many extra personal tokens to mint, and where to write them.
    tokens: Option<(usize, PathBuf)>,
    /// More workspaces, each with the file its personal token is written to.
    workspaces: Vec<(String, PathBuf)>,
    /// Where to serve `demo` at the root of an origin as well.
    at_root: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-hex: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listen = options.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-hex: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let root = match options.at_root {
        None => None,
        Some(at) => match tokio::net::TcpListener::bind(at).await {
            Ok(root) => Some(root),
            Err(e) => {
                eprintln!("fake-hex: cannot listen on {at}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let root_addr = root.as_ref().map(|r| r.local_addr().unwrap_or(listen));

    let hex = FakeHex::new();
    let org_id = hex.add_workspace("demo");
    let personal = hex.add_personal_token("demo", "demo@example.com");
    let workspace = hex.add_workspace_token("demo", &Scope::all());
    let projects: Vec<String> = ["Revenue dashboard", "Churn analysis", "Weekly metrics"]
        .iter()
        .map(|t| hex.add_project("demo", t))
        .collect();
    let chart = hex.add_chart_cell("demo", &projects[0], "Revenue by month");
    let semantic = hex.add_semantic_project("demo", "Metrics", &["orders", "customers"], &["revenue"]);
    hex.add_topic("demo", "revenue");
    if options.unlimited {
        hex.set_rate_limits(RateLimits::unlimited());
    }
    for (name, path) in &options.workspaces {
        hex.add_workspace(name);
        let token = hex.add_personal_token(name, &format!("proof@{name}.example.com"));
        if let Err(e) = std::fs::write(path, format!("{token}\n")) {
            eprintln!("fake-hex: cannot write the token of {name} to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some((n, path)) = &options.tokens {
        if let Err(e) = write_tokens(&hex, *n, path) {
            eprintln!("fake-hex: cannot write tokens to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }

    let origin = options.public_url.clone().unwrap_or_else(|| format!("http://{}", reachable(addr)));
    let template = format!("{origin}/{{subdomain}}");
    let mut about = vec![
        format!("fake-hex listening on {addr}"),
        format!("HEXBROKER_HEX_URL={template}"),
        format!("workspace: demo (org {org_id}) at {origin}/demo/api/v1/…"),
        format!("personal token (demo@example.com): {personal}"),
        format!("workspace token (all scopes): {workspace}"),
    ];
    if let Some(chart) = chart {
        about.push(format!(
            "chart cell (project {}): {} (static id {})",
            projects[0], chart.id, chart.static_id
        ));
    }
    about.push(format!("semantic project: {semantic}"));
    if options.unlimited {
        about.push("rate limits: off".into());
    }
    if let Some((n, path)) = &options.tokens {
        about.push(format!("{n} more personal tokens (bench@example.com) in {}", path.display()));
    }
    for (name, path) in &options.workspaces {
        about.push(format!("workspace: {name}, a personal token in {}", path.display()));
    }
    if !is_loopback_origin(&origin) {
        about.push(
            "HEXBROKER_HEX_ALLOW_INSECURE=true (hexbroker allows plain http to loopback only, unless told)"
                .into(),
        );
    }
    if let Some(root_addr) = root_addr {
        about.push(format!("workspace: demo also at the root of http://{root_addr} (HEXBROKER_HEX_HOSTS)"));
    }
    let about = about.join("\n") + "\n";
    let printed = if options.print_env {
        let vars = [
            ("HEXBROKER_HEX_URL", template.clone()),
            ("HEX_SUBDOMAIN", "demo".to_owned()),
            ("HEX_TOKEN", personal.clone()),
            ("HEX_WORKSPACE_TOKEN", workspace.clone()),
            ("HEX_ORG_ID", org_id.clone()),
        ];
        let _ = std::io::stderr().write_all(about.as_bytes());
        write_all_now(&mut std::io::stdout(), &shell_assignments(&vars))
    } else {
        write_all_now(&mut std::io::stdout(), &about)
    };
    if let Err(e) = printed {
        eprintln!("fake-hex: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }

    let shutdown = async {
        // If a signal handler cannot be installed, that signal kills the process as usual.
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    };
    if let Some(root) = root {
        // Ends with the process, when the main listener's graceful shutdown is done.
        let router = hex.root_router("demo");
        tokio::spawn(async move { axum::serve(root, router).await });
    }
    match hex.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-hex: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME='value'` lines a POSIX shell can `source` (values never hold a quote; checked anyway).
fn shell_assignments(vars: &[(&str, String)]) -> String {
    vars.iter().map(|(name, value)| format!("{name}='{}'\n", value.replace('\'', r"'\''"))).collect()
}

/// Writes `text` in one piece and flushes, so a reader polling a file sees all of it or nothing
/// (short of a partial write, which a regular file does not do for a few hundred bytes).
fn write_all_now(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Mints `n` personal tokens in `demo` (one user, so seeding stays linear) and writes them to
/// `path`, one per line.
fn write_tokens(hex: &FakeHex, n: usize, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for _ in 0..n {
        writeln!(out, "{}", hex.add_personal_token("demo", "bench@example.com"))?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The address a client on this machine connects to for `addr`: an unspecified IP (`0.0.0.0`,
/// `::`) becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Whether an origin's host is loopback (hexbroker then takes plain http without being told).
fn is_loopback_origin(origin: &str) -> bool {
    let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An origin as `--public-url` takes it: `http(s)://host[:port]`, no path (a trailing `/` is
/// dropped).
fn parse_origin(text: &str) -> Option<String> {
    let origin = text.trim().trim_end_matches('/');
    let (scheme, rest) = origin.split_once("://")?;
    let fine = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    fine.then(|| origin.to_owned())
}

/// A workspace subdomain as Hex has them: lowercase letters, digits and inner hyphens.
fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The options from the arguments; `Ok(None)` when help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        public_url: None,
        unlimited: false,
        print_env: false,
        tokens: None,
        workspaces: Vec::new(),
        at_root: None,
    };
    let mut tokens: Option<usize> = None;
    let mut tokens_file: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |what: &str| inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs {what}"));
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--unlimited" if inline.is_none() => options.unlimited = true,
            "--print-env" if inline.is_none() => options.print_env = true,
            "--listen" => {
                let v = value("an address")?;
                options.listen =
                    v.parse().map_err(|_| format!("{v:?} is not an address like 127.0.0.1:9090"))?;
            }
            "--public-url" => {
                let v = value("a URL")?;
                options.public_url = Some(
                    parse_origin(&v).ok_or(format!("{v:?} is not an origin like http://fake-hex:9090"))?,
                );
            }
            "--tokens" => {
                let v = value("a number")?;
                tokens = Some(v.parse().map_err(|_| format!("{v:?} is not a number of tokens"))?);
            }
            "--tokens-file" => tokens_file = Some(PathBuf::from(value("a path")?)),
            "--at-root" => {
                let v = value("an address")?;
                options.at_root =
                    Some(v.parse().map_err(|_| format!("{v:?} is not an address like 127.0.0.2:9090"))?);
            }
            "--workspace" => {
                let v = value("NAME:PATH")?;
                let (name, path) = v
                    .split_once(':')
                    .filter(|(name, path)| is_label(name) && !path.is_empty())
                    .ok_or(format!("{v:?} is not NAME:PATH with NAME a workspace subdomain"))?;
                options.workspaces.push((name.to_owned(), PathBuf::from(path)));
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    options.tokens = match (tokens, tokens_file) {
        (None, None) => None,
        (Some(n), Some(path)) => Some((n, path)),
        _ => return Err("--tokens and --tokens-file go together".into()),
    };
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::parse_args;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> Result<Option<String>, String> {
        parse_args(args.iter().map(|s| s.to_string())).map(|a| a.map(|a| a.listen.to_string()))
    }

    #[test]
    fn arguments_choose_the_listen_address() {
        assert_eq!(parse(&[]), Ok(Some("127.0.0.1:9090".into())));
        assert_eq!(parse(&["--listen", "0.0.0.0:80"]), Ok(Some("0.0.0.0:80".into())));
        assert_eq!(parse(&["--listen=[::1]:1"]), Ok(Some("[::1]:1".into())));
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "nope"]).is_err());
        assert!(parse(&["--port", "1"]).is_err());
    }

    #[test]
    fn benchmark_options_are_off_unless_asked_for() {
        let plain = parse_args(std::iter::empty()).unwrap().unwrap();
        assert!(!plain.unlimited);
        assert_eq!(plain.tokens, None);
        let args = ["--unlimited", "--tokens", "5", "--tokens-file=/tmp/t.txt"].map(String::from);
        let bench = parse_args(args.into_iter()).unwrap().unwrap();
        assert!(bench.unlimited);
        assert_eq!(bench.tokens, Some((5, PathBuf::from("/tmp/t.txt"))));
        assert!(parse(&["--tokens", "5"]).is_err());
        assert!(parse(&["--tokens-file", "/tmp/t.txt"]).is_err());
        assert!(parse(&["--tokens", "many", "--tokens-file", "x"]).is_err());
        assert!(parse(&["--unlimited=yes"]).is_err());
        assert!(!plain.print_env);
        assert!(parse_args(["--print-env".to_owned()].into_iter()).unwrap().unwrap().print_env);
        assert!(parse(&["--print-env=1"]).is_err());
        assert!(plain.workspaces.is_empty());
        let args = ["--workspace", "bad:/tmp/bad.txt", "--workspace=other:t"].map(String::from);
        let more = parse_args(args.into_iter()).unwrap().unwrap();
        assert_eq!(
            more.workspaces,
            [("bad".to_owned(), PathBuf::from("/tmp/bad.txt")), ("other".to_owned(), PathBuf::from("t"))]
        );
        assert!(parse(&["--workspace", "bad"]).is_err());
        assert!(parse(&["--workspace", "Bad Name:/tmp/x"]).is_err());
        assert!(parse(&["--workspace", "bad:"]).is_err());
        assert_eq!(plain.at_root, None);
        let root =
            parse_args(["--at-root", "127.0.0.2:9091"].map(String::from).into_iter()).unwrap().unwrap();
        assert_eq!(root.at_root, Some("127.0.0.2:9091".parse().unwrap()));
        assert!(parse(&["--at-root", "hex.mycorp.com"]).is_err());
        assert!(parse(&["--at-root"]).is_err());
    }

    #[test]
    fn what_it_prints_is_an_address_hexbroker_can_reach() {
        let public = |args: &[&str]| {
            parse_args(args.iter().map(|s| s.to_string())).map(|o| o.and_then(|o| o.public_url))
        };
        assert_eq!(public(&[]), Ok(None));
        let compose = public(&["--listen", "0.0.0.0:9090", "--public-url", "http://fake-hex:9090/"]);
        assert_eq!(compose, Ok(Some("http://fake-hex:9090".into())));
        for bad in ["fake-hex:9090", "ftp://fake-hex", "http://", "http://fake-hex/api", "http://a b"] {
            assert!(public(&["--public-url", bad]).is_err(), "{bad}");
        }
        let shown = |addr: &str| super::reachable(addr.parse().unwrap()).to_string();
        assert_eq!(shown("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(shown("[::]:9090"), "[::1]:9090");
        assert_eq!(shown("10.0.0.5:9090"), "10.0.0.5:9090");
        for (origin, loopback) in [
            ("http://127.0.0.1:9090", true),
            ("http://localhost:9090", true),
            ("http://[::1]:9090", true),
            ("http://fake-hex:9090", false),
            ("http://10.0.0.5", false),
        ] {
            assert_eq!(super::is_loopback_origin(origin), loopback, "{origin}");
        }
    }

    #[test]
    fn printed_assignments_survive_a_shell() {
        let text = super::shell_assignments(&[("A", "x{y}".into()), ("B", "it's".into())]);
        assert_eq!(text, "A='x{y}'\nB='it'\\''s'\n");
    }
}
