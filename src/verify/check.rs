//! Checking stored tokens against Hex: the background round (§8). It asks Hex as a connect does
//! (`hex::verify`), as the re-check after a Hex 401 through the proxy does (§7,
//! [`crate::proxy::after`]), and writes only if the connection still holds the very token that
//! was checked (its sealed nonce), so a token replaced meanwhile is never marked invalid for the
//! old one's failure.
//!
//! A check spends its token's Hex budget (about 30 calls a minute per token for `users/me`), the
//! same budget the connection's proxied calls spend: a connection busy near that rate, or out of
//! slots under its own outbound limit, has its check pushed later instead of risking a 429.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{after, jitter, BATCH};
use crate::audit::{Action, AuditContext};
use crate::crypto::open_stored;
use crate::hex::Rejection;
use crate::lifecycle::{Change, Status};
use crate::proxy::minute_of;
use crate::state::AppState;
use crate::store::{Applied, DueCheck, Expect, StoreResult};

/// Proxied calls a minute past which a connection's check waits: Hex allows about 30 a minute
/// per token, and the check needs one or two.
const BUSY_CALLS: u32 = 20;
/// How long a busy connection's check is pushed back.
const BUSY_DELAY: Duration = Duration::from_secs(5 * 60);
/// How soon a check that met passing trouble (Hex 5xx, 429, timeout) is tried again.
const TROUBLE_DELAY: Duration = Duration::from_secs(15 * 60);
/// How long a claimed check is held: a replica that dies mid-check leaves it due again then.
const LEASE: Duration = Duration::from_secs(10 * 60);

/// What one background round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// Connections given their first schedule.
    pub scheduled: usize,
    /// Tokens Hex was asked about.
    pub checked: usize,
    /// Checks pushed back because the connection was busy.
    pub deferred: usize,
    /// Connections that became `invalid`.
    pub invalidated: usize,
    /// Connections that became `active` again.
    pub reactivated: usize,
    /// Checks that met passing trouble and were rescheduled sooner.
    pub trouble: usize,
}

impl CheckReport {
    fn add(&mut self, other: CheckReport) {
        self.scheduled += other.scheduled;
        self.checked += other.checked;
        self.deferred += other.deferred;
        self.invalidated += other.invalidated;
        self.reactivated += other.reactivated;
        self.trouble += other.trouble;
    }
}

/// Schedules connections that have no check yet, then checks every connection whose check is
/// due, `HEXBROKER_VERIFY_CONCURRENCY` at a time. Does nothing when checks are off.
pub async fn check_round(state: &AppState) -> StoreResult<CheckReport> {
    let mut report = CheckReport::default();
    let Some(interval) = state.config.verify_interval else { return Ok(report) };
    report.scheduled = schedule_new(state, interval).await?;
    let permits = Arc::new(Semaphore::new(state.config.verify_concurrency));
    loop {
        let now = state.clock.now();
        let lease_until = after(now, LEASE, 1.0);
        let batch = (state.config.verify_concurrency as u32).saturating_mul(4).clamp(1, BATCH);
        let due = state.store.claim_due_checks(now, lease_until, batch).await?;
        let claimed = due.len();
        let mut running = JoinSet::new();
        for check in due {
            let permit = permits.clone().acquire_owned().await.ok();
            let state = state.clone();
            running.spawn(async move {
                let _permit = permit;
                check_one(&state, interval, check).await
            });
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok(Ok(one)) => report.add(one),
                Ok(Err(e)) => tracing::warn!(error = %e, "a background check could not be recorded"),
                Err(e) => tracing::error!(error = %e, "a background check panicked"),
            }
        }
        if claimed < batch as usize {
            let m = &state.metrics;
            m.watched("checked", report.checked);
            m.watched("deferred", report.deferred);
            m.watched("trouble", report.trouble);
            m.watched("invalidated", report.invalidated);
            m.watched("reactivated", report.reactivated);
            return Ok(report);
        }
    }
}

/// Gives each unscheduled connection its first check, about an interval after its token was
/// last known good; rows older than that (from before checks existed) are spread over the next
/// interval rather than all checked at once.
async fn schedule_new(state: &AppState, interval: Duration) -> StoreResult<usize> {
    let mut scheduled = 0;
    loop {
        let rows = state.store.unscheduled_checks(BATCH).await?;
        let now = state.clock.now();
        for (id, good_at) in &rows {
            let natural = after(*good_at, interval, jitter(0.9, 1.1));
            let at = if natural > now { natural } else { after(now, interval, jitter(0.0, 1.0)) };
            state.store.schedule_check(*id, at, true).await?;
        }
        scheduled += rows.len();
        if rows.len() < BATCH as usize {
            return Ok(scheduled);
        }
    }
}

/// Whether `id`'s token is too busy for a check now.
fn busy(state: &AppState, id: Uuid, rate_limit: Option<i32>, now: DateTime<Utc>) -> bool {
    if state.proxy.usage.recent_calls(id, minute_of(now)) >= BUSY_CALLS {
        return true;
    }
    // Under a per-connection limit the check takes a slot like any proxied call.
    let limit = rate_limit.and_then(|n| u32::try_from(n).ok()).or(state.config.proxy_rate_limit);
    limit.is_some_and(|per_minute| state.proxy.limiter.acquire(id, per_minute, Instant::now()).is_err())
}

async fn check_one(state: &AppState, interval: Duration, due: DueCheck) -> StoreResult<CheckReport> {
    let mut report = CheckReport::default();
    let DueCheck { connection, sealed } = due;
    let id = connection.id;
    let now = state.clock.now();
    if busy(state, id, connection.rate_limit_per_minute, now) {
        state.store.schedule_check(id, after(now, BUSY_DELAY, jitter(1.0, 1.5)), false).await?;
        report.deferred = 1;
        return Ok(report);
    }
    let (workspace, token) = match open_stored(&state.keyring, &state.hex, &connection, &sealed) {
        Ok(opened) => opened,
        Err(e) => {
            // A row edited outside hexbroker, an origin no longer listed (or a missing key) is
            // never sent to Hex.
            tracing::error!(connection_id = %id, error = %e, "cannot open a stored token for its background check");
            state.store.schedule_check(id, after(now, interval, jitter(0.9, 1.1)), false).await?;
            return Ok(report);
        }
    };
    report.checked = 1;
    let outcome = state.hex.verify(&workspace, &token).await;
    let now = state.clock.now();
    let next = after(now, interval, jitter(0.9, 1.1));
    // Status changes go through the one write path (event, audit, cache notice), and only for
    // the token that was checked, in the status it was claimed in.
    let expect = Expect { token_nonce: Some(sealed.nonce.clone()), status: Some(connection.status) };
    let audit = AuditContext::system(Action::StatusChange);
    match (outcome, connection.status) {
        (Ok(identity), Status::Active) => {
            state.store.record_check_passed(id, &sealed.nonce, &identity, Some(next), now).await?;
        }
        (Ok(identity), _) => {
            let change = Change::Verified(&identity);
            if let Applied::Done(_) =
                state.store.apply(&connection.tenant, id, &change, &audit, &expect).await?
            {
                tracing::info!(connection_id = %id, from = %connection.status, "connection reactivated by a background check");
                report.reactivated = 1;
            }
            state.store.schedule_check(id, next, false).await?;
        }
        (Err(rejection), status) => match (rejection.invalidation_reason(), status) {
            (Some(reason), Status::Active) => {
                let change = Change::Refused(reason);
                if let Applied::Done(_) =
                    state.store.apply(&connection.tenant, id, &change, &audit, &expect).await?
                {
                    tracing::info!(connection_id = %id, reason, "connection invalidated by a background check");
                    report.invalidated = 1;
                }
                state.store.schedule_check(id, next, false).await?;
            }
            (Some(reason), _) => {
                state.store.record_check_refused(id, &sealed.nonce, reason, Some(next)).await?;
            }
            (None, _) => {
                let wait = match rejection {
                    Rejection::RateLimited { retry_after: Some(s) } => Duration::from_secs(s.clamp(60, 3600)),
                    _ => TROUBLE_DELAY,
                };
                let retry = after(now, wait.min(interval), jitter(1.0, 1.5));
                tracing::info!(connection_id = %id, ?rejection, "background check met passing trouble; trying again sooner");
                state.store.schedule_check(id, retry, false).await?;
                report.trouble = 1;
            }
        },
    }
    Ok(report)
}
