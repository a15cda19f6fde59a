//! The steps every write is made of, run inside its transaction: begin and commit (with the
//! write's effects, see `effects.rs`), the audit entry, the outbox events, and the one change to
//! a connection that `Store::apply` and `Store::complete_session` share. Written once for both
//! backends by `impl_writes!`, which `postgres.rs` and `sqlite.rs` invoke.

/// Writes the shared write steps for a backend type with `pool` and `hooks` fields; `$db` is its
/// sqlx database, `notify` whether it tells other replicas (Postgres).
macro_rules! impl_writes {
    ($store:ty, $db:ty, notify: $notify:expr) => {
        const _: () = {
            use uuid::Uuid;

            use crate::audit::AuditContext;
            use crate::lifecycle::{Change, EventType};
            use crate::store::effects::Tx;
            use crate::store::sql::{self, connection, event, ConnectionWithToken};
            use crate::store::{now, Applied, Connection, Expect, NewConnection, Stale, StoreResult};

            impl $store {
                /// Starts a write.
                async fn begin(&self) -> StoreResult<Tx<$db>> {
                    Ok(Tx::new(self.pool.begin().await?))
                }

                /// Commits a write with its effects: the notices to the other replicas go out
                /// inside the transaction (Postgres `NOTIFY`, delivered at commit), this
                /// replica's caches and delivery worker hear after it.
                async fn commit(&self, tx: Tx<$db>) -> StoreResult<()> {
                    let (mut tx, effects) = tx.into_parts();
                    if $notify {
                        for stale in &effects.stale {
                            sqlx::query(sql::NOTIFY)
                                .bind(sql::INVALIDATION_CHANNEL)
                                .bind(stale.notice())
                                .execute(&mut *tx)
                                .await?;
                        }
                        if effects.events {
                            sqlx::query(sql::NOTIFY)
                                .bind(sql::EVENT_CHANNEL)
                                .bind("")
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    self.hooks.committed(&effects);
                    Ok(())
                }

                /// Writes one audit entry.
                async fn audit_in(
                    tx: &mut Tx<$db>,
                    tenant: &str,
                    connection_id: Option<Uuid>,
                    audit: &AuditContext,
                    outcome: &str,
                    detail: Option<&str>,
                ) -> StoreResult<()> {
                    sqlx::query(event::INSERT_AUDIT)
                        .bind(Uuid::now_v7())
                        .bind(tenant)
                        .bind(now())
                        .bind(audit.actor.kind())
                        .bind(audit.actor.id_text())
                        .bind(audit.actor.name())
                        .bind(audit.action.as_str())
                        .bind(connection_id)
                        .bind(outcome)
                        .bind(detail)
                        .bind(&audit.request_id)
                        .bind(&audit.client_addr)
                        .bind(&audit.caller_request_id)
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                }

                /// Writes the outbox rows of `events` about `connection`, with their deliveries.
                async fn events_in(
                    tx: &mut Tx<$db>,
                    connection: &Connection,
                    events: &[EventType],
                ) -> StoreResult<()> {
                    if events.is_empty() {
                        return Ok(());
                    }
                    let now = now();
                    let payload =
                        serde_json::to_value(connection.clone().with_current_status(now)).unwrap_or_default();
                    for event in events {
                        let event_id = Uuid::now_v7();
                        sqlx::query(event::INSERT)
                            .bind(event_id)
                            .bind(&connection.tenant)
                            .bind(event.as_str())
                            .bind(connection.id)
                            .bind(sqlx::types::Json(&payload))
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                        Self::fan_out_in(tx, &connection.tenant, event_id, event.as_str(), now).await?;
                    }
                    tx.recorded_events();
                    Ok(())
                }

                /// Inserts a connection with its `connection.created` event and audit entry;
                /// `None` (and nothing written) when its token is connected already.
                async fn insert_connection_in(
                    tx: &mut Tx<$db>,
                    new: &NewConnection,
                    audit: &AuditContext,
                    now: chrono::DateTime<chrono::Utc>,
                ) -> StoreResult<Option<Connection>> {
                    let c = &new.credentials;
                    let created: Option<Connection> = sqlx::query_as(connection::INSERT)
                        .bind(new.id)
                        .bind(&new.tenant)
                        .bind(&new.end_user_id)
                        .bind(&new.end_user_email)
                        .bind(&new.label)
                        .bind(sqlx::types::Json(&new.metadata))
                        .bind(&c.subdomain)
                        .bind(c.token_type)
                        .bind(&c.token_hint)
                        .bind(&c.token_fingerprint)
                        .bind(&c.sealed.key_id)
                        .bind(&c.sealed.nonce)
                        .bind(&c.sealed.ciphertext)
                        .bind(&c.identity.org_id)
                        .bind(&c.identity.user_email)
                        .bind(c.identity.token_expires_at)
                        .bind(now)
                        .bind(c.sealed.version)
                        .bind(&c.hex_url)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if let Some(connection) = &created {
                        Self::events_in(tx, connection, crate::lifecycle::CREATED.events).await?;
                        Self::audit_in(tx, &new.tenant, Some(connection.id), audit, "ok", None).await?;
                    }
                    Ok(created)
                }

                /// The heart of `Store::apply`, inside a transaction the caller commits (so that
                /// `complete_session` can claim its session in the same one).
                async fn apply_in(
                    tx: &mut Tx<$db>,
                    tenant: &str,
                    id: Uuid,
                    change: &Change<'_>,
                    audit: &AuditContext,
                    expect: &Expect,
                ) -> StoreResult<Applied> {
                    let now = now();
                    // A no-op write first: it takes the row lock (Postgres) or the write lock
                    // (SQLite), so the read below cannot be overtaken by another writer.
                    let locked = sqlx::query(connection::LOCK)
                        .bind(tenant)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if locked == 0 {
                        return Ok(Applied::Missing);
                    }
                    let row: ConnectionWithToken = sqlx::query_as(connection::WITH_TOKEN_BY_ID)
                        .bind(tenant)
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?;
                    // The stored status, not the one derived from the expiry: each event marks a
                    // stored change, so `connection.expired` is emitted by the write that stores
                    // `expired`.
                    let current = row.connection.status;
                    if expect.token_nonce.as_ref().is_some_and(|n| *n != row.nonce)
                        || expect.status.is_some_and(|s| s != current)
                    {
                        return Ok(Applied::Unmet(row.connection));
                    }
                    if let Change::Replaced(r) = change {
                        if !r.same_workspace(&row.connection) {
                            return Ok(Applied::WorkspaceMismatch(row.connection));
                        }
                    }
                    let t = crate::lifecycle::transition(current, change);
                    let after: Connection = match change {
                        Change::Verified(identity) => {
                            sqlx::query_as(connection::SET_VERIFIED)
                                .bind(tenant)
                                .bind(id)
                                .bind(&identity.org_id)
                                .bind(&identity.user_email)
                                .bind(identity.token_expires_at)
                                .bind(now)
                                .fetch_one(&mut **tx)
                                .await?
                        }
                        Change::Refused(reason) => {
                            sqlx::query_as(connection::SET_INVALID)
                                .bind(tenant)
                                .bind(id)
                                .bind(*reason)
                                .bind(now)
                                .fetch_one(&mut **tx)
                                .await?
                        }
                        Change::Expired if t.status != current => {
                            sqlx::query_as(connection::SET_EXPIRED)
                                .bind(tenant)
                                .bind(id)
                                .bind(crate::store::EXPIRED_REASON)
                                .bind(now)
                                .fetch_one(&mut **tx)
                                .await?
                        }
                        // Each token is warned about once: the mark (the fingerprint of the token
                        // warned about) is set here, in the event's own transaction.
                        Change::Expiring if !t.events.is_empty() => {
                            let marked = sqlx::query(connection::MARK_EXPIRY_WARNED)
                                .bind(tenant)
                                .bind(id)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            if marked == 0 {
                                return Ok(Applied::Unmet(row.connection));
                            }
                            row.connection.clone()
                        }
                        Change::Expired | Change::Expiring => row.connection.clone(),
                        Change::Replaced(r) => {
                            let c = &r.credentials;
                            let replaced: Result<Connection, sqlx::Error> =
                                sqlx::query_as(connection::REPLACE_TOKEN)
                                    .bind(tenant)
                                    .bind(id)
                                    .bind(&c.subdomain)
                                    .bind(c.token_type)
                                    .bind(&c.token_hint)
                                    .bind(&c.token_fingerprint)
                                    .bind(&c.sealed.key_id)
                                    .bind(&c.sealed.nonce)
                                    .bind(&c.sealed.ciphertext)
                                    .bind(&c.identity.org_id)
                                    .bind(&c.identity.user_email)
                                    .bind(c.identity.token_expires_at)
                                    .bind(now)
                                    .bind(c.sealed.version)
                                    .fetch_one(&mut **tx)
                                    .await;
                            match replaced {
                                Ok(c) => c,
                                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                                    return Ok(Applied::TokenTaken)
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Change::Updated(c) => {
                            sqlx::query_as(connection::UPDATE)
                                .bind(tenant)
                                .bind(id)
                                .bind(c.label.is_some())
                                .bind(c.label.clone().flatten())
                                .bind(c.metadata.is_some())
                                .bind(sqlx::types::Json(
                                    c.metadata.as_ref().unwrap_or(&serde_json::Value::Null),
                                ))
                                .bind(c.rate_limit_per_minute.is_some())
                                .bind(c.rate_limit_per_minute.flatten().map(|n| n as i32))
                                .bind(now)
                                .fetch_one(&mut **tx)
                                .await?
                        }
                        Change::Deleted => {
                            sqlx::query(connection::DELETE).bind(tenant).bind(id).execute(&mut **tx).await?;
                            row.connection.clone()
                        }
                    };
                    Self::events_in(tx, &after, t.events).await?;
                    let detail = (t.status != current).then(|| format!("{current} -> {}", t.status));
                    Self::audit_in(tx, tenant, Some(id), audit, "ok", detail.as_deref()).await?;
                    // Every change to a connection (status, token, settings, deletion) makes the
                    // cached target and its connection keys' callers stale.
                    tx.stale(Stale::Connection(id));
                    Ok(Applied::Done(after))
                }
            }
        };
    };
}

pub(super) use impl_writes;
