//! `hexbroker reencrypt`: re-seals every stored token (and the keyed-hash key, and the webhook
//! endpoints' signing secrets) under the active encryption key and the current seal version (which
//! binds tenant, subdomain and any own Hex origin, §9), so that
//! older keys can then be dropped from `HEXBROKER_ENCRYPTION_KEYS`.
//! Tokens are re-sealed in short batches, one transaction each, every row by a conditional update,
//! so the command can be killed at any point and run again, and replicas may keep serving (and
//! replacing tokens) while it runs. A rate cap keeps it from crowding out the proxy. No cache
//! notice is sent: a re-sealed token is the same token (see `Store::reseal_tokens` in `store/backend.rs`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use uuid::Uuid;

use crate::crypto::{CryptoError, TokenBinding, HASH_KEY_AAD};
use crate::state::AppState;
use crate::store::Reseal;

/// How a run paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Rows read and re-sealed per transaction.
    pub batch: u32,
    /// At most this many rows a second (0: as fast as the database goes).
    pub max_rate: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self { batch: 200, max_rate: 0 }
    }
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Tokens now sealed by the active key.
    pub resealed: u64,
    /// Tokens that changed under us (replaced or deleted meanwhile) and were left alone.
    pub skipped: u64,
    /// Tokens whose row fails its seal (edited outside hexbroker), left alone and unusable.
    pub tampered: u64,
    /// Webhook endpoints whose signing secrets are now sealed by the active key.
    pub webhook_secrets: u64,
}

/// Re-seals everything not sealed by the active key, with the default [`Options`].
pub async fn run(state: &AppState) -> anyhow::Result<Report> {
    run_with(state, Options::default()).await
}

/// Re-seals everything not sealed by the active key, reporting progress on stderr.
pub async fn run_with(state: &AppState, options: Options) -> anyhow::Result<Report> {
    let active = state.keyring.active_key_id().to_owned();
    let keyring = &state.keyring;

    if let Some(sealed) = state.store.sealed_secret("hash_key").await? {
        if sealed.key_id != active {
            let key = keyring.open(HASH_KEY_AAD, &sealed).context("opening the hash key")?;
            state.store.reseal_secret("hash_key", &sealed, &keyring.seal(HASH_KEY_AAD, &key)).await?;
        }
    }

    let webhook_secrets = reseal_webhook_secrets(state, &active).await?;

    let total = u64::try_from(state.store.count_tokens_not_sealed_by(&active).await?).unwrap_or(0);
    let mut progress = Progress::new(std::io::stderr().is_terminal(), total);
    let mut report = Report { webhook_secrets, ..Report::default() };
    let mut after: Option<Uuid> = None;
    let started = Instant::now();
    loop {
        let batch = state.store.tokens_not_sealed_by(&active, after, options.batch.max(1)).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        let mut reseals = Vec::with_capacity(batch.len());
        for row in batch {
            let binding = TokenBinding {
                connection_id: row.id,
                tenant: &row.tenant,
                subdomain: &row.subdomain,
                hex_url: row.hex_url.as_deref(),
            };
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
            let new = keyring.seal_token(binding, &token);
            reseals.push(Reseal { id: row.id, old: row.sealed, new });
        }
        let done = state.store.reseal_tokens(&reseals).await?;
        report.resealed += done;
        report.skipped += (reseals.len() as u64).saturating_sub(done);
        progress.show(report.resealed + report.skipped + report.tampered);
        if options.max_rate > 0 {
            // Sleep until the rows so far fit under the cap.
            let due = Duration::from_secs_f64(
                (report.resealed + report.skipped) as f64 / f64::from(options.max_rate),
            );
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish();
    eprintln!(
        "re-sealed {} token(s) under key `{active}` in {:.1} s; {} changed meanwhile and were left \
         alone; {} failed their integrity check",
        report.resealed,
        started.elapsed().as_secs_f64(),
        report.skipped,
        report.tampered
    );
    Ok(report)
}

/// Re-seals the webhook endpoints' secrets (current and previous) not sealed by `active`; an
/// endpoint rotated meanwhile is left alone (its new secret is under the active key already).
async fn reseal_webhook_secrets(state: &AppState, active: &str) -> anyhow::Result<u64> {
    use crate::events::endpoints::{open_secret, seal_secret};
    let mut done = 0;
    for endpoint in state.store.endpoint_secrets_not_sealed_by(active).await? {
        let reseal = |sealed: &crate::crypto::Sealed| -> anyhow::Result<crate::crypto::Sealed> {
            let secret = open_secret(&state.keyring, endpoint.id, &endpoint.tenant, sealed)
                .with_context(|| format!("opening the secret of webhook endpoint {}", endpoint.id))?;
            let text = String::from_utf8(secret.to_vec()).unwrap_or_default();
            Ok(seal_secret(&state.keyring, endpoint.id, &endpoint.tenant, &secrecy::SecretString::from(text)))
        };
        let current = reseal(&endpoint.current())?;
        let previous = endpoint.previous().map(|p| reseal(&p)).transpose()?;
        if state.store.reseal_endpoint_secrets(&endpoint, &current, previous.as_ref()).await? {
            done += 1;
        }
    }
    if done > 0 {
        eprintln!("re-sealed the signing secrets of {done} webhook endpoint(s) under key `{active}`");
    }
    Ok(done)
}

/// Progress on stderr: a bar with rate and estimate redrawn in place on a terminal, otherwise a
/// plain line every few seconds (logs stay short for a big table).
struct Progress {
    terminal: bool,
    total: u64,
    started: Instant,
    last_line: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new(terminal: bool, total: u64) -> Self {
        Self { terminal, total, started: Instant::now(), last_line: None, drawn: false }
    }

    fn show(&mut self, done: u64) {
        let line = progress_line(done, self.total, self.started.elapsed());
        if self.terminal {
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else if self.last_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            eprintln!("{line}");
            self.last_line = Some(Instant::now());
        }
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// `[#####     ] 500/1000 50% 250/s, about 2 s left`.
fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    // Rows replaced by a running server meanwhile can make `done` pass the first count.
    let total = total.max(done).max(1);
    let width = 30;
    let filled = usize::try_from(done.saturating_mul(width) / total).unwrap_or(0);
    let bar = format!("{}{}", "#".repeat(filled), " ".repeat(usize::try_from(width).unwrap_or(0) - filled));
    let percent = done.saturating_mul(100) / total;
    let seconds = elapsed.as_secs_f64();
    if done == 0 || seconds < 0.001 {
        return format!("[{bar}] {done}/{total} {percent}%");
    }
    let rate = done as f64 / seconds;
    let left = (total - done) as f64 / rate;
    format!("[{bar}] {done}/{total} {percent}% {rate:.0}/s, about {left:.0} s left")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_rate_and_estimate() {
        assert_eq!(
            progress_line(500, 1000, Duration::from_secs(2)),
            format!("[{}{}] 500/1000 50% 250/s, about 2 s left", "#".repeat(15), " ".repeat(15))
        );
        assert_eq!(progress_line(0, 0, Duration::ZERO), format!("[{}] 0/1 0%", " ".repeat(30)));
        let over = progress_line(12, 10, Duration::from_secs(1));
        assert!(over.starts_with(&format!("[{}] 12/12 100%", "#".repeat(30))), "{over}");
    }
}
