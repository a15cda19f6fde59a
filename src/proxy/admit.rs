//! Admit: whether a call may go to Hex now. The path must be one Hex's API may be asked for
//! ([`super::check_path`], before anything is looked up); then the target's connection must be
//! usable, and a slot under its outbound rate limit free: waited for within the retry budget,
//! past which hexbroker answers 429 itself and Hex never sees the call.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{OutboundLimit, Proxy, Refusal, Target};
use crate::lifecycle::Status;

/// Refuses a call to a connection that is not active at `now`: an expired token, or one Hex no
/// longer accepts, is never sent.
pub fn usable(target: &Target, now: DateTime<Utc>) -> Result<(), Refusal> {
    match target.status(now) {
        Status::Active => Ok(()),
        Status::Expired => Err(Refusal::Expired),
        Status::Invalid => Err(Refusal::Invalid),
    }
}

/// The outbound rate limit the target's calls are under: its own, else the deployment's, if any.
pub fn outbound_limit<'a>(proxy: &'a Proxy, target: &Target) -> Option<OutboundLimit<'a>> {
    let per_minute = target.rate_limit_per_minute.or(proxy.config.proxy_rate_limit)?;
    Some(OutboundLimit { limiter: &proxy.limiter, connection: target.id, per_minute })
}

/// Takes a slot under the connection's outbound limit, waiting for one within the retry budget;
/// past the budget, hexbroker answers 429 itself and Hex never sees the call.
pub async fn hold_for_slot(proxy: &Proxy, limit: OutboundLimit<'_>) -> Result<(), Refusal> {
    match limit.reserve_within(Duration::ZERO, proxy.config.proxy_retry_budget) {
        Ok(wait) if wait.is_zero() => Ok(()),
        Ok(wait) => {
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Err(wait) => Err(Refusal::RateLimited {
            per_minute: limit.per_minute,
            retry_after: wait.as_secs_f64().ceil() as u64,
        }),
    }
}
