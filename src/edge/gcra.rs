//! A keyed GCRA (generic cell rate algorithm): `quota` events per `period` for each key, in a
//! burst of up to `quota`, then spaced evenly. State is one instant per key, in memory, per
//! replica. [`Rate`] is the algorithm's step; `proxy::RateLimiter` takes it too, with a rate per
//! call (each connection's own) and waiting on top.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; past it, expired entries are dropped, and when every entry is still
/// live a new key is let through unlimited (fail open, logged) rather than growing without bound.
const MAX_KEYS: usize = 100_000;

/// A rate, as GCRA reads it: an event every `interval`, with a burst of `tolerance` early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Duration,
    tolerance: Duration,
}

impl Rate {
    /// `quota` events (at least 1) per `period` (at most a year).
    pub fn new(quota: u32, period: Duration) -> Self {
        let quota = quota.max(1);
        let period = period.min(Duration::from_secs(365 * 24 * 3600));
        let interval = (period / quota).max(Duration::from_nanos(1));
        Self { interval, tolerance: interval.saturating_mul(quota - 1) }
    }

    /// One event at `now` against a key's theoretical arrival time `tat` (`None` when it has
    /// none yet): `Ok(the key's next tat)`, or `Err(wait)` until one would be allowed.
    pub fn take(self, tat: Option<Instant>, now: Instant) -> Result<Instant, Duration> {
        let tat = tat.filter(|at| *at > now).unwrap_or(now);
        let earliest = tat.checked_sub(self.tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        Ok(tat.checked_add(self.interval).unwrap_or(tat))
    }
}

/// Theoretical arrival times by key.
#[derive(Debug)]
pub struct KeyedGcra<K> {
    rate: Rate,
    next: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> KeyedGcra<K> {
    /// `quota` events (at least 1) per `period` (at most a year).
    pub fn new(quota: u32, period: Duration) -> Self {
        Self { rate: Rate::new(quota, period), next: Mutex::default() }
    }

    /// Takes one event for `key` at `now`: `Ok(())`, or `Err(wait)` until one would be allowed.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let tat = self.rate.take(next.get(key).copied(), now)?;
        if next.len() >= MAX_KEYS && !next.contains_key(key) {
            next.retain(|_, at| *at > now);
            if next.len() >= MAX_KEYS {
                tracing::warn!(keys = next.len(), "rate limiter full: letting a new key through");
                return Ok(());
            }
        }
        next.insert(key.clone(), tat);
        Ok(())
    }

    /// Gives back one event taken for `key` (it turned out not to count).
    pub fn give_back(&self, key: &K, now: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = next.get_mut(key) {
            match at.checked_sub(self.rate.interval).filter(|earlier| *earlier > now) {
                Some(earlier) => *at = earlier,
                None => {
                    next.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_quota_then_one_per_interval() {
        let limit = KeyedGcra::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.take(&"a", t0), Ok(()));
        }
        assert_eq!(limit.take(&"a", t0), Err(Duration::from_secs(20)));
        assert_eq!(limit.take(&"b", t0), Ok(()), "keys are limited apart");
        assert_eq!(limit.take(&"a", t0 + Duration::from_secs(20)), Ok(()));
        assert!(limit.take(&"a", t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn an_event_given_back_does_not_count() {
        let limit = KeyedGcra::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(limit.take(&1, t0), Ok(()));
            limit.give_back(&1, t0);
        }
        assert_eq!(limit.take(&1, t0), Ok(()));
        assert_eq!(limit.take(&1, t0), Ok(()));
        assert!(limit.take(&1, t0).is_err());
    }

    #[test]
    fn huge_periods_and_tiny_quotas_do_not_overflow() {
        let limit = KeyedGcra::new(0, Duration::MAX);
        let t0 = Instant::now();
        assert_eq!(limit.take(&1, t0), Ok(()));
        assert!(limit.take(&1, t0).is_err());
        limit.give_back(&1, t0);
    }

    #[test]
    fn a_rate_is_the_quota_spread_over_the_period() {
        assert_eq!(
            Rate::new(6, Duration::from_secs(60)),
            Rate { interval: Duration::from_secs(10), tolerance: Duration::from_secs(50) }
        );
        let nanos = Rate::new(u32::MAX, Duration::from_nanos(1));
        assert_eq!(nanos.interval, Duration::from_nanos(1), "never a zero interval");
    }
}
