//! Token expiry, from the stored `token_expires_at` alone (Hex is not asked): a warning once per
//! token, `HEXBROKER_EXPIRY_WARNING` ahead, then `expired` at the time itself. A replaced token
//! has another fingerprint, so the new token is warned about in its turn.

use chrono::TimeDelta;

use super::{announce, BATCH};
use crate::app::AppState;
use crate::store::StoreResult;

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
/// whichever replica gets it.
pub async fn expiry_round(state: &AppState) -> StoreResult<ExpiryReport> {
    let mut report = ExpiryReport::default();
    let warning = TimeDelta::from_std(state.config.expiry_warning).unwrap_or(TimeDelta::MAX);
    loop {
        let now = state.clock.now();
        let horizon = now.checked_add_signed(warning).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let warned = state.store.claim_expiry_warnings(now, horizon, BATCH).await?;
        for connection in &warned {
            announce("connection.expiring", connection);
        }
        report.warned += warned.len();
        if warned.len() < BATCH as usize {
            break;
        }
    }
    loop {
        let expired = state.store.expire_due(state.clock.now(), BATCH).await?;
        for connection in &expired {
            announce("connection.expired", connection);
        }
        report.expired += expired.len();
        if expired.len() < BATCH as usize {
            break;
        }
    }
    state.metrics.watched("expiring", report.warned);
    state.metrics.watched("expired", report.expired);
    Ok(report)
}
