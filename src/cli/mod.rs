//! The command line (§3 of the contract). Every command reads the same environment as `serve`;
//! `healthcheck` (the container probe) is in [`healthcheck`].

pub mod healthcheck;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::app;
use crate::auth::{self, Scopes};
use crate::background::Background;
use crate::config::{self, Config, LogFormat};
use crate::crypto::Keyring;
use crate::state::AppState;
use crate::store::{self, ApiKey};
use crate::telemetry;

const ENVIRONMENT: &str = "\
Configuration comes from the environment, for every command:
  HEXBROKER_LISTEN            address to bind (127.0.0.1:8080)
  HEXBROKER_DATABASE_URL      sqlite://hexbroker.db (the default) or postgres://…
  HEXBROKER_ENCRYPTION_KEYS   KID:BASE64[,…] (required with Postgres; see `encryption-key generate`)
  HEXBROKER_HEX_URL           Hex's origin template (https://{subdomain}.hex.tech)
  HEXBROKER_PUBLIC_URL        the origin browsers use, for connect links
  HEXBROKER_LOG               log filter (info; e.g. debug,sqlx=warn)
and more (timeouts, limits, caches): README.md's Configuration table lists every variable.
A bad value stops the process with one line naming the variable.

Start with README.md (a walkthrough that runs as pasted); the HTTP API is openapi.yaml, also
served at GET /openapi.yaml.";

#[derive(Debug, Parser)]
#[command(
    name = "hexbroker",
    version,
    about = "A credential broker for the Hex data platform.",
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations, then serve (the default).
    Serve,
    /// Apply migrations and exit.
    Migrate,
    /// Manage internal API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Re-seal every stored token under the active encryption key (safe to interrupt and rerun).
    Reencrypt {
        /// Rows re-sealed per transaction.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
        /// At most this many rows a second, so serving replicas are not crowded out (0: no cap).
        #[arg(long, default_value_t = 0)]
        max_rate: u32,
    },
    /// Manage encryption keys.
    EncryptionKey {
        #[command(subcommand)]
        command: EncryptionKeyCommand,
    },
    /// Exit 0 when the server on HEXBROKER_LISTEN answers /readyz with 200, else 1 (for a
    /// container's HEALTHCHECK).
    Healthcheck {
        /// The most time the check may take, e.g. 500ms or 3s.
        #[arg(long, default_value = "3s", value_parser = parse_timeout)]
        timeout: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once, alone on the last line of stdout.
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// Comma-separated: connect, connections:read, connections:write, proxy, proxy:read, admin.
        #[arg(long)]
        scopes: String,
        /// The tenant the key acts in.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// List keys (never their secrets), each active, expired or revoked.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id.
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum EncryptionKeyCommand {
    /// Print a fresh KID:BASE64 entry for HEXBROKER_ENCRYPTION_KEYS.
    Generate,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    config::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a duration like 500ms or 3s"))
}

/// Runs the command line; what `main` calls.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::EncryptionKey { command: EncryptionKeyCommand::Generate } = command {
        println!("{}", Keyring::generate_entry());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hexbroker: configuration error: {e}");
            // A container runtime reads 1 as "unhealthy"; 2 is reserved there.
            let code = if matches!(command, Command::Healthcheck { .. }) { 1 } else { 2 };
            return ExitCode::from(code);
        }
    };
    if let Command::Healthcheck { timeout } = command {
        return match healthcheck::check(config.listen, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hexbroker: unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let format = telemetry::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hexbroker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(command, config, format));
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: as a log line where logs are JSON (a collector reads them), else as text.
            let cause = root_cause(&e);
            match format {
                LogFormat::Json => tracing::error!(error = %cause, "exiting"),
                LogFormat::Pretty => eprintln!("hexbroker: error: {cause}"),
            }
            ExitCode::FAILURE
        }
    };
    telemetry::flush();
    code
}

/// The error and its causes on one line, each cause once: many errors repeat their source's
/// text in their own (sqlx's "error returned from database: X" has X as its source).
pub fn root_cause(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn run(command: Command, config: Config, format: LogFormat) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            // Signals first: whoever sees the server listening may stop it at once.
            let shutdown = crate::signals::shutdown_signal();
            let state = AppState::new(config).await?;
            let listener = tokio::net::TcpListener::bind(state.config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("HEXBROKER_LISTEN: cannot bind {}: {e}", state.config.listen))?;
            let address = listener.local_addr()?;
            let url = browsable_url(address);
            tracing::info!(%address, %url, "hexbroker listening");
            let background = Background::spawn(&state)?;
            let metrics = match state.config.metrics_listen {
                Some(address) => {
                    let metrics = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                        anyhow::anyhow!("HEXBROKER_METRICS_LISTEN: cannot bind {address}: {e}")
                    })?;
                    tracing::info!(address = %metrics.local_addr()?, "metrics listening");
                    Some(metrics)
                }
                None => None,
            };
            if format == LogFormat::Pretty {
                eprintln!("{}", banner(&state, &url).await);
            }
            // On the signal, the listener drains and the background work stops, side by side:
            // each within the shutdown grace period.
            let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
            let stopping = tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown.await;
                    background.stop().await;
                }
            });
            app::serve_app(state, listener, metrics, shutdown).await?;
            stopping.await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            store::open(&config.database_url, 1).await?;
            eprintln!("migrations applied");
        }
        Command::Keys { command } => keys(command, AppState::new(config).await?).await?,
        Command::Reencrypt { batch, max_rate } => {
            let options = crate::reencrypt::Options { batch, max_rate };
            crate::reencrypt::run_with(&AppState::new(config).await?, options).await?;
        }
        Command::EncryptionKey { .. } | Command::Healthcheck { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(())
}

/// The URL a person on this machine opens for `address` (an unspecified IP becomes loopback).
fn browsable_url(address: SocketAddr) -> String {
    format!("http://{}", healthcheck::target(address))
}

/// What a person at a terminal needs after `hexbroker` starts: where it is, what it stores where,
/// and what to run next.
async fn banner(state: &AppState, url: &str) -> String {
    let config = &state.config;
    let database = if config.is_sqlite() {
        match store::sqlite_database_file(&config.database_url) {
            Some(file) => {
                let full = std::path::absolute(&file).unwrap_or(file);
                format!("SQLite, {}", full.display())
            }
            None => "SQLite, in memory (gone when the process stops)".to_owned(),
        }
    } else {
        format!("Postgres, {}", postgres_location(&config.database_url))
    };
    let keys = match crate::keyfile::key_file_path(config) {
        Some(file) => {
            let full = std::path::absolute(&file).unwrap_or(file);
            format!("key file {} (back it up, apart from the database)", full.display())
        }
        None => format!("HEXBROKER_ENCRYPTION_KEYS (active key {})", state.keyring.active_key_id()),
    };
    let usable = match state.store.list_api_keys().await {
        Ok(keys) => keys.iter().filter(|k| k.connection_id.is_none() && k.is_usable(store::now())).count(),
        Err(_) => 0,
    };
    let command = own_command();
    let next = if usable == 0 {
        format!("{command} keys create --name my-app --scopes connect,connections:read,proxy")
    } else {
        format!("{usable} API key(s) exist: {command} keys list")
    };
    format!(
        "\nhexbroker is ready at {url}\n  database:    {database}\n  encryption:  {keys}\n  \
         connect:     {public}connect (links from POST /v1/connect/sessions)\n  API:         {url}/openapi.yaml\n  \
         next:        {next}\n  stop:        Ctrl-C\n",
        public = config.public_url,
    )
}

/// Where a Postgres URL points, fit to print: user, host, port and database, never the password
/// (wherever the URL carries it: userinfo or a `password=` parameter) nor any other parameter.
fn postgres_location(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if !parsed.cannot_be_a_base() => {
            let user = match parsed.username() {
                "" => String::new(),
                user => format!("{user}@"),
            };
            let host = parsed.host_str().unwrap_or("localhost");
            let port = parsed.port().unwrap_or(5432);
            format!("{user}{host}:{port}{}", parsed.path())
        }
        _ => "(a URL that cannot be shown)".to_owned(),
    }
}

/// How the person at this terminal runs hexbroker again: `cargo run --` when `cargo run` started
/// this process (cargo sets `CARGO` and `CARGO_PKG_NAME` for the program it runs, and the binary
/// is then not on `PATH`), else `hexbroker`.
fn own_command() -> &'static str {
    own_command_from(|name| std::env::var(name).ok())
}

fn own_command_from(var: impl Fn(&str) -> Option<String>) -> &'static str {
    if var("CARGO").is_some() && var("CARGO_PKG_NAME").as_deref() == Some(env!("CARGO_PKG_NAME")) {
        "cargo run --"
    } else {
        "hexbroker"
    }
}

/// A key's state for people: revoked wins over expired, which wins over active.
fn key_status(key: &ApiKey, now: chrono::DateTime<chrono::Utc>) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    }
}

async fn keys(command: KeysCommand, state: AppState) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scopes, tenant } => {
            let scopes: Scopes = scopes.parse().map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            if scopes.is_empty() {
                anyhow::bail!("--scopes: name at least one scope");
            }
            let tenant =
                crate::input::Tenant::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let name = crate::input::KeyName::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let created = auth::create_api_key(&state, name.as_str(), tenant.as_str(), scopes).await?;
            eprintln!(
                "created key {} ({}) for tenant {} with scopes {}; the secret is shown once:",
                created.key.id, created.key.name, created.key.tenant, created.key.scopes
            );
            println!("{}", created.secret.expose_secret());
        }
        KeysCommand::List { json } => {
            let now = store::now();
            let keys = state.store.list_api_keys().await?;
            if json {
                let listed: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|key| {
                        let mut value = serde_json::to_value(key)?;
                        value["status"] = key_status(key, now).into();
                        Ok(value)
                    })
                    .collect::<Result<_, serde_json::Error>>()?;
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<12}  {:<20}  {:<14}  {:<8}  scopes",
                "id", "tenant", "name", "prefix", "status"
            );
            for key in keys {
                println!(
                    "{:<36}  {:<12}  {:<20}  {:<14}  {:<8}  {}",
                    key.id,
                    key.tenant,
                    key.name,
                    key.prefix,
                    key_status(&key, now),
                    key.scopes
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let audit = crate::audit::AuditContext::system(crate::audit::Action::KeyRevoke);
            if state.store.revoke_api_key(id, &audit).await? {
                eprintln!("revoked key {id}");
            } else {
                anyhow::bail!("no active key with id {id}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{own_command_from, postgres_location};

    #[test]
    fn a_postgres_location_never_shows_a_password() {
        let cases = [
            ("postgres://postgres:s3cretpw@127.0.0.1:5432/hexbroker", "postgres@127.0.0.1:5432/hexbroker"),
            ("postgresql://ada:s3cretpw@db/app?sslmode=require", "ada@db:5432/app"),
            ("postgres://db.internal:6543/app?password=s3cretpw", "db.internal:6543/app"),
            ("postgres://:s3cretpw@db/app", "db:5432/app"),
            ("postgres://%73ecret:s3cretpw@db/app", "%73ecret@db:5432/app"),
            ("postgres:s3cretpw", "(a URL that cannot be shown)"),
        ];
        for (url, shown) in cases {
            assert_eq!(postgres_location(url), shown, "{url}");
        }
    }

    #[test]
    fn the_next_command_is_one_that_works_where_the_user_is() {
        let run = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            own_command_from(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        assert_eq!(run(&[]), "hexbroker");
        assert_eq!(run(&[("CARGO", "/usr/bin/cargo")]), "hexbroker");
        assert_eq!(run(&[("CARGO", "/usr/bin/cargo"), ("CARGO_PKG_NAME", "other")]), "hexbroker");
        assert_eq!(run(&[("CARGO", "/usr/bin/cargo"), ("CARGO_PKG_NAME", "hexbroker")]), "cargo run --");
    }
}
