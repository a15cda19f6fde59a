//! The watchers' storage (see `src/watch`): finding and claiming due work, and the writes of a
//! check that change no status (a status change, with its event and audit entry, goes through
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

/// The watchers' operations, on either backend (a supertrait of [`super::Store`]).
#[async_trait::async_trait]
pub trait WatchStore: Send + Sync {
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

/// Writes the [`WatchStore`] implementation for a backend with a `pool` field; `$skip_locked` is
/// appended to the inner select of each claim (Postgres: `for update skip locked`).
macro_rules! impl_watch_store {
    ($store:ty, $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::WatchStore for $store {
            async fn unscheduled_checks(
                &self,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)>> {
                Ok(sqlx::query_as(
                    "select id, coalesce(last_verified_at, created_at) from connection \
                     where next_verify_at is null limit $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn schedule_check(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                only_unscheduled: bool,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update connection set next_verify_at = $2 \
                     where id = $1 and (not $3 or next_verify_at is null)",
                )
                .bind(id)
                .bind(at)
                .bind(only_unscheduled)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn claim_due_checks(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DueCheck>> {
                let rows: Vec<$crate::store::sql::ConnectionWithToken> = sqlx::query_as(concat!(
                    "update connection set next_verify_at = $2 \
                     where next_verify_at <= $1 and (status = 'invalid' or (status = 'active' \
                     and (token_expires_at is null or token_expires_at > $1))) and id in (\
                     select id from connection where next_verify_at <= $1 and (status = 'invalid' \
                     or (status = 'active' and (token_expires_at is null or token_expires_at > $1))) \
                     order by next_verify_at limit $3",
                    $skip_locked,
                    ") returning ",
                    connection_columns!(),
                    ", key_id, nonce, ciphertext, seal_version"
                ))
                .bind(now)
                .bind(lease_until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::store::DueCheck {
                        connection: r.connection,
                        sealed: $crate::crypto::Sealed {
                            key_id: r.key_id,
                            nonce: r.nonce,
                            ciphertext: r.ciphertext,
                            version: r.seal_version,
                        },
                    })
                    .collect())
            }

            async fn record_check_passed(
                &self,
                id: uuid::Uuid,
                nonce: &[u8],
                identity: &$crate::store::HexIdentity,
                next: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set \
                     hex_org_id = coalesce($3, hex_org_id), hex_user_email = coalesce($4, hex_user_email), \
                     token_expires_at = coalesce($5, token_expires_at), last_verified_at = $7, \
                     next_verify_at = coalesce($6, next_verify_at) \
                     where id = $1 and nonce = $2 and status = 'active' returning ",
                    connection_columns!()
                ))
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
                id: uuid::Uuid,
                nonce: &[u8],
                reason: &str,
                next: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set status_reason = $3, next_verify_at = coalesce($4, next_verify_at) \
                     where id = $1 and nonce = $2 and status = 'invalid' returning ",
                    connection_columns!()
                ))
                .bind(id)
                .bind(nonce)
                .bind(reason)
                .bind(next)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn expiry_warnings_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                horizon: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<(String, uuid::Uuid)>> {
                Ok(sqlx::query_as(
                    "select tenant, id from connection where status = 'active' \
                     and token_expires_at > $1 and token_expires_at <= $2 \
                     and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint) \
                     order by token_expires_at limit $3",
                )
                .bind(now)
                .bind(horizon)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn expiries_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<(String, uuid::Uuid)>> {
                Ok(sqlx::query_as(
                    "select tenant, id from connection where status = 'active' and token_expires_at <= $1 \
                     order by token_expires_at limit $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_last_used(
                &self,
                marks: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
            ) -> $crate::store::StoreResult<()> {
                // One transaction per batch: one commit (one fsync) for the lot.
                let mut tx = self.begin().await?;
                for (id, minute) in marks {
                    sqlx::query(
                        "update connection set last_used_at = $2 \
                         where id = $1 and (last_used_at is null or last_used_at < $2)",
                    )
                    .bind(id)
                    .bind(minute)
                    .execute(&mut *tx)
                    .await?;
                }
                self.commit(tx).await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_watch_store;
