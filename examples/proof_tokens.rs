//! A helper for the proofs in `proofs/`: fills the connection table with many rows whose tokens
//! are known, and checks afterwards that every stored token opens under the keys configured.
//! Reads the same environment as `hexbroker serve` (HEXBROKER_DATABASE_URL,
//! HEXBROKER_ENCRYPTION_KEYS).
//!
//!   proof_tokens seed N     inserts N connections, token `hxtp_seed_<id>`, sealed for their row
//!   proof_tokens check      opens every stored token; prints `rows R opened O wrong W failed F
//!                           active A` (A: sealed by the active key at the current seal version)
//!                           and exits 1 unless every token opened and every seeded one matched
#![forbid(unsafe_code)]

use std::process::ExitCode;

use futures_util::{stream, StreamExt as _};
use hexbroker::audit::{Action, AuditContext};
use hexbroker::config::Config;
use hexbroker::crypto::{TokenBinding, SEAL_V2};
use hexbroker::store::{Credentials, HexIdentity, NewConnection};
use hexbroker::AppState;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

const TENANT: &str = "default";
const SUBDOMAIN: &str = "acme";

fn seeded_token(id: Uuid) -> String {
    format!("hxtp_seed_{}", id.simple())
}

async fn seed(state: &AppState, n: u64) -> anyhow::Result<()> {
    let inserts = stream::iter(0..n).map(|i| async move {
        let id = Uuid::new_v4();
        let token = SecretString::from(seeded_token(id));
        let binding = TokenBinding { connection_id: id, tenant: TENANT, subdomain: SUBDOMAIN, hex_url: None };
        let new = NewConnection {
            id,
            tenant: TENANT.to_owned(),
            end_user_id: format!("seed-{i}"),
            end_user_email: None,
            label: None,
            metadata: serde_json::json!({}),
            credentials: Credentials {
                subdomain: SUBDOMAIN.to_owned(),
                hex_url: None,
                token_type: hexbroker::hex::TokenType::Personal,
                token_hint: "hxtp_…seed".to_owned(),
                token_fingerprint: state.hasher.token_fingerprint(SUBDOMAIN, &token),
                sealed: state.keyring.seal_token(binding, &token),
                identity: HexIdentity::default(),
            },
        };
        state.store.insert_connection(&new, &AuditContext::system(Action::Connect)).await.map(|_| ())
    });
    let mut inserts = inserts.buffer_unordered(8);
    let mut done = 0u64;
    while let Some(inserted) = inserts.next().await {
        inserted?;
        done += 1;
        if done % 10_000 == 0 {
            eprintln!("seeded {done}/{n}");
        }
    }
    eprintln!("seeded {done} connections");
    Ok(())
}

async fn check(state: &AppState) -> anyhow::Result<bool> {
    let active = state.keyring.active_key_id();
    let (mut rows, mut opened, mut wrong, mut failed, mut on_active) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut after = None;
    loop {
        // No key has the empty id, so this reads every row.
        let batch = state.store.tokens_not_sealed_by("", after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        for row in batch {
            rows += 1;
            if row.sealed.key_id == active && row.sealed.version == SEAL_V2 {
                on_active += 1;
            }
            let binding = TokenBinding {
                connection_id: row.id,
                tenant: &row.tenant,
                subdomain: &row.subdomain,
                hex_url: row.hex_url.as_deref(),
            };
            match state.keyring.open_token(binding, &row.sealed) {
                Ok(token) => {
                    opened += 1;
                    let token = token.expose_secret();
                    if token.starts_with("hxtp_seed_") && token != seeded_token(row.id) {
                        wrong += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
    }
    println!("rows {rows} opened {opened} wrong {wrong} failed {failed} active {on_active}");
    Ok(wrong == 0 && failed == 0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("proof_tokens: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("proof_tokens: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let state = AppState::new(config).await?;
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["seed", n] => seed(&state, n.parse()?).await.map(|()| true),
            ["check"] => check(&state).await,
            _ => anyhow::bail!("usage: proof_tokens seed N | proof_tokens check"),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("proof_tokens: {e:#}");
            ExitCode::FAILURE
        }
    }
}
