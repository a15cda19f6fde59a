//! The request log's storage (§11, see `src/requestlog`): batches of entries written in one
//! transaction with the hourly counts they add to, the filtered lists, the counts a connection
//! shows, and pruning in small batches.
//!
//! Ids are UUID v7 made from `at` (see [`id_bound`]), so id order is time order: lists page by
//! id, `since`/`until` are id bounds on the same index, and pruning deletes id ranges off the
//! primary key, a thousand rows at a time, so no statement holds its locks for long.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

/// One proxied call as recorded (never a token, key, query string, header value or body).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RequestRecord {
    /// The entry's id (UUID v7 of `at`).
    pub id: Uuid,
    /// The tenant of the caller (not shown: callers only see their own).
    #[serde(skip)]
    pub tenant: String,
    /// The connection called.
    pub connection_id: Uuid,
    /// When the call started.
    pub at: DateTime<Utc>,
    /// The HTTP method.
    pub method: String,
    /// The Hex API path (below `/api`), without the query string.
    pub path: String,
    /// The status the caller got.
    pub status: i32,
    /// `hex` (relayed) or `hexbroker` (hexbroker's own answer).
    pub answered_by: String,
    /// hexbroker's error code, when hexbroker answered.
    pub code: Option<String>,
    /// From the start of the call to the end of the answer's body (or to hexbroker's refusal).
    pub duration_ms: i64,
    /// The time Hex took to send its response head, when Hex was reached.
    pub hex_duration_ms: Option<i64>,
    /// Retries the call made.
    pub retries: i32,
    /// `proxy`, `api` or `mcp`.
    pub via: String,
    /// The id of the API key or connection key used (never the key).
    pub key_id: Option<Uuid>,
    /// The `x-request-id` the caller got back.
    pub request_id: Option<String>,
}

/// One proxied call to write: a [`RequestRecord`] borrowed from the request log's queued entry,
/// so the writer copies no string into a row of its own.
#[derive(Debug, Clone, Copy)]
pub struct NewRequest<'a> {
    /// The entry's id (UUID v7 of `at`).
    pub id: Uuid,
    /// The tenant of the caller.
    pub tenant: &'a str,
    /// The connection called.
    pub connection_id: Uuid,
    /// When the call started.
    pub at: DateTime<Utc>,
    /// The HTTP method.
    pub method: &'a str,
    /// The Hex API path (below `/api`), without the query string.
    pub path: &'a str,
    /// The status the caller got.
    pub status: i32,
    /// `hex` or `hexbroker`.
    pub answered_by: &'static str,
    /// hexbroker's error code, when hexbroker answered.
    pub code: Option<&'static str>,
    /// From the start of the call to the end of the answer's body.
    pub duration_ms: i64,
    /// The time Hex took to send its response head, when Hex was reached.
    pub hex_duration_ms: Option<i64>,
    /// Retries the call made.
    pub retries: i32,
    /// `proxy`, `api` or `mcp`.
    pub via: &'static str,
    /// The id of the key used.
    pub key_id: Option<Uuid>,
    /// The `x-request-id` the caller got back.
    pub request_id: Option<&'a str>,
}

/// What one connection's calls in one hour add to its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The connection.
    pub connection_id: Uuid,
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// Calls.
    pub calls: i64,
    /// Calls that got a status of 400 or more.
    pub errors: i64,
    /// The start of the latest of those.
    pub last_error_at: Option<DateTime<Utc>>,
}

/// A connection's recent calls, as its object shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Calls in the current hour and the 23 before it.
    pub calls_24h: i64,
    /// Of those, the ones that got a status of 400 or more.
    pub errors_24h: i64,
    /// The start of the latest call that got 400 or more (within the log's retention).
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The `status` filter: one code, or a class (`4` for `4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Code(u16),
    /// Any status of this hundred (1 to 5).
    Class(u16),
}

/// Which entries to list (all within one tenant), newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this connection's.
    pub connection_id: Option<Uuid>,
    /// Only these statuses.
    pub status: Option<StatusFilter>,
    /// Only those answered by `hex` or `hexbroker`.
    pub answered_by: Option<&'static str>,
    /// Only those that came this way (`proxy`, `api`, `mcp`).
    pub via: Option<&'static str>,
    /// Only ids from this one on (the `since` bound).
    pub from_id: Option<Uuid>,
    /// Only ids before this one (the cursor, or the `until` bound).
    pub before_id: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// The smallest UUID v7 of millisecond `at`: every entry made at `at` or later has an id at least
/// this, every one made earlier an id below it.
pub fn id_bound(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// A fresh id for an entry that started at `at` (UUID v7, random below the milliseconds).
pub fn id_at(at: DateTime<Utc>) -> Uuid {
    id_with(at, u64::from_le_bytes(crate::crypto::random_bytes::<8>()))
}

/// The UUID v7 of `at` with `random` below the milliseconds.
pub fn id_with(at: DateTime<Utc>, random: u64) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0; 10];
    bytes[2..].copy_from_slice(&random.to_le_bytes());
    bytes[..2].copy_from_slice(&random.rotate_left(17).to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

/// The request log's operations, on either backend (a supertrait of [`super::Store`]).
#[async_trait::async_trait]
pub trait RequestLogStore: Send + Sync {
    /// Writes `entries` and adds `counts` to the hourly counts, atomically.
    async fn insert_requests(&self, entries: &[NewRequest<'_>], counts: &[HourCount]) -> StoreResult<()>;
    /// A page of `tenant`'s entries, newest first.
    async fn list_requests(&self, tenant: &str, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>>;
    /// The counts of each of `ids` that has any, counting calls in hours from `since` on.
    async fn request_counts(
        &self,
        ids: &[Uuid],
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, RequestCounts)>>;
    /// Deletes up to `limit` of the oldest entries with ids below `before`; returns how many.
    async fn prune_requests(&self, before: Uuid, limit: u32) -> StoreResult<u64>;
    /// The oldest id to keep so that at most `max_rows` entries remain; `None` when there are no
    /// more than that.
    async fn requests_kept_from(&self, max_rows: u64) -> StoreResult<Option<Uuid>>;
    /// Deletes hourly counts of hours before `before`; returns how many.
    async fn prune_request_counts(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// Columns of a [`RequestRecord`], in its field order.
macro_rules! request_columns {
    () => {
        "id, tenant, connection_id, at, method, path, status, answered_by, code, duration_ms, \
         hex_duration_ms, retries, via, key_id, request_id"
    };
}

/// What a batch adds to the hourly counts: calls and errors added, the later `last_error_at` kept.
macro_rules! add_to_counts {
    () => {
        " on conflict (connection_id, hour) do update set \
         calls = request_count.calls + excluded.calls, \
         errors = request_count.errors + excluded.errors, \
         last_error_at = case when request_count.last_error_at is null \
         or request_count.last_error_at < excluded.last_error_at \
         then excluded.last_error_at else request_count.last_error_at end"
    };
}

/// The statement that writes a batch on Postgres: the entries as 15 arrays (one per column) and
/// the counts they add as 5 more, in one statement (the entries' insert is a data-modifying
/// `with`, which runs once whether or not it is read), so a batch is atomic without a
/// transaction's `begin` and `commit` round trips. Its text is the same for every batch size, so
/// each pooled connection prepares it once.
const INSERT_BATCH_POSTGRES: &str = concat!(
    "with logged as (insert into request_log (",
    request_columns!(),
    ") select * from unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[], $5::text[], \
     $6::text[], $7::int4[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int4[], \
     $13::text[], $14::uuid[], $15::text[])) \
     insert into request_count (connection_id, hour, calls, errors, last_error_at) \
     select * from unnest($16::uuid[], $17::timestamptz[], $18::int8[], $19::int8[], $20::timestamptz[])",
    add_to_counts!()
);

/// Writes a batch on Postgres in one statement (see [`INSERT_BATCH_POSTGRES`]).
pub(super) async fn insert_batch_postgres(
    pool: &sqlx::PgPool,
    entries: &[NewRequest<'_>],
    counts: &[HourCount],
) -> StoreResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    use super::pgarray::{Element, PgArray};
    let n = entries.len();
    let mut id = PgArray::new(Element::Uuid, n, 16);
    let mut tenant = PgArray::new(Element::Text, n, 16);
    let mut connection_id = PgArray::new(Element::Uuid, n, 16);
    let mut at = PgArray::new(Element::Timestamptz, n, 8);
    let mut method = PgArray::new(Element::Text, n, 6);
    let mut path = PgArray::new(Element::Text, n, 64);
    let mut status = PgArray::new(Element::Int4, n, 4);
    let mut answered_by = PgArray::new(Element::Text, n, 9);
    let mut code = PgArray::new(Element::Text, n, 0);
    let mut duration_ms = PgArray::new(Element::Int8, n, 8);
    let mut hex_duration_ms = PgArray::new(Element::Int8, n, 8);
    let mut retries = PgArray::new(Element::Int4, n, 4);
    let mut via = PgArray::new(Element::Text, n, 5);
    let mut key_id = PgArray::new(Element::Uuid, n, 16);
    let mut request_id = PgArray::new(Element::Text, n, 36);
    for e in entries {
        id.uuid(e.id);
        tenant.text(e.tenant);
        connection_id.uuid(e.connection_id);
        at.timestamptz(e.at);
        method.text(e.method);
        path.text(e.path);
        status.int4(e.status);
        answered_by.text(e.answered_by);
        code.or_null(e.code, PgArray::text);
        duration_ms.int8(e.duration_ms);
        hex_duration_ms.or_null(e.hex_duration_ms, PgArray::int8);
        retries.int4(e.retries);
        via.text(e.via);
        key_id.or_null(e.key_id, PgArray::uuid);
        request_id.or_null(e.request_id, PgArray::text);
    }
    let m = counts.len();
    let mut count_id = PgArray::new(Element::Uuid, m, 16);
    let mut hour = PgArray::new(Element::Timestamptz, m, 8);
    let mut calls = PgArray::new(Element::Int8, m, 8);
    let mut errors = PgArray::new(Element::Int8, m, 8);
    let mut last_error_at = PgArray::new(Element::Timestamptz, m, 8);
    for c in counts {
        count_id.uuid(c.connection_id);
        hour.timestamptz(c.hour);
        calls.int8(c.calls);
        errors.int8(c.errors);
        last_error_at.or_null(c.last_error_at, PgArray::timestamptz);
    }
    sqlx::query(INSERT_BATCH_POSTGRES)
        .bind(id)
        .bind(tenant)
        .bind(connection_id)
        .bind(at)
        .bind(method)
        .bind(path)
        .bind(status)
        .bind(answered_by)
        .bind(code)
        .bind(duration_ms)
        .bind(hex_duration_ms)
        .bind(retries)
        .bind(via)
        .bind(key_id)
        .bind(request_id)
        .bind(count_id)
        .bind(hour)
        .bind(calls)
        .bind(errors)
        .bind(last_error_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Writes a batch on SQLite in one transaction: multi-row inserts of 500 rows (SQLite has no
/// arrays to bind), not prepared for reuse (each batch size is another statement).
pub(super) async fn insert_batch_sqlite(
    pool: &sqlx::SqlitePool,
    entries: &[NewRequest<'_>],
    counts: &[HourCount],
) -> StoreResult<()> {
    const ROWS: usize = 500;
    let mut tx = pool.begin().await?;
    for chunk in entries.chunks(ROWS) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
            "insert into request_log (",
            request_columns!(),
            ") "
        ));
        q.push_values(chunk, |mut row, e| {
            row.push_bind(e.id)
                .push_bind(e.tenant)
                .push_bind(e.connection_id)
                .push_bind(e.at)
                .push_bind(e.method)
                .push_bind(e.path)
                .push_bind(e.status)
                .push_bind(e.answered_by)
                .push_bind(e.code)
                .push_bind(e.duration_ms)
                .push_bind(e.hex_duration_ms)
                .push_bind(e.retries)
                .push_bind(e.via)
                .push_bind(e.key_id)
                .push_bind(e.request_id);
        });
        q.build().persistent(false).execute(&mut *tx).await?;
    }
    for chunk in counts.chunks(ROWS) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into request_count (connection_id, hour, calls, errors, last_error_at) ",
        );
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.connection_id)
                .push_bind(c.hour)
                .push_bind(c.calls)
                .push_bind(c.errors)
                .push_bind(c.last_error_at);
        });
        q.push(add_to_counts!());
        q.build().persistent(false).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes the [`RequestLogStore`] implementation for a backend with a `pool` field; `$db` is its
/// sqlx database type.
macro_rules! impl_request_log_store {
    ($store:ty, $db:ty, batch: $insert_batch:path) => {
        #[async_trait::async_trait]
        impl $crate::store::RequestLogStore for $store {
            async fn insert_requests(
                &self,
                entries: &[$crate::store::NewRequest<'_>],
                counts: &[$crate::store::HourCount],
            ) -> $crate::store::StoreResult<()> {
                $insert_batch(&self.pool, entries, counts).await
            }

            async fn list_requests(
                &self,
                tenant: &str,
                filter: &$crate::store::RequestFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRecord>> {
                // Built to fit the filter, so each backend plans the statement it runs (a
                // `$n is null or …` clause would hide the index a filter could use).
                let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                    "select ",
                    request_columns!(),
                    " from request_log where tenant = "
                ));
                q.push_bind(tenant);
                if let Some(id) = filter.connection_id {
                    q.push(" and connection_id = ").push_bind(id);
                }
                match filter.status {
                    Some($crate::store::StatusFilter::Code(code)) => {
                        q.push(" and status = ").push_bind(i32::from(code));
                    }
                    Some($crate::store::StatusFilter::Class(class)) => {
                        let low = i32::from(class).saturating_mul(100);
                        q.push(" and status >= ").push_bind(low);
                        q.push(" and status < ").push_bind(low.saturating_add(100));
                    }
                    None => {}
                }
                if let Some(answered_by) = filter.answered_by {
                    q.push(" and answered_by = ").push_bind(answered_by);
                }
                if let Some(via) = filter.via {
                    q.push(" and via = ").push_bind(via);
                }
                if let Some(id) = filter.from_id {
                    q.push(" and id >= ").push_bind(id);
                }
                if let Some(id) = filter.before_id {
                    q.push(" and id < ").push_bind(id);
                }
                q.push(" order by id desc limit ").push_bind(i64::from(filter.limit));
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn request_counts(
                &self,
                ids: &[uuid::Uuid],
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, $crate::store::RequestCounts)>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "select connection_id, cast(coalesce(sum(case when hour >= ",
                );
                q.push_bind(since);
                q.push(" then calls else 0 end), 0) as bigint), cast(coalesce(sum(case when hour >= ");
                q.push_bind(since);
                q.push(
                    " then errors else 0 end), 0) as bigint), max(last_error_at) \
                     from request_count where connection_id in (",
                );
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                q.push(") group by connection_id");
                let rows: Vec<(uuid::Uuid, i64, i64, Option<chrono::DateTime<chrono::Utc>>)> =
                    q.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, calls_24h, errors_24h, last_error_at)| {
                        (id, $crate::store::RequestCounts { calls_24h, errors_24h, last_error_at })
                    })
                    .collect())
            }

            async fn prune_requests(
                &self,
                before: uuid::Uuid,
                limit: u32,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "delete from request_log where id in \
                     (select id from request_log where id < $1 order by id limit $2)",
                )
                .bind(before)
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn requests_kept_from(&self, max_rows: u64) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                // The hourly counts say how many entries each hour holds (they are written in the
                // same transaction as the entries), so the hour where the cap falls is found
                // without reading the log; then only that hour's entries are read.
                let hours: Vec<(chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
                    "select hour, cast(sum(calls) as bigint) from request_count group by hour order by hour desc",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut newer: u64 = 0;
                for (hour, calls) in hours {
                    let calls = u64::try_from(calls).unwrap_or(0);
                    if newer.saturating_add(calls) <= max_rows {
                        newer = newer.saturating_add(calls);
                        continue;
                    }
                    let next_hour = hour + chrono::TimeDelta::hours(1);
                    let keep = max_rows.saturating_sub(newer);
                    if keep == 0 {
                        return Ok(Some($crate::store::id_bound(next_hour)));
                    }
                    let offset = i64::try_from(keep - 1).unwrap_or(i64::MAX);
                    let newest_kept: Option<uuid::Uuid> = sqlx::query_scalar(
                        "select id from request_log where id >= $1 and id < $2 order by id desc limit 1 offset $3",
                    )
                    .bind($crate::store::id_bound(hour))
                    .bind($crate::store::id_bound(next_hour))
                    .bind(offset)
                    .fetch_optional(&self.pool)
                    .await?;
                    // Fewer entries than counted (some were pruned by age): the hour fits whole.
                    return Ok(Some(newest_kept.unwrap_or_else(|| $crate::store::id_bound(hour))));
                }
                Ok(None)
            }

            async fn prune_request_counts(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query("delete from request_count where hour < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use {impl_request_log_store, request_columns};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_bound_sits_between_the_ids_of_the_millisecond_before_and_its_own() {
        let at = DateTime::from_timestamp_millis(1_800_000_000_123).unwrap();
        let before = DateTime::from_timestamp_millis(1_800_000_000_122).unwrap();
        for _ in 0..100 {
            assert!(id_at(before) < id_bound(at));
            assert!(id_at(at) >= id_bound(at));
            assert_eq!(id_at(at).get_version_num(), 7);
        }
    }
}
