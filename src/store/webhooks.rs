//! Webhook storage (§8, §13): tenants' endpoints, the fan-out of an event to one delivery per
//! destination (inside the transaction that records the event), claiming deliveries across
//! replicas, and each attempt's outcome with its history row.
//!
//! A claim is one `update … where id in (select … limit n) returning`, as the events' claim was:
//! the lease (`locked_until`) keeps a delivery to one replica per attempt, and a crashed
//! replica's lease lapses. On Postgres the inner select skips rows another replica holds locked;
//! SQLite runs one writer at a time and re-checks the condition on the outer update.
//!
//! Endpoints and deliveries are not what the hot path caches: no write here tells the caches, and
//! those that queue a delivery wake the delivery worker (`tx.recorded_events()`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use crate::audit::AuditContext;
use crate::crypto::Sealed;
use crate::events::endpoints::{
    Attempt, AttemptOutcome, Endpoint, EndpointChange, EndpointSecrets, NewEndpoint,
};
use crate::events::Delivery;

/// The webhook operations, on either backend (a supertrait of [`super::Store`]).
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint (audited `webhook_endpoint.create`).
    async fn insert_endpoint(&self, new: &NewEndpoint, audit: &AuditContext) -> StoreResult<Endpoint>;
    /// An endpoint of `tenant`.
    async fn endpoint(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Endpoint>>;
    /// A page of `tenant`'s endpoints, newest first.
    async fn list_endpoints(
        &self,
        tenant: &str,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Endpoint>>;
    /// Changes an endpoint of `tenant` (audited `webhook_endpoint.update`); `None` when there is none.
    async fn update_endpoint(
        &self,
        tenant: &str,
        id: Uuid,
        change: &EndpointChange,
        audit: &AuditContext,
    ) -> StoreResult<Option<Endpoint>>;
    /// Deletes an endpoint of `tenant` with its deliveries and history (audited); false when none.
    async fn delete_endpoint(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool>;
    /// Makes `new` the endpoint's secret; the current one signs on beside it until
    /// `previous_until` (audited `webhook_endpoint.rotate_secret`). `None` when there is none.
    async fn rotate_endpoint_secret(
        &self,
        tenant: &str,
        id: Uuid,
        new: &Sealed,
        previous_until: DateTime<Utc>,
        audit: &AuditContext,
    ) -> StoreResult<Option<Endpoint>>;
    /// An endpoint with its sealed secrets, whatever its tenant (for delivery).
    async fn endpoint_secrets(&self, id: Uuid) -> StoreResult<Option<EndpointSecrets>>;
    /// Records a `webhook.test` event with one delivery, to this endpoint alone; false when the
    /// tenant has no such endpoint.
    async fn queue_test_event(&self, tenant: &str, endpoint_id: Uuid, event_id: Uuid) -> StoreResult<bool>;
    /// A page of an endpoint's delivery attempts, newest first.
    async fn list_attempts(
        &self,
        endpoint_id: Uuid,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Attempt>>;

    /// Claims up to `limit` due deliveries until `lease_until`, counting an attempt for each; no
    /// other replica claims them before that. Deliveries to the deployment-wide URL only when
    /// `deployment` (it is set here).
    async fn claim_deliveries(
        &self,
        lease_until: DateTime<Utc>,
        limit: u32,
        deployment: bool,
    ) -> StoreResult<Vec<Delivery>>;
    /// Claims due deliveries, the deployment-wide URL's included.
    async fn claim_events(&self, lease_until: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.claim_deliveries(lease_until, limit, true).await
    }
    /// Records an attempt's outcome: its history row, the delivery's new state, and its event's
    /// summary, in one transaction. A failed endpoint also holds its other due deliveries until
    /// the same retry time, so that it is not hammered (and holds no other endpoint's slots).
    async fn record_attempt(&self, delivery: &Delivery, outcome: &AttemptOutcome) -> StoreResult<()>;
    /// Hands a claimed delivery back unattempted, due again at `at`.
    async fn defer_delivery(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    /// When the next pending delivery falls due, if any does.
    async fn next_delivery_due(&self, deployment: bool) -> StoreResult<Option<DateTime<Utc>>>;

    /// Endpoints with a secret not sealed by `key_id` (for re-encryption).
    async fn endpoint_secrets_not_sealed_by(&self, key_id: &str) -> StoreResult<Vec<EndpointSecrets>>;
    /// Replaces an endpoint's sealed secrets if they are still `old`'s; false when they changed.
    async fn reseal_endpoint_secrets(
        &self,
        old: &EndpointSecrets,
        current: &Sealed,
        previous: Option<&Sealed>,
    ) -> StoreResult<bool>;
}

/// A claimed delivery row, before its event is read.
#[derive(sqlx::FromRow)]
pub(super) struct Claimed {
    pub id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Option<Uuid>,
    pub attempts: i32,
    pub queued_at: DateTime<Utc>,
}

/// An event's fields a delivery carries.
#[derive(sqlx::FromRow)]
pub(super) struct EventBody {
    #[sqlx(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    #[sqlx(json)]
    pub payload: serde_json::Value,
}

/// Writes the [`WebhookStore`] implementation for a backend with `pool` and `hooks` fields (and
/// the steps of `impl_writes!`); `$db` is its sqlx database, `claim` its delivery claim.
macro_rules! impl_webhook_store {
    ($store:ty, $db:ty, claim: $claim:expr) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use crate::audit::AuditContext;
            use crate::crypto::Sealed;
            use crate::events::endpoints::{
                Attempt, AttemptOutcome, Endpoint, EndpointChange, EndpointSecrets, EventTypes, NewEndpoint,
                TEST_EVENT,
            };
            use crate::events::Delivery;
            use crate::store::effects::Tx;
            use crate::store::sql::{event, webhook};
            use crate::store::webhooks::{Claimed, EventBody};
            use crate::store::{now, StoreResult};

            impl $store {
                /// Writes an event's deliveries: the deployment-wide URL's (except for a test
                /// event) and one per enabled endpoint of `tenant` whose types match.
                async fn fan_out_in(
                    tx: &mut Tx<$db>,
                    tenant: &str,
                    event_id: Uuid,
                    kind: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    let endpoints: Vec<(Uuid, String)> =
                        sqlx::query_as(webhook::ENABLED_ENDPOINTS).bind(tenant).fetch_all(&mut **tx).await?;
                    let mut targets: Vec<Option<Uuid>> = vec![None];
                    for (id, types) in endpoints {
                        if EventTypes::from(types).matches(kind) {
                            targets.push(Some(id));
                        }
                    }
                    for endpoint in targets {
                        Self::delivery_in(tx, tenant, event_id, endpoint, now).await?;
                    }
                    Ok(())
                }

                /// Writes one pending delivery, due at once; the commit wakes the delivery worker.
                async fn delivery_in(
                    tx: &mut Tx<$db>,
                    tenant: &str,
                    event_id: Uuid,
                    endpoint: Option<Uuid>,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sqlx::query(webhook::INSERT_DELIVERY)
                        .bind(Uuid::now_v7())
                        .bind(event_id)
                        .bind(tenant)
                        .bind(endpoint)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    tx.recorded_events();
                    Ok(())
                }

                /// Writes an endpoint's audit entry.
                async fn endpoint_audit_in(
                    tx: &mut Tx<$db>,
                    tenant: &str,
                    id: Uuid,
                    audit: &AuditContext,
                ) -> StoreResult<()> {
                    let detail = format!("webhook endpoint {id}");
                    Self::audit_in(tx, tenant, None, audit, "ok", Some(&detail)).await
                }
            }

            #[async_trait::async_trait]
            impl crate::store::WebhookStore for $store {
                async fn insert_endpoint(
                    &self,
                    new: &NewEndpoint,
                    audit: &AuditContext,
                ) -> StoreResult<Endpoint> {
                    let mut tx = self.begin().await?;
                    let endpoint = sqlx::query_as(webhook::INSERT_ENDPOINT)
                        .bind(new.id)
                        .bind(&new.tenant)
                        .bind(&new.url)
                        .bind(&new.description)
                        .bind(new.event_types.to_column())
                        .bind(true)
                        .bind(&new.sealed.key_id)
                        .bind(&new.sealed.nonce)
                        .bind(&new.sealed.ciphertext)
                        .bind(now())
                        .fetch_one(&mut *tx)
                        .await?;
                    Self::endpoint_audit_in(&mut tx, &new.tenant, new.id, audit).await?;
                    self.commit(tx).await?;
                    Ok(endpoint)
                }

                async fn endpoint(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Endpoint>> {
                    Ok(sqlx::query_as(webhook::ENDPOINT)
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn list_endpoints(
                    &self,
                    tenant: &str,
                    before_id: Option<Uuid>,
                    limit: u32,
                ) -> StoreResult<Vec<Endpoint>> {
                    Ok(sqlx::query_as(webhook::LIST_ENDPOINTS)
                        .bind(tenant)
                        .bind(before_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn update_endpoint(
                    &self,
                    tenant: &str,
                    id: Uuid,
                    change: &EndpointChange,
                    audit: &AuditContext,
                ) -> StoreResult<Option<Endpoint>> {
                    let mut tx = self.begin().await?;
                    let updated: Option<Endpoint> = sqlx::query_as(webhook::UPDATE_ENDPOINT)
                        .bind(tenant)
                        .bind(id)
                        .bind(&change.url)
                        .bind(change.description.is_some())
                        .bind(change.description.clone().flatten())
                        .bind(change.event_types.as_ref().map(|t| t.to_column()))
                        .bind(change.enabled)
                        .bind(now())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if updated.is_some() {
                        Self::endpoint_audit_in(&mut tx, tenant, id, audit).await?;
                        self.commit(tx).await?;
                    }
                    Ok(updated)
                }

                async fn delete_endpoint(
                    &self,
                    tenant: &str,
                    id: Uuid,
                    audit: &AuditContext,
                ) -> StoreResult<bool> {
                    let mut tx = self.begin().await?;
                    let found = sqlx::query(webhook::LOCK_ENDPOINT)
                        .bind(tenant)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if found == 0 {
                        return Ok(false);
                    }
                    // Its events' rows are locked before its deliveries (the order `record_attempt`
                    // takes them in); the deliveries go with it, and the events' summaries follow.
                    sqlx::query(webhook::LOCK_ENDPOINT_EVENTS).bind(id).execute(&mut *tx).await?;
                    let events: Vec<(Uuid,)> =
                        sqlx::query_as(webhook::ENDPOINT_EVENTS).bind(id).fetch_all(&mut *tx).await?;
                    let deleted = sqlx::query(webhook::DELETE_ENDPOINT)
                        .bind(tenant)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Ok(false);
                    }
                    let now = now();
                    for (event_id,) in events {
                        sqlx::query(webhook::SUMMARISE_EVENT)
                            .bind(event_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Self::endpoint_audit_in(&mut tx, tenant, id, audit).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn rotate_endpoint_secret(
                    &self,
                    tenant: &str,
                    id: Uuid,
                    new: &Sealed,
                    previous_until: DateTime<Utc>,
                    audit: &AuditContext,
                ) -> StoreResult<Option<Endpoint>> {
                    let mut tx = self.begin().await?;
                    let rotated: Option<Endpoint> = sqlx::query_as(webhook::ROTATE_SECRET)
                        .bind(tenant)
                        .bind(id)
                        .bind(previous_until)
                        .bind(&new.key_id)
                        .bind(&new.nonce)
                        .bind(&new.ciphertext)
                        .bind(now())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if rotated.is_some() {
                        Self::endpoint_audit_in(&mut tx, tenant, id, audit).await?;
                        self.commit(tx).await?;
                    }
                    Ok(rotated)
                }

                async fn endpoint_secrets(&self, id: Uuid) -> StoreResult<Option<EndpointSecrets>> {
                    Ok(sqlx::query_as(webhook::SECRETS).bind(id).fetch_optional(&self.pool).await?)
                }

                async fn queue_test_event(
                    &self,
                    tenant: &str,
                    endpoint_id: Uuid,
                    event_id: Uuid,
                ) -> StoreResult<bool> {
                    let now = now();
                    let mut tx = self.begin().await?;
                    // A no-op write first: it takes the write lock (SQLite) before anything is
                    // read, so the transaction never has to upgrade a read lock under a
                    // concurrent writer.
                    let found = sqlx::query(webhook::LOCK_ENDPOINT)
                        .bind(tenant)
                        .bind(endpoint_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if found == 0 {
                        return Ok(false);
                    }
                    let payload = serde_json::json!({ "endpoint_id": endpoint_id });
                    sqlx::query(event::INSERT)
                        .bind(event_id)
                        .bind(tenant)
                        .bind(TEST_EVENT)
                        .bind(Uuid::nil())
                        .bind(sqlx::types::Json(&payload))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Self::delivery_in(&mut tx, tenant, event_id, Some(endpoint_id), now).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn list_attempts(
                    &self,
                    endpoint_id: Uuid,
                    before_id: Option<Uuid>,
                    limit: u32,
                ) -> StoreResult<Vec<Attempt>> {
                    Ok(sqlx::query_as(webhook::LIST_ATTEMPTS)
                        .bind(endpoint_id)
                        .bind(before_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn claim_deliveries(
                    &self,
                    lease_until: DateTime<Utc>,
                    limit: u32,
                    deployment: bool,
                ) -> StoreResult<Vec<Delivery>> {
                    let claimed: Vec<Claimed> = sqlx::query_as($claim)
                        .bind(now())
                        .bind(lease_until)
                        .bind(i64::from(limit))
                        .bind(deployment)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut deliveries = Vec::with_capacity(claimed.len());
                    for c in claimed {
                        let event: Option<EventBody> = sqlx::query_as(webhook::DELIVERY_EVENT)
                            .bind(c.event_id)
                            .fetch_optional(&self.pool)
                            .await?;
                        // An event pruned meanwhile takes its deliveries with it.
                        let Some(event) = event else { continue };
                        deliveries.push(Delivery {
                            id: c.id,
                            event_id: c.event_id,
                            endpoint_id: c.endpoint_id,
                            kind: event.kind,
                            created_at: event.created_at,
                            payload: event.payload,
                            attempts: c.attempts,
                            queued_at: c.queued_at,
                        });
                    }
                    Ok(deliveries)
                }

                async fn record_attempt(
                    &self,
                    delivery: &Delivery,
                    outcome: &AttemptOutcome,
                ) -> StoreResult<()> {
                    let now = now();
                    let mut tx = self.begin().await?;
                    // The event's row lock first: two deliveries of one event finishing at once
                    // then summarise one after the other, the second seeing the first's commit (on
                    // Postgres each statement reads as of its start, so without the lock both
                    // could see the other still pending and leave the event `pending` for good).
                    sqlx::query(webhook::LOCK_EVENT).bind(delivery.event_id).execute(&mut *tx).await?;
                    let updated = match &outcome.error {
                        None => {
                            sqlx::query(webhook::DELIVERED)
                                .bind(delivery.id)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?
                        }
                        Some(error) => {
                            sqlx::query(webhook::FAILED)
                                .bind(delivery.id)
                                .bind(if outcome.retry_at.is_some() { "pending" } else { "dead" })
                                .bind(outcome.retry_at)
                                .bind(error)
                                .execute(&mut *tx)
                                .await?
                        }
                    }
                    .rows_affected();
                    if updated == 0 {
                        // Gone (its endpoint deleted) or requeued meanwhile: nothing to record.
                        return Ok(());
                    }
                    sqlx::query(webhook::INSERT_ATTEMPT)
                        .bind(outcome.id)
                        .bind(delivery.id)
                        .bind(delivery.endpoint_id)
                        .bind(delivery.event_id)
                        .bind(&delivery.kind)
                        .bind(delivery.attempts)
                        .bind(outcome.at)
                        .bind(outcome.status_code.map(i32::from))
                        .bind(outcome.duration_ms)
                        .bind(&outcome.detail)
                        .execute(&mut *tx)
                        .await?;
                    if let (Some(endpoint), Some(retry_at), Some(_)) =
                        (delivery.endpoint_id, outcome.retry_at, &outcome.error)
                    {
                        sqlx::query(webhook::HOLD_ENDPOINT)
                            .bind(endpoint)
                            .bind(retry_at)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(webhook::SUMMARISE_EVENT)
                        .bind(delivery.event_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    self.commit(tx).await
                }

                async fn defer_delivery(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
                    sqlx::query(webhook::DEFER).bind(id).bind(at).execute(&self.pool).await?;
                    Ok(())
                }

                async fn next_delivery_due(&self, deployment: bool) -> StoreResult<Option<DateTime<Utc>>> {
                    let due: Option<(DateTime<Utc>,)> =
                        sqlx::query_as(webhook::NEXT_DUE).bind(deployment).fetch_optional(&self.pool).await?;
                    Ok(due.map(|(t,)| t))
                }

                async fn endpoint_secrets_not_sealed_by(
                    &self,
                    key_id: &str,
                ) -> StoreResult<Vec<EndpointSecrets>> {
                    Ok(sqlx::query_as(webhook::SECRETS_NOT_SEALED_BY)
                        .bind(key_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn reseal_endpoint_secrets(
                    &self,
                    old: &EndpointSecrets,
                    current: &Sealed,
                    previous: Option<&Sealed>,
                ) -> StoreResult<bool> {
                    // Only while the row still holds what was read (a rotation meanwhile wins).
                    let done = sqlx::query(webhook::RESEAL_SECRETS)
                        .bind(old.id)
                        .bind(&old.nonce)
                        .bind(&current.key_id)
                        .bind(&current.nonce)
                        .bind(&current.ciphertext)
                        .bind(previous.map(|p| p.key_id.clone()))
                        .bind(previous.map(|p| p.nonce.clone()))
                        .bind(previous.map(|p| p.ciphertext.clone()))
                        .bind(old.previous_nonce.clone().unwrap_or_default())
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    Ok(done == 1)
                }
            }
        };
    };
}

pub(super) use impl_webhook_store;
