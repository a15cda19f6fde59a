//! The [`Store`](super::Store) implementation both backends share, written once by
//! `impl_store!`: each operation binds its statement from `sql/` and runs it on the backend's
//! pool (reads) or inside a write (see `writes.rs`), and says next to a write what it made stale
//! (see `effects.rs`). `postgres.rs` and `sqlite.rs` add what differs: how events and other
//! replicas' notices are heard.

/// Writes `impl Store` for a backend type with `pool` and `hooks` fields (and the steps of
/// `impl_writes!`); `$extra` holds the backend's own methods.
macro_rules! impl_store {
    ($store:ty, { $($extra:tt)* }) => {
        const _: () = {
            use std::sync::Arc;

            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use crate::audit::{AuditContext, AuditEntry, AuditFilter};
            use crate::crypto::{Sealed, SEAL_V1, SEAL_V2, SEAL_V3};
            use crate::events::{EventFilter, EventRecord, EventState};
            use crate::lifecycle::{Change, Status};
            use crate::store::sql::{api_key, connection, event, secret, session, ConnectionWithToken, PING};
            use crate::store::{
                now, ApiKey, Applied, Connection, ConnectionFilter, Expect, Inserted, NewApiKey, NewConnection,
                NewSession, Reseal, SealedToken, Session, SessionOutcome, SessionWrite, Stale, StoreResult,
            };

            #[async_trait::async_trait]
            impl crate::store::Store for $store {
                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query(PING).execute(&self.pool).await?;
                    Ok(())
                }

                async fn sealed_secret(&self, name: &str) -> StoreResult<Option<Sealed>> {
                    let row: Option<(String, Vec<u8>, Vec<u8>)> =
                        sqlx::query_as(secret::BY_NAME).bind(name).fetch_optional(&self.pool).await?;
                    Ok(row.map(|(key_id, nonce, ciphertext)| Sealed { key_id, nonce, ciphertext, version: SEAL_V1 }))
                }

                async fn insert_sealed_secret_if_absent(&self, name: &str, sealed: &Sealed) -> StoreResult<()> {
                    sqlx::query(secret::INSERT_IF_ABSENT)
                        .bind(name)
                        .bind(&sealed.key_id)
                        .bind(&sealed.nonce)
                        .bind(&sealed.ciphertext)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn reseal_secret(&self, name: &str, old: &Sealed, new: &Sealed) -> StoreResult<bool> {
                    let done = sqlx::query(secret::RESEAL)
                        .bind(name)
                        .bind(&old.nonce)
                        .bind(&new.key_id)
                        .bind(&new.nonce)
                        .bind(&new.ciphertext)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn tokens_not_sealed_by(
                    &self,
                    key_id: &str,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> StoreResult<Vec<SealedToken>> {
                    // The current seal version: 3 for a row with its own Hex origin, else 2.
                    type Row = (Uuid, String, String, Option<String>, String, Vec<u8>, Vec<u8>, i16);
                    let rows: Vec<Row> = sqlx::query_as(connection::TOKENS_NOT_SEALED_BY)
                        .bind(key_id)
                        .bind(after)
                        .bind(i64::from(limit))
                        .bind(SEAL_V2)
                        .bind(SEAL_V3)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, tenant, subdomain, hex_url, key_id, nonce, ciphertext, version)| SealedToken {
                            id,
                            tenant,
                            subdomain,
                            hex_url,
                            sealed: Sealed { key_id, nonce, ciphertext, version },
                        })
                        .collect())
                }

                async fn count_tokens_not_sealed_by(&self, key_id: &str) -> StoreResult<i64> {
                    Ok(sqlx::query_scalar(connection::COUNT_TOKENS_NOT_SEALED_BY)
                        .bind(key_id)
                        .bind(SEAL_V2)
                        .bind(SEAL_V3)
                        .fetch_one(&self.pool)
                        .await?)
                }

                /// No cache notice: a re-sealed token is the same token, and a cached entry sealed
                /// by the older key still opens for as long as this process holds that key
                /// (dropping the key from `HEXBROKER_ENCRYPTION_KEYS` means a restart, with empty
                /// caches). One notice per row would be 100,000 notices for a big table, each
                /// emptying a cache entry on every replica.
                async fn reseal_tokens(&self, batch: &[Reseal]) -> StoreResult<u64> {
                    let mut tx = self.begin().await?;
                    let mut done = 0;
                    for reseal in batch {
                        done += sqlx::query(connection::RESEAL_TOKEN)
                            .bind(reseal.id)
                            .bind(&reseal.old.nonce)
                            .bind(&reseal.new.key_id)
                            .bind(&reseal.new.nonce)
                            .bind(&reseal.new.ciphertext)
                            .bind(reseal.new.version)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                    self.commit(tx).await?;
                    Ok(done)
                }

                async fn insert_api_key(&self, key: &NewApiKey, audit: &AuditContext) -> StoreResult<ApiKey> {
                    let mut tx = self.begin().await?;
                    let created: ApiKey = sqlx::query_as(api_key::INSERT)
                        .bind(key.id)
                        .bind(&key.tenant)
                        .bind(&key.name)
                        .bind(&key.prefix)
                        .bind(&key.hash)
                        .bind(key.scopes.to_string())
                        .bind(key.connection_id)
                        .bind(now())
                        .bind(key.expires_at)
                        .fetch_one(&mut *tx)
                        .await?;
                    let detail = format!("key {}", created.id);
                    Self::audit_in(&mut tx, &key.tenant, key.connection_id, audit, "ok", Some(&detail)).await?;
                    self.commit(tx).await?;
                    Ok(created)
                }

                async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ApiKey>> {
                    Ok(sqlx::query_as(api_key::BY_HASH).bind(hash).fetch_optional(&self.pool).await?)
                }

                async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
                    Ok(sqlx::query_as(api_key::LIST).fetch_all(&self.pool).await?)
                }

                async fn revoke_api_key(&self, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
                    let mut tx = self.begin().await?;
                    let revoked: Option<(String, Option<Uuid>)> =
                        sqlx::query_as(api_key::REVOKE).bind(id).bind(now()).fetch_optional(&mut *tx).await?;
                    let Some((tenant, connection_id)) = revoked else {
                        // Revoked already, perhaps by another process (which cannot reach this
                        // one's caches on SQLite): any copy here goes all the same.
                        self.hooks.forget(Stale::Key(id));
                        return Ok(false);
                    };
                    tx.stale(Stale::Key(id));
                    let detail = format!("key {id}");
                    Self::audit_in(&mut tx, &tenant, connection_id, audit, "ok", Some(&detail)).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn revoke_connection_key(
                    &self,
                    tenant: &str,
                    connection_id: Uuid,
                    key_id: Uuid,
                    audit: &AuditContext,
                ) -> StoreResult<bool> {
                    let mut tx = self.begin().await?;
                    let done = sqlx::query(api_key::REVOKE_CONNECTION_KEY)
                        .bind(key_id)
                        .bind(tenant)
                        .bind(connection_id)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        // As in `revoke_api_key`: any copy here goes all the same.
                        self.hooks.forget(Stale::Key(key_id));
                        return Ok(false);
                    }
                    tx.stale(Stale::Key(key_id));
                    let detail = format!("key {key_id}");
                    Self::audit_in(&mut tx, tenant, Some(connection_id), audit, "ok", Some(&detail)).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn insert_connection(&self, new: &NewConnection, audit: &AuditContext) -> StoreResult<Inserted> {
                    let mut tx = self.begin().await?;
                    if let Some(connection) = Self::insert_connection_in(&mut tx, new, audit, now()).await? {
                        self.commit(tx).await?;
                        return Ok(Inserted::Created(connection));
                    }
                    drop(tx);
                    // Lost a race with an identical connect, or a repeat: the row is there.
                    let existing = self
                        .connection_by_fingerprint(
                            &new.tenant,
                            &new.end_user_id,
                            &new.credentials.subdomain,
                            &new.credentials.token_fingerprint,
                        )
                        .await?
                        .ok_or(sqlx::Error::RowNotFound)?;
                    Ok(Inserted::Existing(existing))
                }

                async fn connection_by_fingerprint(
                    &self,
                    tenant: &str,
                    end_user_id: &str,
                    subdomain: &str,
                    fingerprint: &[u8],
                ) -> StoreResult<Option<Connection>> {
                    Ok(sqlx::query_as(connection::BY_FINGERPRINT)
                        .bind(tenant)
                        .bind(end_user_id)
                        .bind(subdomain)
                        .bind(fingerprint)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn connection(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Connection>> {
                    Ok(sqlx::query_as(connection::BY_ID).bind(tenant).bind(id).fetch_optional(&self.pool).await?)
                }

                async fn connection_with_token(
                    &self,
                    tenant: &str,
                    id: Uuid,
                ) -> StoreResult<Option<Arc<(Connection, Sealed)>>> {
                    let row: Option<ConnectionWithToken> = sqlx::query_as(connection::WITH_TOKEN_BY_ID)
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| Arc::new(r.split())))
                }

                async fn list_connections(&self, tenant: &str, filter: &ConnectionFilter) -> StoreResult<Vec<Connection>> {
                    Ok(sqlx::query_as(connection::LIST)
                        .bind(tenant)
                        .bind(&filter.end_user_id)
                        .bind(filter.before_id)
                        .bind(&filter.status)
                        .bind(now())
                        .bind(i64::from(filter.limit))
                        .bind(&filter.subdomain)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn apply(
                    &self,
                    tenant: &str,
                    id: Uuid,
                    change: &Change<'_>,
                    audit: &AuditContext,
                    expect: &Expect,
                ) -> StoreResult<Applied> {
                    let mut tx = self.begin().await?;
                    let applied = Self::apply_in(&mut tx, tenant, id, change, audit, expect).await?;
                    if matches!(applied, Applied::Done(_)) {
                        self.commit(tx).await?;
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
                    let mut tx = self.begin().await?;
                    Self::audit_in(&mut tx, tenant, connection_id, audit, outcome, None).await?;
                    self.commit(tx).await
                }

                async fn count_connections_by_status(&self) -> StoreResult<Vec<(Status, i64)>> {
                    Ok(sqlx::query_as(connection::COUNT_BY_STATUS).bind(now()).fetch_all(&self.pool).await?)
                }

                async fn insert_session(&self, new: &NewSession, audit: &AuditContext) -> StoreResult<Session> {
                    let mut tx = self.begin().await?;
                    let session: Session = sqlx::query_as(session::INSERT)
                        .bind(new.id)
                        .bind(&new.tenant)
                        .bind(&new.token_hash)
                        .bind(&new.end_user_id)
                        .bind(&new.end_user_email)
                        .bind(new.connection_id)
                        .bind(new.created_by_key)
                        .bind(new.expires_at)
                        .bind(now())
                        .fetch_one(&mut *tx)
                        .await?;
                    let detail = format!("session {}", session.id);
                    Self::audit_in(&mut tx, &new.tenant, new.connection_id, audit, "ok", Some(&detail)).await?;
                    self.commit(tx).await?;
                    Ok(session)
                }

                async fn session_by_hash(&self, hash: &[u8]) -> StoreResult<Option<Session>> {
                    Ok(sqlx::query_as(session::BY_HASH).bind(hash).fetch_optional(&self.pool).await?)
                }

                async fn complete_session(
                    &self,
                    session: &Session,
                    write: &SessionWrite,
                    origin: Option<&str>,
                    audit: &AuditContext,
                ) -> StoreResult<SessionOutcome> {
                    let now = now();
                    let mut tx = self.begin().await?;
                    // The claim comes first, so the row lock (Postgres) or write lock (SQLite) it
                    // takes makes a racing request wait here and then find the session used.
                    let claimed = sqlx::query(session::CLAIM)
                        .bind(session.id)
                        .bind(now)
                        .bind(origin)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if !claimed {
                        return Ok(SessionOutcome::Unavailable);
                    }
                    let outcome = match write {
                        SessionWrite::Create(new) => match Self::insert_connection_in(&mut tx, new, audit, now).await? {
                            Some(connection) => SessionOutcome::Created(connection),
                            None => SessionOutcome::Existing(
                                sqlx::query_as(connection::BY_FINGERPRINT)
                                    .bind(&new.tenant)
                                    .bind(&new.end_user_id)
                                    .bind(&new.credentials.subdomain)
                                    .bind(&new.credentials.token_fingerprint)
                                    .fetch_one(&mut *tx)
                                    .await?,
                            ),
                        },
                        SessionWrite::Replace(r) => {
                            let change = Change::Replaced(r);
                            match Self::apply_in(&mut tx, &session.tenant, r.id, &change, audit, &Expect::default())
                                .await?
                            {
                                Applied::Done(connection) => SessionOutcome::Replaced(connection),
                                Applied::TokenTaken => return Ok(SessionOutcome::TokenTaken),
                                Applied::WorkspaceMismatch(_) => return Ok(SessionOutcome::WorkspaceMismatch),
                                _ => return Ok(SessionOutcome::ConnectionGone),
                            }
                        }
                    };
                    let result_id = match &outcome {
                        SessionOutcome::Created(c) | SessionOutcome::Existing(c) | SessionOutcome::Replaced(c) => c.id,
                        _ => unreachable!("only written outcomes reach here"),
                    };
                    sqlx::query(session::SET_RESULT).bind(session.id).bind(result_id).execute(&mut *tx).await?;
                    self.commit(tx).await?;
                    Ok(outcome)
                }

                async fn list_events(&self, tenant: &str, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
                    Ok(sqlx::query_as(event::LIST)
                        .bind(tenant)
                        .bind(&filter.kind)
                        .bind(filter.connection_id)
                        .bind(filter.state.map(EventState::as_str))
                        .bind(filter.before_id)
                        .bind(i64::from(filter.limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn redeliver_event(&self, tenant: &str, id: Uuid, audit: &AuditContext) -> StoreResult<bool> {
                    let now = now();
                    let mut tx = self.begin().await?;
                    let queued: Option<(Uuid,)> = sqlx::query_as(event::REQUEUE)
                        .bind(tenant)
                        .bind(id)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some((connection_id,)) = queued else { return Ok(false) };
                    sqlx::query(event::REQUEUE_DELIVERIES).bind(id).bind(now).execute(&mut *tx).await?;
                    tx.recorded_events();
                    let detail = format!("event {id}");
                    let connection_id = Some(connection_id).filter(|c| !c.is_nil());
                    Self::audit_in(&mut tx, tenant, connection_id, audit, "ok", Some(&detail)).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn list_audit(&self, tenant: &str, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
                    Ok(sqlx::query_as(event::LIST_AUDIT)
                        .bind(tenant)
                        .bind(filter.connection_id)
                        .bind(&filter.action)
                        .bind(&filter.actor)
                        .bind(filter.before_id)
                        .bind(i64::from(filter.limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn prune(&self, before: DateTime<Utc>) -> StoreResult<u64> {
                    let audit = sqlx::query(event::PRUNE_AUDIT).bind(before).execute(&self.pool).await?.rows_affected();
                    let events =
                        sqlx::query(event::PRUNE_DELIVERED).bind(before).execute(&self.pool).await?.rows_affected();
                    Ok(audit + events)
                }

                $($extra)*
            }
        };
    };
}

pub(super) use impl_store;
