//! Background token checks: the rounds that keep each connection's status true without waiting
//! for a caller to trip over it (§8 of the contract; §7's 401 follow-up is the proxy's, in
//! [`crate::proxy::after`], and asks Hex the same way).
//!
//! - [`expiry_round`]: `connection.expiring` once per token, `HEXBROKER_EXPIRY_WARNING` before
//!   `token_expires_at`; at `token_expires_at` the connection becomes `expired` without asking Hex.
//! - [`check_round`]: each connection's token is checked against Hex every
//!   `HEXBROKER_VERIFY_INTERVAL` (jittered), claimed by one replica per round, with bounded
//!   concurrency, and kept out of the way of a busy token's own calls.
//! - [`flush_last_used`]: writes the proxy's in-memory last-used marks
//!   ([`Usage`](crate::proxy::Usage)) in batches.
//!
//! Which replica does what is decided in the database by conditional updates (`store::verify`),
//! and every status change (with its event and audit entry, actor `system`) goes through
//! `Store::apply` inside one transaction; nothing here trusts a replica's memory for that.
//! [`Rounds::spawn`] runs every round on
//! `HEXBROKER_WATCH_POLL`; each round logs its errors and is tried again on the next tick, and
//! the rounds are public so that tests drive them with the [`Clock`](crate::clock::Clock) they
//! control.

mod check;
mod expiry;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::proxy::minute_of;
use crate::state::AppState;

pub use check::{check_round, CheckReport};
pub use expiry::{expiry_round, ExpiryReport};

/// Rows claimed per statement.
const BATCH: u32 = 500;
/// Batches one round takes at most of each kind of work (the rest waits for the next round).
const MAX_BATCHES: usize = 200;

/// A random factor in `[low, high)`, for jitter.
fn jitter(low: f64, high: f64) -> f64 {
    let bits = u64::from_le_bytes(crate::crypto::random_bytes::<8>()) >> 11;
    low + (high - low) * (bits as f64 / (1u64 << 53) as f64)
}

/// `at + span × factor`, saturating.
fn after(at: DateTime<Utc>, span: Duration, factor: f64) -> DateTime<Utc> {
    let millis = (span.as_millis() as f64 * factor).clamp(0.0, 1e15) as i64;
    at.checked_add_signed(TimeDelta::milliseconds(millis)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Writes the proxy's last-used marks that are not in the database yet; a failed write keeps
/// them for the next flush. Returns how many were written.
pub async fn flush_last_used(state: &AppState) -> crate::store::StoreResult<usize> {
    let marks = state.proxy.usage.take_unflushed(minute_of(state.clock.now()));
    for chunk in marks.chunks(BATCH as usize) {
        if let Err(e) = state.store.record_last_used(chunk).await {
            state.proxy.usage.restore(chunk);
            return Err(e);
        }
    }
    Ok(marks.len())
}

/// The background tasks of one replica; stop them with [`Rounds::stop`].
#[derive(Debug)]
pub struct Rounds {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state: AppState,
}

impl Rounds {
    /// Starts the rounds on `state`, each every `HEXBROKER_WATCH_POLL`.
    pub fn spawn(state: &AppState) -> Self {
        let (stop, _) = watch::channel(false);
        let poll = state.config.watch_poll;
        let mut tasks = vec![
            every(&stop, state, poll, "last_used", |s| async move { flush_last_used(&s).await.map(drop) }),
            every(&stop, state, poll, "expiry", |s| async move { expiry_round(&s).await.map(drop) }),
        ];
        if state.config.verify_interval.is_some() {
            tasks.push(every(
                &stop,
                state,
                poll,
                "check",
                |s| async move { check_round(&s).await.map(drop) },
            ));
        }
        Self { stop, tasks, state: state.clone() }
    }

    /// Stops every round (one in progress is abandoned; what it claimed is claimed again after
    /// its lease) and writes the last-used marks still in memory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = flush_last_used(&self.state).await {
            tracing::warn!(error = %e, "could not write the last-used marks while stopping");
        }
    }
}

/// Runs `round` every `poll` (the first one `poll` after start) until told to stop. A round that
/// fails (or panics) is logged and tried again on the next tick.
fn every<F, Fut>(
    stop: &watch::Sender<bool>,
    state: &AppState,
    poll: Duration,
    name: &'static str,
    round: F,
) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = crate::store::StoreResult<()>> + Send + 'static,
{
    let mut stopped = stop.subscribe();
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            // The first round waits one period too: a replica starts serving before it checks.
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
            // Each round in a task of its own, so that even a panic is only logged.
            let run = tokio::spawn(round(state.clone()));
            let abort = run.abort_handle();
            tokio::select! {
                outcome = run => match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(round = name, error = %e, "watcher round failed; trying again later"),
                    Err(e) => tracing::error!(round = name, error = %e, "watcher round panicked; trying again later"),
                },
                _ = stopped.wait_for(|s| *s) => {
                    abort.abort();
                    break;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_range_and_after_saturates() {
        for _ in 0..1000 {
            let j = jitter(0.9, 1.1);
            assert!((0.9..1.1).contains(&j), "{j}");
        }
        let t = DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(after(t, Duration::from_secs(60), 0.5), DateTime::from_timestamp(30, 0).unwrap());
        assert_eq!(after(DateTime::<Utc>::MAX_UTC, Duration::from_secs(60), 1.0), DateTime::<Utc>::MAX_UTC);
    }
}
