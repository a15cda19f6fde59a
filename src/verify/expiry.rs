//! Token expiry, from the stored `token_expires_at` alone (Hex is not asked): a warning once per
//! token, `HEXBROKER_EXPIRY_WARNING` ahead, then `expired` at the time itself. A replaced token
//! has another fingerprint, so the new token is warned about in its turn.

use chrono::{DateTime, TimeDelta, Utc};

use super::{BATCH, MAX_BATCHES};
use crate::audit::{Action, AuditContext};
use crate::lifecycle::{Change, Status};
use crate::state::AppState;
use crate::store::{Applied, Expect, StoreResult};

/// What one expiry round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryReport {
    /// `connection.expiring` events.
    pub warned: usize,
    /// Connections that became `expired`.
    pub expired: usize,
}

/// Warns about every token that expires within the warning period and has not been warned about,
/// then marks every active connection whose token has expired `expired`; each row once,
/// whichever replica gets it (`Store::apply` decides, in the event's own transaction).
pub async fn expiry_round(state: &AppState) -> StoreResult<ExpiryReport> {
    let mut report = ExpiryReport::default();
    let warning = TimeDelta::from_std(state.config.expiry_warning).unwrap_or(TimeDelta::MAX);
    let audit = AuditContext::system(Action::StatusChange);
    // Bounded, so that a row that keeps coming back (it cannot, but) never spins a round.
    for _ in 0..MAX_BATCHES {
        let now = state.clock.now();
        let horizon = now.checked_add_signed(warning).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let due = state.store.expiry_warnings_due(now, horizon, BATCH).await?;
        for (tenant, id) in &due {
            let expect = Expect { token_nonce: None, status: Some(Status::Active) };
            if let Applied::Done(connection) =
                state.store.apply(tenant, *id, &Change::Expiring, &audit, &expect).await?
            {
                tracing::info!(connection_id = %connection.id, expires_at = ?connection.token_expires_at, "connection.expiring");
                report.warned += 1;
            }
        }
        if due.len() < BATCH as usize {
            break;
        }
    }
    for _ in 0..MAX_BATCHES {
        let due = state.store.expiries_due(state.clock.now(), BATCH).await?;
        for (tenant, id) in &due {
            // Stored `active` still: another replica's round may have just stored `expired`.
            let expect = Expect { token_nonce: None, status: Some(Status::Active) };
            let applied = state.store.apply(tenant, *id, &Change::Expired, &audit, &expect).await?;
            if let Applied::Done(connection) = applied {
                tracing::info!(connection_id = %connection.id, "connection.expired");
                report.expired += 1;
            }
        }
        if due.len() < BATCH as usize {
            break;
        }
    }
    state.metrics.watched("expiring", report.warned);
    state.metrics.watched("expired", report.expired);
    Ok(report)
}
