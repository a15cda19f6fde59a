//! The background token checks' storage (see `src/verify`): finding and claiming due work, and
//! the writes of a check that change no status (a status change, with its event and audit entry, goes through
//! `Store::apply` like every other).
//!
//! A claim is one `update … where <still due> and id in (select … limit n) returning`: the outer
//! condition is re-checked on the row a racing replica may just have changed (Postgres
//! re-evaluates it on the new row version; SQLite runs one writer at a time), so a row is never
//! claimed twice. On Postgres the inner select also skips rows another replica holds locked.
//! Expiry needs no claim here: `Store::apply` decides it (and the warning mark) in the event's
//! own transaction, so the lists below only say which rows to ask it about.
//!
//! No write here tells the caches (see `effects.rs`): what they change (schedules, identity,
//! `last_used_at`, an invalid connection's reason) is not what the hot path reads.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Connection, HexIdentity, StoreResult};
use crate::crypto::Sealed;

/// A connection due for a background check, with the sealed token to check.
#[derive(Debug)]
pub struct DueCheck {
    /// The connection as it was claimed.
    pub connection: Connection,
    /// Its sealed token (the nonce names the token: a replaced token has another).
    pub sealed: Sealed,
}

/// The background checks' operations, on either backend (a supertrait of [`super::Store`]).
#[async_trait::async_trait]
pub trait VerifyStore: Send + Sync {
    /// Connections with no check scheduled yet (new, or from before checks existed), with the
    /// time their token was last known good (or the row was made): at most `limit`.
    async fn unscheduled_checks(&self, limit: u32) -> StoreResult<Vec<(Uuid, DateTime<Utc>)>>;
    /// Sets when a connection is next checked; `only_unscheduled` leaves a scheduled one alone.
    async fn schedule_check(&self, id: Uuid, at: DateTime<Utc>, only_unscheduled: bool) -> StoreResult<()>;
    /// Claims up to `limit` invalid connections, and active ones whose token has not expired (those
    /// are the expiry round's), whose check is due at `now`, pushing
    /// their `next_verify_at` to `lease_until` (so a replica that dies mid-check leaves them to be
    /// claimed again then).
    async fn claim_due_checks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DueCheck>>;
    /// Records that Hex accepted the token sealed with `nonce` of an active connection, if it still
    /// holds that token and is still active: identity refreshed (where Hex told it), next check at
    /// `next` (if given). `None` when the row changed meanwhile (nothing written). No status
    /// changes, so no event: a reactivation goes through `Store::apply`.
    async fn record_check_passed(
        &self,
        id: Uuid,
        nonce: &[u8],
        identity: &HexIdentity,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Connection>>;
    /// Records that Hex still refuses the token sealed with `nonce` of an invalid connection, if it
    /// still holds it and is still invalid: the new `reason`, next check at `next` (if given).
    /// `None` when the row changed meanwhile. No status changes: an invalidation goes through
    /// `Store::apply`.
    async fn record_check_refused(
        &self,
        id: Uuid,
        nonce: &[u8],
        reason: &str,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<Connection>>;
    /// Up to `limit` active connections (tenant and id) whose token expires after `now` but by
    /// `horizon` and whose current token has not been warned about.
    async fn expiry_warnings_due(
        &self,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Uuid)>>;
    /// Up to `limit` connections (tenant and id) stored `active` whose token expired by `now`.
    async fn expiries_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<(String, Uuid)>>;
    /// Raises `last_used_at` to the given minute for each connection (never lowers it).
    async fn record_last_used(&self, marks: &[(Uuid, DateTime<Utc>)]) -> StoreResult<()>;
}

/// Why a connection is `expired` when its token passed its expiry.
pub const EXPIRED_REASON: &str = "The Hex token has passed its expiry date.";

/// Writes the [`VerifyStore`] implementation for a backend with `pool` and `hooks` fields (and the
/// steps of `impl_writes!`); `claim` is its due-check claim.
macro_rules! impl_verify_store {
    ($store:ty, claim: $claim:expr) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use crate::store::sql::{verify, ConnectionWithToken};
            use crate::store::{Connection, DueCheck, HexIdentity, StoreResult};

            #[async_trait::async_trait]
            impl crate::store::VerifyStore for $store {
                async fn unscheduled_checks(&self, limit: u32) -> StoreResult<Vec<(Uuid, DateTime<Utc>)>> {
                    Ok(sqlx::query_as(verify::UNSCHEDULED)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn schedule_check(
                    &self,
                    id: Uuid,
                    at: DateTime<Utc>,
                    only_unscheduled: bool,
                ) -> StoreResult<()> {
                    sqlx::query(verify::SCHEDULE)
                        .bind(id)
                        .bind(at)
                        .bind(only_unscheduled)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn claim_due_checks(
                    &self,
                    now: DateTime<Utc>,
                    lease_until: DateTime<Utc>,
                    limit: u32,
                ) -> StoreResult<Vec<DueCheck>> {
                    let rows: Vec<ConnectionWithToken> = sqlx::query_as($claim)
                        .bind(now)
                        .bind(lease_until)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|row| {
                            let (connection, sealed) = row.split();
                            DueCheck { connection, sealed }
                        })
                        .collect())
                }

                async fn record_check_passed(
                    &self,
                    id: Uuid,
                    nonce: &[u8],
                    identity: &HexIdentity,
                    next: Option<DateTime<Utc>>,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<Connection>> {
                    Ok(sqlx::query_as(verify::PASSED)
                        .bind(id)
                        .bind(nonce)
                        .bind(&identity.org_id)
                        .bind(&identity.user_email)
                        .bind(identity.token_expires_at)
                        .bind(next)
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn record_check_refused(
                    &self,
                    id: Uuid,
                    nonce: &[u8],
                    reason: &str,
                    next: Option<DateTime<Utc>>,
                ) -> StoreResult<Option<Connection>> {
                    Ok(sqlx::query_as(verify::REFUSED)
                        .bind(id)
                        .bind(nonce)
                        .bind(reason)
                        .bind(next)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn expiry_warnings_due(
                    &self,
                    now: DateTime<Utc>,
                    horizon: DateTime<Utc>,
                    limit: u32,
                ) -> StoreResult<Vec<(String, Uuid)>> {
                    Ok(sqlx::query_as(verify::EXPIRY_WARNINGS_DUE)
                        .bind(now)
                        .bind(horizon)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn expiries_due(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                ) -> StoreResult<Vec<(String, Uuid)>> {
                    Ok(sqlx::query_as(verify::EXPIRIES_DUE)
                        .bind(now)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn record_last_used(&self, marks: &[(Uuid, DateTime<Utc>)]) -> StoreResult<()> {
                    // One transaction per batch: one commit (one fsync) for the lot.
                    let mut tx = self.begin().await?;
                    for (id, minute) in marks {
                        sqlx::query(verify::MARK_LAST_USED).bind(id).bind(minute).execute(&mut *tx).await?;
                    }
                    self.commit(tx).await
                }
            }
        };
    };
}

pub(super) use impl_verify_store;
