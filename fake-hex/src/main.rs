//! `fake-hex [--listen 127.0.0.1:9090]`: serves a fake Hex seeded with a `demo` workspace (a
//! personal token, a workspace token with every scope, three projects, a chart cell, a semantic
//! project and a thread topic), prints how to reach it, and runs until Ctrl-C. Hex's default rate
//! limits apply.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use fake_hex::{FakeHex, Scope};

const USAGE: &str = "usage: fake-hex [--listen ADDR]   (default 127.0.0.1:9090)";

#[tokio::main]
async fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Some(listen)) => listen,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-hex: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-hex: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);

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

    println!("fake-hex listening on http://{addr}");
    println!("HEXBROKER_HEX_URL={}", FakeHex::url_template(addr));
    println!("workspace: demo (org {org_id}) at http://{addr}/demo/api/v1/…");
    println!("personal token (demo@example.com): {personal}");
    println!("workspace token (all scopes): {workspace}");
    if let Some(chart) = chart {
        println!("chart cell (project {}): {} (static id {})", projects[0], chart.id, chart.static_id);
    }
    println!("semantic project: {semantic}");

    let shutdown = async {
        // If the signal handler cannot be installed, serve until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match hex.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-hex: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The listen address from the arguments; `Ok(None)` when help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 9090));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => args.next().ok_or("--listen needs an address")?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        };
        listen = value.parse().map_err(|_| format!("{value:?} is not an address like 127.0.0.1:9090"))?;
    }
    Ok(Some(listen))
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn parse(args: &[&str]) -> Result<Option<String>, String> {
        parse_args(args.iter().map(|s| s.to_string())).map(|a| a.map(|a| a.to_string()))
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
}
