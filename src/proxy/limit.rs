//! The per-connection outbound rate limit: a GCRA (generic cell rate algorithm) per connection,
//! allowing a burst of up to one minute's quota. Over it, a call is held back within the retry
//! budget or answered 429 by hexbroker itself; either way nothing extra reaches Hex. The state
//! is per replica: with N replicas, a connection may send up to N times its limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Theoretical arrival times by connection.
#[derive(Debug, Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<Uuid, Instant>>,
}

impl RateLimiter {
    /// Takes a slot for one call of `connection` under `per_minute`: `Ok(())` when it may go now,
    /// `Err(wait)` with the time until it may.
    pub fn acquire(&self, connection: Uuid, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        let tolerance = interval * per_minute.max(1).saturating_sub(1);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next.len() > 100_000 {
            next.retain(|_, at| *at > now);
        }
        let tat = next.get(&connection).copied().filter(|at| *at > now).unwrap_or(now);
        let earliest = tat.checked_sub(tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        next.insert(connection, tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
