//! The store as the hot path's caches see it: every write that could make a cached caller or
//! target stale tells them, after its commit, so that this replica stops using it at once; the
//! store also sent the other replicas a Postgres `NOTIFY` inside the same transaction (delivered
//! at commit, so never lost to a crash between the two), and this wrapper passes what they send
//! on to the same caches. Revocation (key revoked, connection deleted, token replaced, connection
//! invalidated) so takes effect everywhere within a second; the caches' TTL is only the safety net
//! for a lost notification channel and for writes made by another process on SQLite. The caches
//! themselves live with what they hold (`auth::Callers`, `proxy::Targets`): the store only names
//! what went stale.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    ApiKey, Applied, Connection, ConnectionFilter, DueCheck, DynStore, Expect, HexIdentity, Inserted,
    NewApiKey, NewConnection, NewSession, Reseal, SealedToken, Session, SessionOutcome, SessionWrite, Store,
    StoreResult, WatchStore, WebhookStore,
};
use super::{ConsoleSession, ConsoleStore, NewConsoleSession};
use super::{HourCount, RequestCounts, RequestFilter, RequestLogStore, RequestRecord};
use crate::audit::{AuditContext, AuditEntry, AuditFilter};
use crate::crypto::Sealed;
use crate::events::endpoints::{
    Attempt, AttemptOutcome, Endpoint, EndpointChange, EndpointSecrets, NewEndpoint,
};
use crate::events::{Delivery, EventFilter, EventRecord};
use crate::lifecycle::{Change, Status};

/// What a write made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// API key or connection key `id` (revoked).
    Key(Uuid),
    /// Connection `id` (changed, deleted, its token replaced), and with it its connection keys.
    Connection(Uuid),
    /// Anything: notices may have been missed.
    Everything,
}

impl Stale {
    /// A notice as the store sends it to the other replicas (`key:<id>`, `connection:<id>`);
    /// anything else is read as [`Stale::Everything`], the safe side.
    pub fn parse(message: &str) -> Self {
        match message.split_once(':').map(|(kind, id)| (kind, Uuid::parse_str(id))) {
            Some(("key", Ok(id))) => Stale::Key(id),
            Some(("connection", Ok(id))) => Stale::Connection(id),
            _ => Stale::Everything,
        }
    }
}

/// Whatever holds copies of what the store keeps, and must drop them when told.
pub trait Forget: Send + Sync + 'static {
    /// Drops what `stale` names. Called after the commit, before the write returns.
    fn forget(&self, stale: Stale);
}

/// A [`Store`] that tells `forget` what each of its writes, and each other replica's, made stale.
pub struct Announcing {
    inner: DynStore,
    forget: Arc<dyn Forget>,
}

impl Announcing {
    /// Wraps `inner`, and follows the other replicas' notices when it can.
    pub async fn wrap(inner: DynStore, forget: Arc<dyn Forget>) -> StoreResult<Arc<Self>> {
        if let Some(mut messages) = inner.subscribe_invalidations().await? {
            let forget = Arc::downgrade(&forget);
            tokio::spawn(async move {
                while let Some(message) = messages.recv().await {
                    let Some(forget) = forget.upgrade() else { break };
                    forget.forget(message.as_deref().map_or(Stale::Everything, Stale::parse));
                }
            });
        }
        Ok(Arc::new(Self { inner, forget }))
    }

    fn dropped(&self, stale: Stale) {
        self.forget.forget(stale);
    }
}

#[async_trait::async_trait]
impl Store for Announcing {
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
    /// be 100,000 notices for a big table, each emptying a cache entry on every replica.
    async fn reseal_tokens(&self, batch: &[Reseal]) -> StoreResult<u64> {
        self.inner.reseal_tokens(batch).await
    }
    async fn insert_api_key(&self, key: &NewApiKey, audit: &AuditContext) -> StoreResult<ApiKey> {
        self.inner.insert_api_key(key, audit).await
    }

    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        self.inner.api_key_by_hash(hash).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.inner.list_api_keys().await
    }
    async fn revoke_api_key(&self, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
        let done = self.inner.revoke_api_key(id, audit).await?;
        self.dropped(Stale::Key(id));
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
        self.dropped(Stale::Key(key_id));
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
        self.inner.connection_with_token(tenant, id).await
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
            self.dropped(Stale::Connection(id));
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
            self.dropped(Stale::Connection(connection.id));
        }
        Ok(outcome)
    }
    async fn list_events(&self, tenant: &str, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        self.inner.list_events(tenant, filter).await
    }
    async fn redeliver_event(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
        self.inner.redeliver_event(tenant, id, audit).await
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
impl WatchStore for Announcing {
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

/// Webhook endpoints and deliveries are not what the hot path caches: passed straight through.
#[async_trait::async_trait]
impl WebhookStore for Announcing {
    async fn insert_endpoint(&self, new: &NewEndpoint, audit: &AuditContext) -> StoreResult<Endpoint> {
        self.inner.insert_endpoint(new, audit).await
    }
    async fn endpoint(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Endpoint>> {
        self.inner.endpoint(tenant, id).await
    }
    async fn list_endpoints(
        &self,
        tenant: &str,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Endpoint>> {
        self.inner.list_endpoints(tenant, before_id, limit).await
    }
    async fn update_endpoint(
        &self,
        tenant: &str,
        id: Uuid,
        change: &EndpointChange,
        audit: &AuditContext,
    ) -> StoreResult<Option<Endpoint>> {
        self.inner.update_endpoint(tenant, id, change, audit).await
    }
    async fn delete_endpoint(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
        self.inner.delete_endpoint(tenant, id, audit).await
    }
    async fn rotate_endpoint_secret(
        &self,
        tenant: &str,
        id: Uuid,
        new: &Sealed,
        previous_until: DateTime<Utc>,
        audit: &AuditContext,
    ) -> StoreResult<Option<Endpoint>> {
        self.inner.rotate_endpoint_secret(tenant, id, new, previous_until, audit).await
    }
    async fn endpoint_secrets(&self, id: Uuid) -> StoreResult<Option<EndpointSecrets>> {
        self.inner.endpoint_secrets(id).await
    }
    async fn queue_test_event(&self, tenant: &str, endpoint_id: Uuid, event_id: Uuid) -> StoreResult<bool> {
        self.inner.queue_test_event(tenant, endpoint_id, event_id).await
    }
    async fn list_attempts(
        &self,
        endpoint_id: Uuid,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Attempt>> {
        self.inner.list_attempts(endpoint_id, before_id, limit).await
    }
    async fn claim_deliveries(
        &self,
        lease_until: DateTime<Utc>,
        limit: u32,
        deployment: bool,
    ) -> StoreResult<Vec<Delivery>> {
        self.inner.claim_deliveries(lease_until, limit, deployment).await
    }
    async fn record_attempt(&self, delivery: &Delivery, outcome: &AttemptOutcome) -> StoreResult<()> {
        self.inner.record_attempt(delivery, outcome).await
    }
    async fn defer_delivery(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.inner.defer_delivery(id, at).await
    }
    async fn next_delivery_due(&self, deployment: bool) -> StoreResult<Option<DateTime<Utc>>> {
        self.inner.next_delivery_due(deployment).await
    }
    async fn endpoint_secrets_not_sealed_by(&self, key_id: &str) -> StoreResult<Vec<EndpointSecrets>> {
        self.inner.endpoint_secrets_not_sealed_by(key_id).await
    }
    async fn reseal_endpoint_secrets(
        &self,
        old: &EndpointSecrets,
        current: &Sealed,
        previous: Option<&Sealed>,
    ) -> StoreResult<bool> {
        self.inner.reseal_endpoint_secrets(old, current, previous).await
    }
}

/// The request log touches nothing the hot path caches: passed through.
#[async_trait::async_trait]
impl RequestLogStore for Announcing {
    async fn insert_requests(&self, entries: &[RequestRecord], counts: &[HourCount]) -> StoreResult<()> {
        self.inner.insert_requests(entries, counts).await
    }
    async fn list_requests(&self, tenant: &str, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        self.inner.list_requests(tenant, filter).await
    }
    async fn request_counts(
        &self,
        ids: &[Uuid],
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, RequestCounts)>> {
        self.inner.request_counts(ids, since).await
    }
    async fn prune_requests(&self, before: Uuid, limit: u32) -> StoreResult<u64> {
        self.inner.prune_requests(before, limit).await
    }
    async fn requests_kept_from(&self, max_rows: u64) -> StoreResult<Option<Uuid>> {
        self.inner.requests_kept_from(max_rows).await
    }
    async fn prune_request_counts(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.prune_request_counts(before).await
    }
}

/// Console sessions and the console's reads touch nothing the hot path caches: passed through.
#[async_trait::async_trait]
impl ConsoleStore for Announcing {
    async fn insert_console_session(&self, new: &NewConsoleSession) -> StoreResult<()> {
        self.inner.insert_console_session(new).await
    }
    async fn console_session_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ConsoleSession>> {
        self.inner.console_session_by_hash(hash).await
    }
    async fn touch_console_session(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.inner.touch_console_session(id, at).await
    }
    async fn delete_console_session(&self, id: Uuid) -> StoreResult<bool> {
        self.inner.delete_console_session(id).await
    }
    async fn list_tenant_api_keys(
        &self,
        tenant: &str,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ApiKey>> {
        self.inner.list_tenant_api_keys(tenant, before_id, limit).await
    }
    async fn list_connection_keys(&self, tenant: &str, connection_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        self.inner.list_connection_keys(tenant, connection_id).await
    }
    async fn api_key_in_tenant(&self, tenant: &str, id: Uuid) -> StoreResult<Option<ApiKey>> {
        self.inner.api_key_in_tenant(tenant, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_what_went_stale_and_anything_else_means_everything() {
        let id = Uuid::now_v7();
        assert_eq!(Stale::parse(&format!("key:{id}")), Stale::Key(id));
        assert_eq!(Stale::parse(&format!("connection:{id}")), Stale::Connection(id));
        assert_eq!(Stale::parse("connection:nope"), Stale::Everything);
        assert_eq!(Stale::parse(""), Stale::Everything);
    }
}
