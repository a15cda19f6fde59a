//! The bounded map behind the hot path's two caches: callers by key hash (`auth::Callers`) and
//! prepared targets by connection id (`proxy::Targets`).
//!
//! - A hit takes one shard's read lock and clones the value (an `Arc`): no allocation.
//! - An entry lives for the time to live, then reads as absent; the TTL is only the safety net for
//!   a lost notification channel, since every write that makes an entry stale removes it by key.
//! - Removal is by key, in O(1); nothing ever sweeps the whole map.
//! - The size bound is kept per shard: a full shard evicts one entry (whichever its table yields
//!   first) to make room, so a burst of new keys never empties the cache.
//! - An entry is refreshed before it expires, by one caller: the first read in the last quarter
//!   of its life reads as absent (so that caller reads the database and inserts anew) while every
//!   other read still gets the entry. Without this, every call in flight on a busy key or
//!   connection missed at the same instant and queued on the database pool together (a stall of
//!   a few hundred milliseconds every TTL under load).
//! - A fill that began before a removal is not kept: [`Cache::fill`] takes the generation before
//!   the database read and [`Cache::insert`] drops the value if anything was removed since, so a
//!   slow read can never put back what a write just removed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Shards, so that the two cores rarely meet on one lock.
const SHARDS: usize = 16;

type Shard<K, V> = RwLock<HashMap<K, Entry<V>>>;

/// A value, when it was stored, and whether a caller has been sent to refresh it.
struct Entry<V> {
    value: V,
    at: Instant,
    refreshing: AtomicBool,
}

/// A sharded, size-bounded map whose entries live for a fixed time.
pub struct Cache<K, V> {
    shards: Box<[Shard<K, V>]>,
    pick: RandomState,
    ttl: Duration,
    per_shard: usize,
    generation: AtomicU64,
}

/// The cache's generation when a read from the database began; see [`Cache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Fill(u64);

/// A value [`Cache::insert`] did not keep: something was removed since its read began, or the
/// cache is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotKept;

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("ttl", &self.ttl).field("per_shard", &self.per_shard).finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache holding at most about `capacity` entries for `ttl` each; capacity 0 turns it off.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            pick: RandomState::new(),
            ttl,
            per_shard,
            generation: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        // The remainder is below SHARDS, so the cast cannot truncate.
        &self.shards[(self.pick.hash_one(key) % SHARDS as u64) as usize]
    }

    /// The live entry for `key`; absent once expired, and absent for the one caller chosen to
    /// refresh it in the last quarter of its life.
    pub fn get(&self, key: &K) -> Option<V> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(key)?;
        let age = entry.at.elapsed();
        if age >= self.ttl {
            return None;
        }
        let late = age >= self.ttl - self.ttl / 4;
        if late && !entry.refreshing.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(entry.value.clone())
    }

    /// Marks the start of a read whose result may be inserted.
    pub fn fill(&self) -> Fill {
        Fill(self.generation.load(Ordering::SeqCst))
    }

    /// Keeps `value` for `key`, unless something was removed since `fill` (the value may be stale
    /// then). Returns the entry evicted to make room, if one was.
    pub fn insert(&self, fill: Fill, key: K, value: V) -> Result<Option<(K, V)>, NotKept> {
        if self.per_shard == 0 {
            return Err(NotKept);
        }
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != fill.0 {
            return Err(NotKept);
        }
        let mut evicted = None;
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            if let Some(victim) = shard.keys().next().cloned() {
                evicted = shard.remove_entry(&victim).map(|(k, entry)| (k, entry.value));
            }
        }
        shard.insert(key, Entry { value, at: Instant::now(), refreshing: AtomicBool::new(false) });
        Ok(evicted)
    }

    /// Makes every fill that began before this call a no-op: for a removal whose key is not known
    /// here (a value being read right now is not kept).
    pub fn drop_fills(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Removes `key`'s entry, and makes every fill that began before this call a no-op.
    pub fn remove(&self, key: &K) -> Option<V> {
        self.drop_fills();
        self.shard(key).write().unwrap_or_else(|e| e.into_inner()).remove(key).map(|entry| entry.value)
    }

    /// Removes everything (a lost notification channel: any entry may be stale).
    pub fn clear(&self) {
        self.drop_fills();
        for shard in &*self.shards {
            shard.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// How many entries are held, live or expired.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let cache = Cache::new(Duration::from_millis(400), 10);
        cache.insert(cache.fill(), 1, "a").unwrap();
        assert_eq!(cache.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(cache.get(&1), None, "expired");
    }

    #[test]
    fn one_caller_refreshes_an_entry_near_its_end_while_the_others_still_hit() {
        // Wide margins: the reads below must land between 3 s and 4 s of the entry's life.
        let ttl = Duration::from_secs(4);
        let cache = Cache::new(ttl, 10);
        cache.insert(cache.fill(), 1, "old").unwrap();
        assert_eq!(cache.get(&1), Some("old"), "young: every caller hits");
        std::thread::sleep(ttl * 3 / 4 + Duration::from_millis(50));
        let reads: Vec<_> = (0..50).map(|_| cache.get(&1)).collect();
        assert_eq!(reads.iter().filter(|read| read.is_none()).count(), 1, "one caller is sent to refresh");
        assert_eq!(reads[0], None, "the first one");
        cache.insert(cache.fill(), 1, "new").unwrap();
        assert_eq!(cache.get(&1), Some("new"), "the refreshed entry starts a new life");
    }

    #[test]
    fn a_full_cache_evicts_one_entry_and_keeps_the_rest() {
        let capacity = 4 * SHARDS;
        let cache = Cache::new(Duration::from_secs(60), capacity);
        let mut evicted = 0;
        for key in 0..capacity * 3 {
            evicted += usize::from(cache.insert(cache.fill(), key, key).unwrap().is_some());
        }
        let held = cache.len();
        assert!(held <= capacity, "bounded: {held}");
        assert!(held >= capacity / 2, "not emptied: {held}");
        assert_eq!(evicted + held, capacity * 3, "each insert past the bound evicted exactly one");
        let newest = capacity * 3 - 1;
        assert_eq!(cache.get(&newest), Some(newest), "the entry just inserted is there");
    }

    #[test]
    fn a_fill_older_than_a_removal_is_not_kept() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let fill = cache.fill();
        cache.remove(&1);
        assert_eq!(cache.insert(fill, 1, "stale"), Err(NotKept));
        assert_eq!(cache.get(&1), None);
        let fill = cache.fill();
        cache.drop_fills();
        assert_eq!(cache.insert(fill, 1, "stale"), Err(NotKept));
        cache.insert(cache.fill(), 1, "fresh").unwrap();
        assert_eq!(cache.remove(&1), Some("fresh"));
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn capacity_zero_turns_the_cache_off() {
        let cache = Cache::new(Duration::from_secs(60), 0);
        assert_eq!(cache.insert(cache.fill(), 1, "a"), Err(NotKept));
        assert_eq!(cache.get(&1), None);
        cache.clear();
        assert!(cache.is_empty());
    }
}
