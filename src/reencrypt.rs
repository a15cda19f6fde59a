//! `hexbroker reencrypt`: re-seals every stored token (and the keyed-hash key) under the active
//! encryption key and the current seal version (which binds tenant and subdomain, §9), so that
//! older keys can then be dropped from `HEXBROKER_ENCRYPTION_KEYS`.
//! Each token is replaced by its own conditional update, so the command can be interrupted and
//! run again, and replicas may keep serving (and replacing tokens) while it runs.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use uuid::Uuid;

use crate::app::AppState;
use crate::crypto::{CryptoError, TokenBinding, HASH_KEY_AAD};

const BATCH: u32 = 500;

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Tokens now sealed by the active key.
    pub resealed: u64,
    /// Tokens that changed under us (replaced or deleted meanwhile) and were left alone.
    pub skipped: u64,
    /// Tokens whose row fails its seal (edited outside hexbroker), left alone and unusable.
    pub tampered: u64,
}

/// Re-seals everything not sealed by the active key, reporting progress on stderr.
pub async fn run(state: &AppState) -> anyhow::Result<Report> {
    let active = state.keyring.active_key_id().to_owned();
    let keyring = &state.keyring;

    if let Some(sealed) = state.store.sealed_secret("hash_key").await? {
        if sealed.key_id != active {
            let key = keyring.open(HASH_KEY_AAD, &sealed).context("opening the hash key")?;
            state.store.reseal_secret("hash_key", &sealed, &keyring.seal(HASH_KEY_AAD, &key)).await?;
        }
    }

    let total = state.store.count_tokens_not_sealed_by(&active).await?;
    let terminal = std::io::stderr().is_terminal();
    let mut report = Report::default();
    let mut after: Option<Uuid> = None;
    loop {
        let batch = state.store.tokens_not_sealed_by(&active, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        for row in batch {
            let binding =
                TokenBinding { connection_id: row.id, tenant: &row.tenant, subdomain: &row.subdomain };
            let token = match keyring.open_token(binding, &row.sealed) {
                Ok(token) => token,
                Err(CryptoError::Tampered) => {
                    // Re-sealing would bless the edit; the row stays unusable until reconnected.
                    eprintln!(
                        "connection {} failed its integrity check (edited outside hexbroker); left alone",
                        row.id
                    );
                    report.tampered += 1;
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("opening the token of connection {}", row.id))
                }
            };
            if state.store.reseal_token(row.id, &row.sealed, &keyring.seal_token(binding, &token)).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
        progress(terminal, report.resealed + report.skipped, total);
    }
    if terminal {
        eprintln!();
    }
    eprintln!(
        "re-sealed {} token(s) under key `{active}`; {} changed meanwhile and were left alone; \
         {} failed their integrity check",
        report.resealed, report.skipped, report.tampered
    );
    Ok(report)
}

fn progress(terminal: bool, done: u64, total: i64) {
    let total = total.max(done as i64).max(1) as u64;
    if terminal {
        let width = 30;
        let filled = (done * width / total) as usize;
        eprint!("\r[{}{}] {done}/{total}", "#".repeat(filled), " ".repeat(width as usize - filled));
        let _ = std::io::stderr().flush();
    } else {
        eprintln!("re-sealed {done}/{total}");
    }
}
