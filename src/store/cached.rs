//! A read-through cache in front of the store for the proxy's hot path: API keys by hash, and
//! connections with their sealed tokens. Every write that could make an entry stale goes through
//! here and drops the entry locally after its commit; the store sent the other replicas a
//! Postgres `NOTIFY` inside the same transaction (delivered at commit, so never lost to a crash
//! between the two), so revocation
//! (key revoked, connection deleted, token replaced, connection invalidated) takes effect
//! everywhere within a second; the TTL is only the safety net for a lost notification channel
//! and for writes made by another process on SQLite. Tokens stay sealed in the cache: they are
//! opened per request (microseconds), so no plaintext token lives longer than its request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    ApiKey, Applied, Connection, ConnectionFilter, DueCheck, DynStore, Expect, HexIdentity, Inserted,
    NewApiKey, NewConnection, NewSession, Reseal, SealedToken, Session, SessionOutcome, SessionWrite, Store,
    StoreResult, WatchStore,
};
use crate::audit::{AuditContext, AuditEntry, AuditFilter};
use crate::crypto::Sealed;
use crate::events::{Delivery, EventFilter, EventRecord};
use crate::lifecycle::{Change, Status};

/// A map whose entries live for a fixed time, bounded in size.
struct TtlMap<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: RwLock::new(HashMap::new()), ttl, capacity }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    /// Inserts unless `still_fresh` says an invalidation happened since the value was read.
    fn insert_if(&self, key: K, value: V, still_fresh: impl FnOnce() -> bool) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if !still_fresh() {
            return;
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).retain(|k, (v, _)| keep(k, v));
    }

    fn clear(&self) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The two caches and the generation that orders fills against invalidations.
struct Caches {
    keys: TtlMap<Vec<u8>, ApiKey>,
    connections: TtlMap<(String, Uuid), Arc<(Connection, Sealed)>>,
    /// Bumped before every invalidation: a fill whose read began before it is not kept, so a
    /// slow read can never put back what a write just removed.
    generation: AtomicU64,
}

impl Caches {
    fn apply(&self, message: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match message.split_once(':').map(|(kind, id)| (kind, Uuid::parse_str(id))) {
            Some(("key", Ok(id))) => self.keys.retain(|_, key| key.id != id),
            Some(("connection", Ok(id))) => {
                self.connections.retain(|(_, cid), _| *cid != id);
                self.keys.retain(|_, key| key.connection_id != Some(id));
            }
            _ => self.clear(),
        }
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.keys.clear();
        self.connections.clear();
    }
}

fn key_message(id: Uuid) -> String {
    format!("key:{id}")
}

fn connection_message(id: Uuid) -> String {
    format!("connection:{id}")
}

/// A [`Store`] that caches the hot path's reads of another.
pub struct CachedStore {
    inner: DynStore,
    caches: Arc<Caches>,
}

impl CachedStore {
    /// Wraps `inner`, and follows the other replicas' invalidations when it can.
    pub async fn wrap(inner: DynStore, ttl: Duration, capacity: usize) -> StoreResult<Arc<Self>> {
        let caches = Arc::new(Caches {
            keys: TtlMap::new(ttl, capacity),
            connections: TtlMap::new(ttl, capacity),
            generation: AtomicU64::new(0),
        });
        if let Some(mut messages) = inner.subscribe_invalidations().await? {
            let caches = Arc::downgrade(&caches);
            tokio::spawn(async move {
                while let Some(message) = messages.recv().await {
                    let Some(caches) = caches.upgrade() else { break };
                    match message {
                        Some(message) => caches.apply(&message),
                        None => caches.clear(),
                    }
                }
            });
        }
        Ok(Arc::new(Self { inner, caches }))
    }

    /// Drops stale entries here at once, after a commit; the other replicas were told by the
    /// notice the store sent inside the transaction.
    fn dropped(&self, message: &str) {
        self.caches.apply(message);
    }

    fn generation(&self) -> u64 {
        self.caches.generation.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn sealed_secret(&self, name: &str) -> StoreResult<Option<Sealed>> {
        self.inner.sealed_secret(name).await
    }
    async fn insert_sealed_secret_if_absent(&self, name: &str, sealed: &Sealed) -> StoreResult<()> {
        self.inner.insert_sealed_secret_if_absent(name, sealed).await
    }
    async fn reseal_secret(&self, name: &str, old: &Sealed, new: &Sealed) -> StoreResult<bool> {
        self.inner.reseal_secret(name, old, new).await
    }
    async fn tokens_not_sealed_by(
        &self,
        key_id: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<SealedToken>> {
        self.inner.tokens_not_sealed_by(key_id, after, limit).await
    }
    async fn count_tokens_not_sealed_by(&self, key_id: &str) -> StoreResult<i64> {
        self.inner.count_tokens_not_sealed_by(key_id).await
    }
    /// No notice: a re-sealed token is the same token, and a cached entry sealed by the older
    /// key still opens for as long as this process holds that key (dropping the key from
    /// `HEXBROKER_ENCRYPTION_KEYS` means a restart, with empty caches). One notice per row would
    /// make every replica sweep both caches under a write lock, 100,000 times for a big table.
    async fn reseal_tokens(&self, batch: &[Reseal]) -> StoreResult<u64> {
        self.inner.reseal_tokens(batch).await
    }
    async fn insert_api_key(&self, key: &NewApiKey, audit: &AuditContext) -> StoreResult<ApiKey> {
        self.inner.insert_api_key(key, audit).await
    }

    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        if let Some(key) = self.caches.keys.get(&hash.to_vec()) {
            return Ok(Some(key));
        }
        let generation = self.generation();
        let key = self.inner.api_key_by_hash(hash).await?;
        if let Some(key) = &key {
            self.caches.keys.insert_if(hash.to_vec(), key.clone(), || self.generation() == generation);
        }
        Ok(key)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.inner.list_api_keys().await
    }
    async fn revoke_api_key(&self, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
        let done = self.inner.revoke_api_key(id, audit).await?;
        self.dropped(&key_message(id));
        Ok(done)
    }
    async fn revoke_connection_key(
        &self,
        tenant: &str,
        connection_id: Uuid,
        key_id: Uuid,
        audit: &AuditContext,
    ) -> StoreResult<bool> {
        let done = self.inner.revoke_connection_key(tenant, connection_id, key_id, audit).await?;
        self.dropped(&key_message(key_id));
        Ok(done)
    }
    async fn insert_connection(&self, new: &NewConnection, audit: &AuditContext) -> StoreResult<Inserted> {
        self.inner.insert_connection(new, audit).await
    }
    async fn connection_by_fingerprint(
        &self,
        tenant: &str,
        end_user_id: &str,
        subdomain: &str,
        fingerprint: &[u8],
    ) -> StoreResult<Option<Connection>> {
        self.inner.connection_by_fingerprint(tenant, end_user_id, subdomain, fingerprint).await
    }
    async fn connection(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Connection>> {
        self.inner.connection(tenant, id).await
    }

    async fn connection_with_token(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Arc<(Connection, Sealed)>>> {
        let key = (tenant.to_owned(), id);
        if let Some(found) = self.caches.connections.get(&key) {
            return Ok(Some(found));
        }
        let generation = self.generation();
        let found = self.inner.connection_with_token(tenant, id).await?;
        if let Some(found) = &found {
            self.caches.connections.insert_if(key, found.clone(), || self.generation() == generation);
        }
        Ok(found)
    }

    async fn list_connections(
        &self,
        tenant: &str,
        filter: &ConnectionFilter,
    ) -> StoreResult<Vec<Connection>> {
        self.inner.list_connections(tenant, filter).await
    }
    async fn apply(
        &self,
        tenant: &str,
        id: Uuid,
        change: &Change<'_>,
        audit: &AuditContext,
        expect: &Expect,
    ) -> StoreResult<Applied> {
        let applied = self.inner.apply(tenant, id, change, audit, expect).await?;
        if matches!(applied, Applied::Done(_)) {
            self.dropped(&connection_message(id));
        }
        Ok(applied)
    }
    async fn record_audit(
        &self,
        tenant: &str,
        connection_id: Option<Uuid>,
        audit: &AuditContext,
        outcome: &str,
    ) -> StoreResult<()> {
        self.inner.record_audit(tenant, connection_id, audit, outcome).await
    }
    async fn count_connections_by_status(&self) -> StoreResult<Vec<(Status, i64)>> {
        self.inner.count_connections_by_status().await
    }
    async fn insert_session(&self, new: &NewSession, audit: &AuditContext) -> StoreResult<Session> {
        self.inner.insert_session(new, audit).await
    }
    async fn session_by_hash(&self, hash: &[u8]) -> StoreResult<Option<Session>> {
        self.inner.session_by_hash(hash).await
    }
    async fn complete_session(
        &self,
        session: &Session,
        write: &SessionWrite,
        origin: Option<&str>,
        audit: &AuditContext,
    ) -> StoreResult<SessionOutcome> {
        let outcome = self.inner.complete_session(session, write, origin, audit).await?;
        if let (SessionOutcome::Replaced(connection), SessionWrite::Replace(_)) = (&outcome, write) {
            self.dropped(&connection_message(connection.id));
        }
        Ok(outcome)
    }
    async fn list_events(&self, tenant: &str, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        self.inner.list_events(tenant, filter).await
    }
    async fn redeliver_event(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
        self.inner.redeliver_event(tenant, id, audit).await
    }
    async fn claim_events(&self, lease_until: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.inner.claim_events(lease_until, limit).await
    }
    async fn event_delivered(&self, id: Uuid) -> StoreResult<()> {
        self.inner.event_delivered(id).await
    }
    async fn event_failed(&self, id: Uuid, error: &str, retry_at: Option<DateTime<Utc>>) -> StoreResult<()> {
        self.inner.event_failed(id, error, retry_at).await
    }
    async fn next_event_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.inner.next_event_due().await
    }
    async fn event_signal(&self) -> StoreResult<Arc<tokio::sync::Notify>> {
        self.inner.event_signal().await
    }
    async fn list_audit(&self, tenant: &str, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        self.inner.list_audit(tenant, filter).await
    }
    async fn prune(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.prune(before).await
    }
}

/// The watchers' own writes change no status (those go through `apply`), and what they change
/// (schedules, identity, `last_used_at`) is not what the hot path reads: the cache is left alone.
#[async_trait::async_trait]
impl WatchStore for CachedStore {
    async fn unscheduled_checks(&self, limit: u32) -> StoreResult<Vec<(Uuid, DateTime<Utc>)>> {
        self.inner.unscheduled_checks(limit).await
    }
    async fn schedule_check(&self, id: Uuid, at: DateTime<Utc>, only_unscheduled: bool) -> StoreResult<()> {
        self.inner.schedule_check(id, at, only_unscheduled).await
    }
    async fn claim_due_checks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DueCheck>> {
        self.inner.claim_due_checks(now, lease_until, limit).await
    }
    async fn record_check_passed(
        &self,
        id: Uuid,
        nonce: &[u8],
        identity: &HexIdentity,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Connection>> {
        self.inner.record_check_passed(id, nonce, identity, next, now).await
    }
    async fn record_check_refused(
        &self,
        id: Uuid,
        nonce: &[u8],
        reason: &str,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<Connection>> {
        self.inner.record_check_refused(id, nonce, reason, next).await
    }
    async fn expiry_warnings_due(
        &self,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Uuid)>> {
        self.inner.expiry_warnings_due(now, horizon, limit).await
    }
    async fn expiries_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<(String, Uuid)>> {
        self.inner.expiries_due(now, limit).await
    }
    async fn record_last_used(&self, marks: &[(Uuid, DateTime<Utc>)]) -> StoreResult<()> {
        self.inner.record_last_used(marks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let map = TtlMap::new(Duration::from_millis(50), 2);
        map.insert_if(1, "a", || true);
        map.insert_if(2, "b", || true);
        assert_eq!(map.get(&1), Some("a"));
        map.insert_if(3, "c", || true);
        assert!(map.entries.read().unwrap().len() <= 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(map.get(&3), None, "expired");
        map.insert_if(4, "d", || false);
        assert_eq!(map.get(&4), None, "a fill older than an invalidation is dropped");
        let off = TtlMap::new(Duration::from_secs(1), 0);
        off.insert_if(1, "a", || true);
        assert_eq!(off.get(&1), None, "capacity 0 turns the cache off");
    }
}
