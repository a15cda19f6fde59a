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

/// The columns of an [`Endpoint`].
macro_rules! endpoint_columns {
    () => {
        "id, tenant, url, description, event_types, enabled, created_at, updated_at"
    };
}

/// The columns of an [`EndpointSecrets`].
macro_rules! endpoint_secret_columns {
    () => {
        "id, tenant, url, enabled, key_id, nonce, ciphertext, previous_key_id, previous_nonce, \
         previous_ciphertext, previous_until"
    };
}

/// Claims due deliveries on Postgres: rows another replica is claiming are skipped.
pub(super) const CLAIM_DELIVERIES_POSTGRES: &str =
    "update webhook_delivery set locked_until = $2, attempts = attempts + 1 where id in (select id from \
     webhook_delivery where state = 'pending' and next_attempt_at <= $1 and (locked_until is null or \
     locked_until <= $1) and ($4 or endpoint_id is not null) order by next_attempt_at limit $3 for update skip locked) \
     returning id, event_id, endpoint_id, attempts, queued_at";

/// Claims due deliveries on SQLite, where one statement is one write: the condition is the claim.
pub(super) const CLAIM_DELIVERIES_SQLITE: &str =
    "update webhook_delivery set locked_until = $2, attempts = attempts + 1 where id in (select id from \
     webhook_delivery where state = 'pending' and next_attempt_at <= $1 and (locked_until is null or \
     locked_until <= $1) and ($4 or endpoint_id is not null) order by next_attempt_at limit $3) \
     and state = 'pending' and (locked_until is null or locked_until <= $1) \
     returning id, event_id, endpoint_id, attempts, queued_at";

/// Sets an event's state columns from its deliveries.
pub(super) const SUMMARISE_EVENT: &str = "update event set \
     state = case when exists (select 1 from webhook_delivery d where d.event_id = event.id and d.state = 'pending') then 'pending' \
                  when exists (select 1 from webhook_delivery d where d.event_id = event.id and d.state = 'dead') then 'dead' \
                  else 'delivered' end, \
     attempts = coalesce((select max(d.attempts) from webhook_delivery d where d.event_id = event.id), attempts), \
     next_attempt_at = coalesce((select min(d.next_attempt_at) from webhook_delivery d where d.event_id = event.id \
                                 and d.state = 'pending'), next_attempt_at), \
     last_error = (select d.last_error from webhook_delivery d where d.event_id = event.id and d.last_error is not null \
                   order by d.attempts desc limit 1), \
     delivered_at = case when exists (select 1 from webhook_delivery d where d.event_id = event.id and d.state <> 'delivered') \
                    then null else $2 end \
     where id = $1";

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

macro_rules! impl_webhook_store {
    ($store:ty, $db:ty, claim: $claim:expr) => {
        impl $store {
            /// Writes an event's deliveries inside `tx`: the deployment-wide URL's (except for a
            /// test event) and one per enabled endpoint of `tenant` whose types match.
            async fn fan_out_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                tenant: &str,
                event_id: uuid::Uuid,
                kind: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let endpoints: Vec<(uuid::Uuid, String)> =
                    sqlx::query_as("select id, event_types from webhook_endpoint where tenant = $1 and enabled")
                        .bind(tenant)
                        .fetch_all(&mut **tx)
                        .await?;
                let mut targets: Vec<Option<uuid::Uuid>> = vec![None];
                for (id, types) in endpoints {
                    let types = $crate::events::endpoints::EventTypes::from(types);
                    if types.matches(kind) {
                        targets.push(Some(id));
                    }
                }
                for endpoint in targets {
                    Self::delivery_in(tx, tenant, event_id, endpoint, now).await?;
                }
                Ok(())
            }

            /// Writes one pending delivery, due at once.
            async fn delivery_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                tenant: &str,
                event_id: uuid::Uuid,
                endpoint: Option<uuid::Uuid>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "insert into webhook_delivery (id, event_id, tenant, endpoint_id, state, attempts, \
                     next_attempt_at, queued_at) values ($1, $2, $3, $4, 'pending', 0, $5, $5)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(event_id)
                .bind(tenant)
                .bind(endpoint)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Writes an endpoint's audit entry inside `tx`.
            async fn endpoint_audit_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                tenant: &str,
                id: uuid::Uuid,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<()> {
                let detail = format!("webhook endpoint {id}");
                Self::audit_in(tx, tenant, None, audit, "ok", Some(&detail)).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::WebhookStore for $store {
            async fn insert_endpoint(
                &self,
                new: &$crate::events::endpoints::NewEndpoint,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<$crate::events::endpoints::Endpoint> {
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                let endpoint = sqlx::query_as(concat!(
                    "insert into webhook_endpoint (id, tenant, url, description, event_types, enabled, key_id, \
                     nonce, ciphertext, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
                     returning ",
                    endpoint_columns!()
                ))
                .bind(new.id)
                .bind(&new.tenant)
                .bind(&new.url)
                .bind(&new.description)
                .bind(new.event_types.to_column())
                .bind(true)
                .bind(&new.sealed.key_id)
                .bind(&new.sealed.nonce)
                .bind(&new.sealed.ciphertext)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                Self::endpoint_audit_in(&mut tx, &new.tenant, new.id, audit).await?;
                self.commit(tx).await?;
                Ok(endpoint)
            }

            async fn endpoint(
                &self,
                tenant: &str,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::events::endpoints::Endpoint>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    endpoint_columns!(),
                    " from webhook_endpoint where tenant = $1 and id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_endpoints(
                &self,
                tenant: &str,
                before_id: Option<uuid::Uuid>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::events::endpoints::Endpoint>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    endpoint_columns!(),
                    " from webhook_endpoint where tenant = $1 and ($2 is null or id < $2) order by id desc limit $3"
                ))
                .bind(tenant)
                .bind(before_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_endpoint(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                change: &$crate::events::endpoints::EndpointChange,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<Option<$crate::events::endpoints::Endpoint>> {
                let mut tx = self.begin().await?;
                let updated: Option<$crate::events::endpoints::Endpoint> = sqlx::query_as(concat!(
                    "update webhook_endpoint set url = coalesce($3, url), \
                     description = case when $4 then $5 else description end, \
                     event_types = coalesce($6, event_types), enabled = coalesce($7, enabled), updated_at = $8 \
                     where tenant = $1 and id = $2 returning ",
                    endpoint_columns!()
                ))
                .bind(tenant)
                .bind(id)
                .bind(&change.url)
                .bind(change.description.is_some())
                .bind(change.description.clone().flatten())
                .bind(change.event_types.as_ref().map(|t| t.to_column()))
                .bind(change.enabled)
                .bind($crate::store::now())
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
                id: uuid::Uuid,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.begin().await?;
                let found = sqlx::query("update webhook_endpoint set updated_at = updated_at where tenant = $1 and id = $2")
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
                sqlx::query(
                    "update event set id = id where id in (select event_id from webhook_delivery where endpoint_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let events: Vec<(uuid::Uuid,)> =
                    sqlx::query_as("select distinct event_id from webhook_delivery where endpoint_id = $1")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                let deleted = sqlx::query("delete from webhook_endpoint where tenant = $1 and id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                let now = $crate::store::now();
                for (event_id,) in events {
                    sqlx::query($crate::store::webhooks::SUMMARISE_EVENT)
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
                id: uuid::Uuid,
                new: &$crate::crypto::Sealed,
                previous_until: chrono::DateTime<chrono::Utc>,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<Option<$crate::events::endpoints::Endpoint>> {
                let mut tx = self.begin().await?;
                let rotated: Option<$crate::events::endpoints::Endpoint> = sqlx::query_as(concat!(
                    "update webhook_endpoint set previous_key_id = key_id, previous_nonce = nonce, \
                     previous_ciphertext = ciphertext, previous_until = $3, key_id = $4, nonce = $5, \
                     ciphertext = $6, updated_at = $7 where tenant = $1 and id = $2 returning ",
                    endpoint_columns!()
                ))
                .bind(tenant)
                .bind(id)
                .bind(previous_until)
                .bind(&new.key_id)
                .bind(&new.nonce)
                .bind(&new.ciphertext)
                .bind($crate::store::now())
                .fetch_optional(&mut *tx)
                .await?;
                if rotated.is_some() {
                    Self::endpoint_audit_in(&mut tx, tenant, id, audit).await?;
                    self.commit(tx).await?;
                }
                Ok(rotated)
            }

            async fn endpoint_secrets(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::events::endpoints::EndpointSecrets>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    endpoint_secret_columns!(),
                    " from webhook_endpoint where id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn queue_test_event(
                &self,
                tenant: &str,
                endpoint_id: uuid::Uuid,
                event_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                // A no-op write first: it takes the write lock (SQLite) before anything is read,
                // so the transaction never has to upgrade a read lock under a concurrent writer.
                let found = sqlx::query("update webhook_endpoint set updated_at = updated_at where tenant = $1 and id = $2")
                    .bind(tenant)
                    .bind(endpoint_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if found == 0 {
                    return Ok(false);
                }
                let payload = serde_json::json!({ "endpoint_id": endpoint_id });
                sqlx::query($crate::store::sql::INSERT_EVENT)
                    .bind(event_id)
                    .bind(tenant)
                    .bind($crate::events::endpoints::TEST_EVENT)
                    .bind(uuid::Uuid::nil())
                    .bind(sqlx::types::Json(&payload))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Self::delivery_in(&mut tx, tenant, event_id, Some(endpoint_id), now).await?;
                tx.recorded_events();
                self.commit(tx).await?;
                Ok(true)
            }

            async fn list_attempts(
                &self,
                endpoint_id: uuid::Uuid,
                before_id: Option<uuid::Uuid>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::events::endpoints::Attempt>> {
                Ok(sqlx::query_as(
                    "select id, event_id, event_type, attempt, at, status_code, duration_ms, error \
                     from webhook_attempt where endpoint_id = $1 and ($2 is null or id < $2) \
                     order by id desc limit $3",
                )
                .bind(endpoint_id)
                .bind(before_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_deliveries(
                &self,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
                deployment: bool,
            ) -> $crate::store::StoreResult<Vec<$crate::events::Delivery>> {
                let claimed: Vec<$crate::store::webhooks::Claimed> = sqlx::query_as($claim)
                    .bind($crate::store::now())
                    .bind(lease_until)
                    .bind(i64::from(limit))
                    .bind(deployment)
                    .fetch_all(&self.pool)
                    .await?;
                let mut deliveries = Vec::with_capacity(claimed.len());
                for c in claimed {
                    let event: Option<$crate::store::webhooks::EventBody> =
                        sqlx::query_as("select type, created_at, payload from event where id = $1")
                            .bind(c.event_id)
                            .fetch_optional(&self.pool)
                            .await?;
                    // An event pruned meanwhile takes its deliveries with it.
                    let Some(event) = event else { continue };
                    deliveries.push($crate::events::Delivery {
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
                delivery: &$crate::events::Delivery,
                outcome: &$crate::events::endpoints::AttemptOutcome,
            ) -> $crate::store::StoreResult<()> {
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                // The event's row lock first: two deliveries of one event finishing at once then
                // summarise one after the other, the second seeing the first's commit (on
                // Postgres each statement reads as of its start, so without the lock both could
                // see the other still pending and leave the event `pending` for good).
                sqlx::query("update event set id = id where id = $1")
                    .bind(delivery.event_id)
                    .execute(&mut *tx)
                    .await?;
                let updated = match &outcome.error {
                    None => sqlx::query(
                        "update webhook_delivery set state = 'delivered', delivered_at = $2, locked_until = null, \
                         last_error = null where id = $1 and state = 'pending'",
                    )
                    .bind(delivery.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?,
                    Some(error) => sqlx::query(
                        "update webhook_delivery set state = $2, next_attempt_at = coalesce($3, next_attempt_at), \
                         locked_until = null, last_error = $4 where id = $1 and state = 'pending'",
                    )
                    .bind(delivery.id)
                    .bind(if outcome.retry_at.is_some() { "pending" } else { "dead" })
                    .bind(outcome.retry_at)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?,
                }
                .rows_affected();
                if updated == 0 {
                    // Gone (its endpoint deleted) or requeued meanwhile: nothing to record.
                    return Ok(());
                }
                sqlx::query(
                    "insert into webhook_attempt (id, delivery_id, endpoint_id, event_id, event_type, attempt, at, \
                     status_code, duration_ms, error) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
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
                    sqlx::query(
                        "update webhook_delivery set next_attempt_at = $2 where endpoint_id = $1 and state = 'pending' \
                         and next_attempt_at < $2 and (locked_until is null or locked_until <= $3)",
                    )
                    .bind(endpoint)
                    .bind(retry_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query($crate::store::webhooks::SUMMARISE_EVENT)
                    .bind(delivery.event_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                self.commit(tx).await?;
                Ok(())
            }

            async fn defer_delivery(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update webhook_delivery set locked_until = null, attempts = attempts - 1, next_attempt_at = $2 \
                     where id = $1 and state = 'pending' and attempts > 0",
                )
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn next_delivery_due(
                &self,
                deployment: bool,
            ) -> $crate::store::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
                let due: Option<(chrono::DateTime<chrono::Utc>,)> = sqlx::query_as(
                    "select coalesce(locked_until, next_attempt_at) as due from webhook_delivery \
                     where state = 'pending' and ($1 or endpoint_id is not null) order by due limit 1",
                )
                .bind(deployment)
                .fetch_optional(&self.pool)
                .await?;
                Ok(due.map(|(t,)| t))
            }

            async fn endpoint_secrets_not_sealed_by(
                &self,
                key_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::events::endpoints::EndpointSecrets>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    endpoint_secret_columns!(),
                    " from webhook_endpoint where key_id <> $1 or previous_key_id <> $1 order by id"
                ))
                .bind(key_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn reseal_endpoint_secrets(
                &self,
                old: &$crate::events::endpoints::EndpointSecrets,
                current: &$crate::crypto::Sealed,
                previous: Option<&$crate::crypto::Sealed>,
            ) -> $crate::store::StoreResult<bool> {
                // Only while the row still holds what was read (a rotation meanwhile wins).
                let done = sqlx::query(
                    "update webhook_endpoint set key_id = $3, nonce = $4, ciphertext = $5, \
                     previous_key_id = coalesce($6, previous_key_id), previous_nonce = coalesce($7, previous_nonce), \
                     previous_ciphertext = coalesce($8, previous_ciphertext) \
                     where id = $1 and nonce = $2 and (previous_nonce is null or previous_nonce = $9)",
                )
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
}

pub(super) use {endpoint_columns, endpoint_secret_columns, impl_webhook_store};
