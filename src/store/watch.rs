//! The watchers' storage (see `src/watch`): claiming due background checks and expiry work with
//! conditional updates, so that with several replicas on one database each piece of work is done
//! by exactly one of them; and the batched `last_used_at` flush.
//!
//! Every claim below is one `update … where <still due> and id in (select … limit n) returning`:
//! the outer condition is re-checked on the row a racing replica may just have changed (Postgres
//! re-evaluates it on the new row version; SQLite runs one writer at a time), so a row is never
//! claimed twice. On Postgres the inner select also skips rows another replica holds locked.

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
    /// Records that Hex accepted the token sealed with `nonce`, if the connection still holds
    /// that token and still has status `from`: active, identity refreshed, next check at `next` (if given).
    /// `None` when the row changed meanwhile (nothing written).
    async fn record_check_passed(
        &self,
        id: Uuid,
        nonce: &[u8],
        from: &str,
        identity: &HexIdentity,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Connection>>;
    /// Records that Hex refused the token sealed with `nonce`, if the connection still holds it
    /// and is still `from`: invalid with `reason`, next check at `next` (if given). `None` when the row
    /// changed meanwhile (nothing written).
    async fn record_check_refused(
        &self,
        id: Uuid,
        nonce: &[u8],
        from: &str,
        reason: &str,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Connection>>;
    /// Claims up to `limit` active connections whose token expires after `now` but by `horizon`
    /// and whose current token has not been warned about, marking it warned.
    async fn claim_expiry_warnings(
        &self,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Connection>>;
    /// Marks up to `limit` active connections whose token expired by `now` as `expired`, and
    /// returns them (each exactly once, whatever the number of replicas).
    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Connection>>;
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
                    ", key_id, nonce, ciphertext"
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
                        sealed: $crate::crypto::Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext },
                    })
                    .collect())
            }

            async fn record_check_passed(
                &self,
                id: uuid::Uuid,
                nonce: &[u8],
                from: &str,
                identity: &$crate::store::HexIdentity,
                next: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set status = 'active', status_reason = null, \
                     hex_org_id = coalesce($4, hex_org_id), hex_user_email = coalesce($5, hex_user_email), \
                     token_expires_at = coalesce($6, token_expires_at), last_verified_at = $8, \
                     next_verify_at = coalesce($7, next_verify_at), \
                     updated_at = case when status = 'active' then updated_at else $8 end \
                     where id = $1 and nonce = $2 and status = $3 returning ",
                    connection_columns!()
                ))
                .bind(id)
                .bind(nonce)
                .bind(from)
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
                from: &str,
                reason: &str,
                next: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set status = 'invalid', status_reason = $4, next_verify_at = coalesce($5, next_verify_at), \
                     updated_at = case when status = 'invalid' then updated_at else $6 end \
                     where id = $1 and nonce = $2 and status = $3 returning ",
                    connection_columns!()
                ))
                .bind(id)
                .bind(nonce)
                .bind(from)
                .bind(reason)
                .bind(next)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn claim_expiry_warnings(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                horizon: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set expiry_warned_for = token_fingerprint \
                     where status = 'active' and token_expires_at > $1 and token_expires_at <= $2 \
                     and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint) \
                     and id in (select id from connection where status = 'active' \
                     and token_expires_at > $1 and token_expires_at <= $2 \
                     and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint) \
                     order by token_expires_at limit $3",
                    $skip_locked,
                    ") returning ",
                    connection_columns!()
                ))
                .bind(now)
                .bind(horizon)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn expire_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set status = 'expired', status_reason = $2, updated_at = $1 \
                     where status = 'active' and token_expires_at <= $1 and id in (\
                     select id from connection where status = 'active' and token_expires_at <= $1 \
                     order by token_expires_at limit $3",
                    $skip_locked,
                    ") returning ",
                    connection_columns!()
                ))
                .bind(now)
                .bind($crate::store::EXPIRED_REASON)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_last_used(
                &self,
                marks: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
            ) -> $crate::store::StoreResult<()> {
                // One transaction per batch: one commit (one fsync) for the lot.
                let mut tx = self.pool.begin().await?;
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
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_watch_store;
