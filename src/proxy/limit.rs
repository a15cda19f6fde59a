//! The per-connection outbound rate limit: a GCRA (generic cell rate algorithm) per connection,
//! allowing a burst of up to one minute's quota. Over it, a call is held back within the retry
//! budget or answered 429 by hexbroker itself; either way nothing extra reaches Hex. The state
//! is per replica: with N replicas, a connection may send up to N times its limit. The step is
//! the edge's [`Rate`], at each connection's own rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::edge::gcra::Rate;

/// Connections tracked before expired entries are dropped; live ones are always kept, so that no
/// connection ever goes unlimited.
const PRUNE_AT: usize = 100_000;

/// Theoretical arrival times by connection.
#[derive(Debug, Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<Uuid, Instant>>,
}

impl RateLimiter {
    /// Takes a slot for one call of `connection` under `per_minute`: `Ok(())` when it may go now,
    /// `Err(wait)` with the time until it may.
    pub fn acquire(&self, connection: Uuid, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let rate = Rate::new(per_minute, Duration::from_secs(60));
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next.len() > PRUNE_AT {
            next.retain(|_, at| *at > now);
        }
        let tat = rate.take(next.get(&connection).copied(), now)?;
        next.insert(connection, tat);
        Ok(())
    }
}

/// One connection's outbound limit, handed to the proxy so that each retry takes a slot too.
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimit<'a> {
    /// The limiter's state.
    pub limiter: &'a RateLimiter,
    /// The connection.
    pub connection: Uuid,
    /// Its calls a minute.
    pub per_minute: u32,
}

impl OutboundLimit<'_> {
    /// Takes a slot for a call to be made `after` from now, or later if the limit says so: the
    /// wait until that call may go, or (nothing taken) the wait a slot would need when that is
    /// more than `budget`.
    pub fn reserve_within(&self, after: Duration, budget: Duration) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut wait = after;
        while wait <= budget {
            let Some(at) = now.checked_add(wait) else { break };
            match self.limiter.acquire(self.connection, self.per_minute, at) {
                Ok(()) => return Ok(wait),
                Err(more) => wait = wait.saturating_add(more),
            }
        }
        Err(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_takes_a_slot_or_is_not_made() {
        let limiter = RateLimiter::default();
        let limit = OutboundLimit { limiter: &limiter, connection: Uuid::now_v7(), per_minute: 2 };
        let budget = Duration::from_secs(5);
        assert_eq!(limit.reserve_within(Duration::from_millis(100), budget), Ok(Duration::from_millis(100)));
        assert!(limit.reserve_within(Duration::ZERO, budget).is_ok(), "the burst's second slot");
        assert!(limit.reserve_within(Duration::ZERO, budget).is_err(), "the next slot is 30 s away");
        assert!(limit.reserve_within(Duration::ZERO, Duration::from_secs(60)).is_ok_and(|w| w > budget));
        assert!(limit.reserve_within(Duration::MAX, Duration::MAX).is_err(), "no overflow");
    }

    #[test]
    fn a_minutes_quota_may_burst_and_then_calls_are_spaced() {
        let limiter = RateLimiter::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t0 = Instant::now();
        for i in 0..6 {
            assert_eq!(limiter.acquire(a, 6, t0), Ok(()), "call {i} of the burst");
        }
        let wait = limiter.acquire(a, 6, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "one slot every ten seconds");
        assert_eq!(limiter.acquire(b, 6, t0), Ok(()), "connections are limited apart");
        assert_eq!(limiter.acquire(a, 6, t0 + Duration::from_secs(10)), Ok(()));
        assert!(limiter.acquire(a, 6, t0 + Duration::from_secs(10)).is_err());
        assert_eq!(limiter.acquire(a, 6, t0 + Duration::from_secs(120)), Ok(()), "the quota refills");
    }
}
