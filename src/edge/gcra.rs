//! A keyed GCRA (generic cell rate algorithm): `quota` events per `period` for each key, in a
//! burst of up to `quota`, then spaced evenly. State is one instant per key, in memory, per
//! replica. `proxy::RateLimiter` is the same algorithm keyed by connection, with waiting on top.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; past it, expired entries are dropped, and when every entry is still
/// live a new key is let through unlimited (fail open, logged) rather than growing without bound.
const MAX_KEYS: usize = 100_000;

/// Theoretical arrival times by key.
#[derive(Debug)]
pub struct KeyedGcra<K> {
    interval: Duration,
    tolerance: Duration,
    next: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> KeyedGcra<K> {
    /// `quota` events (at least 1) per `period` (at most a year).
    pub fn new(quota: u32, period: Duration) -> Self {
        let quota = quota.max(1);
        let period = period.min(Duration::from_secs(365 * 24 * 3600));
        let interval = (period / quota).max(Duration::from_nanos(1));
        Self { interval, tolerance: interval.saturating_mul(quota - 1), next: Mutex::default() }
    }

    /// Takes one event for `key` at `now`: `Ok(())`, or `Err(wait)` until one would be allowed.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let tat = next.get(key).copied().filter(|at| *at > now).unwrap_or(now);
        let earliest = tat.checked_sub(self.tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        if next.len() >= MAX_KEYS && !next.contains_key(key) {
            next.retain(|_, at| *at > now);
            if next.len() >= MAX_KEYS {
                tracing::warn!(keys = next.len(), "rate limiter full: letting a new key through");
                return Ok(());
            }
        }
        next.insert(key.clone(), tat.checked_add(self.interval).unwrap_or(tat));
        Ok(())
    }

    /// Gives back one event taken for `key` (it turned out not to count).
    pub fn give_back(&self, key: &K, now: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = next.get_mut(key) {
            match at.checked_sub(self.interval).filter(|earlier| *earlier > now) {
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
}
