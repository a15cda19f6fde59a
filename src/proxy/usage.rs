//! What the proxy's hot path leaves behind per connection, in memory only: the minute of its last
//! call and how many calls it made this minute and the last (so a background check can tell a
//! busy token and stay out of its way), and when a Hex 401 last made it re-check the token.
//!
//! The hot path takes one short lock on one of [`SHARDS`] maps; nothing here touches the database.
//! The background rounds ([`crate::verify`]) take the marks not yet written
//! ([`Usage::take_unflushed`]) and write them in batches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Independent maps, so that concurrent calls on different connections rarely share a lock.
pub const SHARDS: usize = 64;

/// One connection's marks.
#[derive(Debug, Default, Clone, Copy)]
struct Mark {
    /// The minute (Unix seconds / 60) of the last call.
    minute: i64,
    /// Calls in that minute.
    calls: u32,
    /// Calls in the minute before it.
    previous: u32,
    /// The last minute written to the database.
    flushed: i64,
    /// When a Hex 401 last led to a re-check.
    rechecked: Option<Instant>,
}

/// The per-connection marks of one replica.
#[derive(Debug)]
pub struct Usage {
    shards: Vec<Mutex<HashMap<Uuid, Mark>>>,
}

impl Default for Usage {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

/// The minute `at` falls in, as Unix seconds / 60.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

impl Usage {
    fn shard(&self, id: Uuid) -> std::sync::MutexGuard<'_, HashMap<Uuid, Mark>> {
        // The low bits of a v7 id are random.
        let index = (id.as_u128() as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one proxied call of `id` in `minute` (the hot path).
    pub fn touch(&self, id: Uuid, minute: i64) {
        let mut shard = self.shard(id);
        let mark = shard.entry(id).or_default();
        if mark.minute == minute {
            mark.calls = mark.calls.saturating_add(1);
        } else if minute > mark.minute {
            mark.previous = if minute == mark.minute + 1 { mark.calls } else { 0 };
            mark.minute = minute;
            mark.calls = 1;
        }
    }

    /// The most calls `id` made in one minute, of `minute` and the one before.
    pub fn recent_calls(&self, id: Uuid, minute: i64) -> u32 {
        let shard = self.shard(id);
        match shard.get(&id) {
            Some(m) if m.minute == minute => m.calls.max(m.previous),
            Some(m) if m.minute + 1 == minute => m.calls,
            _ => 0,
        }
    }

    /// Whether a Hex 401 on `id` may lead to a re-check now: at most one per `every`. Says yes at
    /// most once per period, and remembers it.
    pub fn may_recheck(&self, id: Uuid, now: Instant, every: Duration) -> bool {
        let mut shard = self.shard(id);
        let mark = shard.entry(id).or_default();
        if mark.rechecked.is_some_and(|at| now.saturating_duration_since(at) < every) {
            return false;
        }
        mark.rechecked = Some(now);
        true
    }

    /// The last-used minutes not yet written, marking them written; marks idle since before
    /// `minute - 1` are forgotten once written (their next call starts afresh).
    pub fn take_unflushed(&self, minute: i64) -> Vec<(Uuid, DateTime<Utc>)> {
        let mut taken = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|id, mark| {
                if mark.calls > 0 && mark.minute > mark.flushed {
                    if let Some(at) = DateTime::from_timestamp(mark.minute.saturating_mul(60), 0) {
                        taken.push((*id, at));
                    }
                    mark.flushed = mark.minute;
                }
                let recent_recheck = mark.rechecked.is_some_and(|at| at.elapsed() < Duration::from_secs(120));
                mark.minute >= minute - 1 || recent_recheck
            });
        }
        taken
    }

    /// Puts back marks whose write failed, so the next flush tries again.
    pub fn restore(&self, marks: &[(Uuid, DateTime<Utc>)]) {
        for (id, at) in marks {
            let minute = minute_of(*at);
            let mut shard = self.shard(*id);
            let mark = shard.entry(*id).or_default();
            if mark.flushed >= minute {
                mark.flushed = minute - 1;
            }
            if mark.minute < minute {
                mark.minute = minute;
                mark.calls = mark.calls.max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_minute_and_flushed_once() {
        let usage = Usage::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            usage.touch(a, 100);
        }
        usage.touch(b, 100);
        assert_eq!(usage.recent_calls(a, 100), 3);
        assert_eq!(usage.recent_calls(a, 101), 3, "the minute before still counts");
        assert_eq!(usage.recent_calls(a, 102), 0);
        let mut flushed = usage.take_unflushed(100);
        flushed.sort();
        let mut expected = vec![
            (a, DateTime::from_timestamp(6000, 0).unwrap()),
            (b, DateTime::from_timestamp(6000, 0).unwrap()),
        ];
        expected.sort();
        assert_eq!(flushed, expected);
        assert!(usage.take_unflushed(100).is_empty(), "written marks are not written again");
        usage.touch(a, 101);
        assert_eq!(usage.take_unflushed(101).len(), 1, "a new minute is written");
        usage.restore(&[(a, DateTime::from_timestamp(6060, 0).unwrap())]);
        assert_eq!(usage.take_unflushed(101).len(), 1, "a failed write is tried again");
        assert!(usage.take_unflushed(200).is_empty());
        assert_eq!(usage.recent_calls(b, 200), 0, "idle marks are forgotten");
    }

    #[test]
    fn a_recheck_is_allowed_once_per_period() {
        let usage = Usage::default();
        let id = Uuid::now_v7();
        let t0 = Instant::now();
        assert!(usage.may_recheck(id, t0, Duration::from_secs(60)));
        assert!(!usage.may_recheck(id, t0 + Duration::from_secs(59), Duration::from_secs(60)));
        assert!(usage.may_recheck(id, t0 + Duration::from_secs(60), Duration::from_secs(60)));
    }
}
