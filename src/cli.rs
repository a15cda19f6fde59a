//! The command line (§3 of the contract). Every command reads the same environment as `serve`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::app::{self, AppState};
use crate::auth::{self, Scopes};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::{store, telemetry};

#[derive(Debug, Parser)]
#[command(name = "hexbroker", version, about = "A credential broker for the Hex data platform.")]
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
    Reencrypt,
    /// Manage encryption keys.
    EncryptionKey {
        #[command(subcommand)]
        command: EncryptionKeyCommand,
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
    /// List keys (never their secrets).
    List,
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

/// Runs the command line; what `main` calls.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::EncryptionKey { command: EncryptionKeyCommand::Generate }) = cli.command {
        println!("{}", Keyring::generate_entry());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hexbroker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hexbroker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("hexbroker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let state = AppState::new(config).await?;
            let listener = tokio::net::TcpListener::bind(state.config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("HEXBROKER_LISTEN: cannot bind {}: {e}", state.config.listen))?;
            tracing::info!(address = %listener.local_addr()?, "hexbroker listening");
            let background = app::Background::spawn(&state)?;
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
            app::serve_app(state, listener, metrics, app::shutdown_signal()).await?;
            background.stop().await;
        }
        Command::Migrate => {
            store::open(&config.database_url, 1).await?;
            eprintln!("migrations applied");
        }
        Command::Keys { command } => keys(command, AppState::new(config).await?).await?,
        Command::Reencrypt => {
            crate::reencrypt::run(&AppState::new(config).await?).await?;
        }
        Command::EncryptionKey { .. } => unreachable!("handled before configuration is read"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn keys(command: KeysCommand, state: AppState) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scopes, tenant } => {
            let scopes: Scopes = scopes.parse().map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            if scopes.is_empty() {
                anyhow::bail!("--scopes: name at least one scope");
            }
            let tenant = tenant.trim();
            if tenant.is_empty() || tenant.len() > 128 {
                anyhow::bail!("--tenant: 1 to 128 characters");
            }
            let created = auth::create_api_key(&state, &name, tenant, scopes).await?;
            eprintln!(
                "created key {} ({}) for tenant {} with scopes {}; the secret is shown once:",
                created.key.id, created.key.name, created.key.tenant, created.key.scopes
            );
            println!("{}", created.secret.expose_secret());
        }
        KeysCommand::List => {
            println!(
                "{:<36}  {:<12}  {:<20}  {:<14}  {:<8}  scopes",
                "id", "tenant", "name", "prefix", "status"
            );
            for key in state.store.list_api_keys().await? {
                let status = if key.is_usable(store::now()) { "active" } else { "revoked" };
                println!(
                    "{:<36}  {:<12}  {:<20}  {:<14}  {:<8}  {}",
                    key.id, key.tenant, key.name, key.prefix, status, key.scopes
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
