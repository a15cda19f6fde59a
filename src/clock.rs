//! The time hexbroker's lifecycle runs on: real time by default, shifted by tests. Everything
//! that decides by the calendar (token expiry, expiry warnings, background-check schedules, the
//! status a connection shows) asks a [`Clock`] rather than the system, so that a test can move a
//! connection three days on without waiting three days.
//!
//! A clock is real time plus an offset: advancing it moves every reader at once and time keeps
//! flowing, so timeouts and sleeps elsewhere behave as they would in production.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

/// A cheap, cloneable handle on the time (every clone shares one offset).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Real time.
    pub fn real() -> Self {
        Self::default()
    }

    /// The current time, truncated to milliseconds so that both backends and JSON agree on it.
    pub fn now(&self) -> DateTime<Utc> {
        let real = Utc::now().timestamp_millis();
        let millis = real.saturating_add(self.offset_ms.load(Ordering::Relaxed));
        DateTime::from_timestamp_millis(millis).unwrap_or_else(Utc::now)
    }

    /// Moves this clock (and every clone) forward by `by` (backward when negative).
    pub fn advance(&self, by: TimeDelta) {
        self.offset_ms.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    /// Sets this clock (and every clone) to read `at` now, then run on from there.
    pub fn set(&self, at: DateTime<Utc>) {
        let offset = at.timestamp_millis().saturating_sub(Utc::now().timestamp_millis());
        self.offset_ms.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_real_until_moved_and_clones_move_together() {
        let clock = Clock::real();
        let drift = (clock.now() - Utc::now()).num_milliseconds().abs();
        assert!(drift < 1_000, "{drift}");
        let other = clock.clone();
        clock.advance(TimeDelta::days(3));
        let ahead = (other.now() - Utc::now()).num_hours();
        assert!((71..=72).contains(&ahead), "{ahead}");
        let at = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        other.set(at);
        assert!((clock.now() - at).num_milliseconds().abs() < 1_000);
        assert_eq!(clock.now().timestamp_subsec_micros() % 1000, 0, "truncated to milliseconds");
    }
}
