//! The SQL that both backends run. `impl_store!` writes the one `Store` implementation for a
//! backend type with a `pool` field; the pool's type picks the driver, so every statement below
//! runs (and is tested) on Postgres and on SQLite alike.

/// The columns of a [`Connection`](super::Connection), in its field order.
macro_rules! connection_columns {
    () => {
        "id, tenant, end_user_id, end_user_email, label, metadata, subdomain, hex_url, token_type, token_hint, \
         hex_org_id, hex_user_email, token_expires_at, status, status_reason, last_verified_at, \
         created_at, updated_at, rate_limit_per_minute, next_verify_at, last_used_at"
    };
}

/// The columns of an [`ApiKey`](super::ApiKey).
macro_rules! api_key_columns {
    () => {
        "id, tenant, name, prefix, scopes, connection_id, created_at, expires_at, revoked_at"
    };
}

/// The columns of a [`Session`](super::Session).
macro_rules! session_columns {
    () => {
        "id, tenant, end_user_id, end_user_email, connection_id, expires_at, used_at, created_at"
    };
}

/// Inserts a connection unless its token is already connected (then returns no row).
macro_rules! insert_connection_sql {
    () => {
        concat!(
            "insert into connection (id, tenant, end_user_id, end_user_email, label, metadata, subdomain, \
             token_type, token_hint, token_fingerprint, key_id, nonce, ciphertext, hex_org_id, \
             hex_user_email, token_expires_at, status, last_verified_at, created_at, updated_at, seal_version, \
             hex_url) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'active', $17, $17, $17, $18, \
             $19) \
             on conflict (tenant, end_user_id, subdomain, token_fingerprint) do nothing returning ",
            connection_columns!()
        )
    };
}

/// Binds a `NewConnection` and the time to `insert_connection_sql!`.
macro_rules! bind_new_connection {
    ($query:expr, $new:expr, $now:expr) => {
        $query
            .bind($new.id)
            .bind(&$new.tenant)
            .bind(&$new.end_user_id)
            .bind(&$new.end_user_email)
            .bind(&$new.label)
            .bind(sqlx::types::Json(&$new.metadata))
            .bind(&$new.subdomain)
            .bind($new.token_type)
            .bind(&$new.token_hint)
            .bind(&$new.token_fingerprint)
            .bind(&$new.sealed.key_id)
            .bind(&$new.sealed.nonce)
            .bind(&$new.sealed.ciphertext)
            .bind(&$new.identity.org_id)
            .bind(&$new.identity.user_email)
            .bind($new.identity.token_expires_at)
            .bind($now)
            .bind($new.sealed.version)
            .bind(&$new.hex_url)
    };
}

/// The channel on which replicas tell each other which cached entries are stale.
pub(super) const INVALIDATION_CHANNEL: &str = "hexbroker_invalidate";
/// The channel that wakes every replica's delivery worker when an event is recorded.
pub(super) const EVENT_CHANNEL: &str = "hexbroker_events";

/// One audit entry.
pub(super) const INSERT_AUDIT: &str =
    "insert into audit_event (id, tenant, created_at, actor_type, actor_id, \
     actor_name, action, connection_id, outcome, detail, request_id, client_addr, caller_request_id) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// One outbox row, due at once.
pub(super) const INSERT_EVENT: &str =
    "insert into event (id, tenant, type, connection_id, payload, created_at, \
     state, attempts, next_attempt_at, queued_at) values ($1, $2, $3, $4, $5, $6, 'pending', 0, $6, $6)";

/// A connection row with its sealed token.
#[derive(sqlx::FromRow)]
pub(super) struct ConnectionWithToken {
    #[sqlx(flatten)]
    pub connection: super::Connection,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub seal_version: i16,
}

macro_rules! impl_store {
    ($store:ty, $db:ty, notify: $notify:expr $(, { $($extra:tt)* })?) => {
        impl $store {
            /// Starts a write; see [`Tx`](crate::store::effects::Tx).
            async fn begin(&self) -> $crate::store::StoreResult<$crate::store::effects::Tx<$db>> {
                Ok($crate::store::effects::Tx::new(self.pool.begin().await?))
            }

            /// Commits a write with its effects: the notices to the other replicas go out inside
            /// the transaction (Postgres `NOTIFY`, delivered at commit), this replica's caches
            /// and delivery worker hear after it.
            async fn commit(&self, tx: $crate::store::effects::Tx<$db>) -> $crate::store::StoreResult<()> {
                let (mut tx, effects) = tx.into_parts();
                if $notify {
                    for stale in &effects.stale {
                        sqlx::query("select pg_notify($1, $2)")
                            .bind($crate::store::sql::INVALIDATION_CHANNEL)
                            .bind(stale.notice())
                            .execute(&mut *tx)
                            .await?;
                    }
                    if effects.events {
                        sqlx::query("select pg_notify($1, '')")
                            .bind($crate::store::sql::EVENT_CHANNEL)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                self.hooks.committed(&effects);
                Ok(())
            }

            /// Writes one audit entry inside `tx`.
            async fn audit_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                tenant: &str,
                connection_id: Option<uuid::Uuid>,
                audit: &$crate::audit::AuditContext,
                outcome: &str,
                detail: Option<&str>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query($crate::store::sql::INSERT_AUDIT)
                    .bind(uuid::Uuid::now_v7())
                    .bind(tenant)
                    .bind($crate::store::now())
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

            /// Writes the outbox rows of `events` about `connection` inside `tx`.
            async fn events_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                connection: &$crate::store::Connection,
                events: &[$crate::lifecycle::EventType],
            ) -> $crate::store::StoreResult<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let now = $crate::store::now();
                let payload = serde_json::to_value(connection.clone().with_current_status(now))
                    .unwrap_or_default();
                for event in events {
                    let event_id = uuid::Uuid::now_v7();
                    sqlx::query($crate::store::sql::INSERT_EVENT)
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

            /// The heart of `Store::apply`, inside a transaction the caller commits (so that
            /// `complete_session` can claim its session in the same one).
            async fn apply_in(
                tx: &mut $crate::store::effects::Tx<$db>,
                tenant: &str,
                id: uuid::Uuid,
                change: &$crate::lifecycle::Change<'_>,
                audit: &$crate::audit::AuditContext,
                expect: &$crate::store::Expect,
            ) -> $crate::store::StoreResult<$crate::store::Applied> {
                use $crate::lifecycle::Change;
                use $crate::store::Applied;
                let now = $crate::store::now();
                // A no-op write first: it takes the row lock (Postgres) or the write lock
                // (SQLite), so the read below cannot be overtaken by another writer.
                let locked = sqlx::query("update connection set updated_at = updated_at where tenant = $1 and id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if locked == 0 {
                    return Ok(Applied::Missing);
                }
                let row: $crate::store::sql::ConnectionWithToken = sqlx::query_as(concat!(
                    "select ",
                    connection_columns!(),
                    ", key_id, nonce, ciphertext, seal_version from connection where tenant = $1 and id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut **tx)
                .await?;
                // The stored status, not the one derived from the expiry: each event marks a stored
                // change, so `connection.expired` is emitted by the write that stores `expired`.
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
                let t = $crate::lifecycle::transition(current, change);
                let after: $crate::store::Connection = match change {
                    Change::Verified(identity) => sqlx::query_as(concat!(
                        "update connection set status = 'active', status_reason = null, hex_org_id = $3, \
                         hex_user_email = $4, token_expires_at = $5, last_verified_at = $6, updated_at = $6 \
                         where tenant = $1 and id = $2 returning ",
                        connection_columns!()
                    ))
                    .bind(tenant)
                    .bind(id)
                    .bind(&identity.org_id)
                    .bind(&identity.user_email)
                    .bind(identity.token_expires_at)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?,
                    Change::Refused(reason) => sqlx::query_as(concat!(
                        "update connection set status = 'invalid', status_reason = $3, updated_at = $4 \
                         where tenant = $1 and id = $2 returning ",
                        connection_columns!()
                    ))
                    .bind(tenant)
                    .bind(id)
                    .bind(*reason)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?,
                    Change::Expired if t.status != current => {
                        sqlx::query_as(concat!(
                            "update connection set status = 'expired', status_reason = $3, updated_at = $4 \
                             where tenant = $1 and id = $2 returning ",
                            connection_columns!()
                        ))
                        .bind(tenant)
                        .bind(id)
                        .bind("The Hex token has passed its expiry date.")
                        .bind(now)
                        .fetch_one(&mut **tx)
                        .await?
                    }
                    // Each token is warned about once: the mark (the fingerprint of the token
                    // warned about) is set here, in the event's own transaction.
                    Change::Expiring if !t.events.is_empty() => {
                        let marked = sqlx::query(
                            "update connection set expiry_warned_for = token_fingerprint \
                             where tenant = $1 and id = $2 \
                             and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint)",
                        )
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
                        let replaced: Result<$crate::store::Connection, sqlx::Error> = sqlx::query_as(concat!(
                            "update connection set subdomain = $3, token_type = $4, token_hint = $5, \
                             token_fingerprint = $6, key_id = $7, nonce = $8, ciphertext = $9, hex_org_id = $10, \
                             hex_user_email = $11, token_expires_at = $12, status = 'active', status_reason = null, \
                             last_verified_at = $13, updated_at = $13, seal_version = $14 where tenant = $1 and id = $2 returning ",
                            connection_columns!()
                        ))
                        .bind(tenant)
                        .bind(id)
                        .bind(&r.subdomain)
                        .bind(r.token_type)
                        .bind(&r.token_hint)
                        .bind(&r.token_fingerprint)
                        .bind(&r.sealed.key_id)
                        .bind(&r.sealed.nonce)
                        .bind(&r.sealed.ciphertext)
                        .bind(&r.identity.org_id)
                        .bind(&r.identity.user_email)
                        .bind(r.identity.token_expires_at)
                        .bind(now)
                        .bind(r.sealed.version)
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
                    Change::Updated(c) => sqlx::query_as(concat!(
                        "update connection set                          label = case when $3 then $4 else label end,                          metadata = case when $5 then $6 else metadata end,                          rate_limit_per_minute = case when $7 then $8 else rate_limit_per_minute end,                          updated_at = $9                          where tenant = $1 and id = $2 returning ",
                        connection_columns!()
                    ))
                    .bind(tenant)
                    .bind(id)
                    .bind(c.label.is_some())
                    .bind(c.label.clone().flatten())
                    .bind(c.metadata.is_some())
                    .bind(sqlx::types::Json(c.metadata.as_ref().unwrap_or(&serde_json::Value::Null)))
                    .bind(c.rate_limit_per_minute.is_some())
                    .bind(c.rate_limit_per_minute.flatten().map(|n| n as i32))
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?,
                    Change::Deleted => {
                        sqlx::query("delete from connection where tenant = $1 and id = $2")
                            .bind(tenant)
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                        row.connection.clone()
                    }
                };
                Self::events_in(tx, &after, t.events).await?;
                let detail = (t.status != current).then(|| format!("{current} -> {}", t.status));
                Self::audit_in(tx, tenant, Some(id), audit, "ok", detail.as_deref()).await?;
                tx.stale($crate::store::Stale::Connection(id));
                Ok(Applied::Done(after))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn sealed_secret(&self, name: &str) -> $crate::store::StoreResult<Option<$crate::crypto::Sealed>> {
                let row: Option<(String, Vec<u8>, Vec<u8>)> =
                    sqlx::query_as("select key_id, nonce, ciphertext from sealed_secret where name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(key_id, nonce, ciphertext)| $crate::crypto::Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                    version: $crate::crypto::SEAL_V1,
                }))
            }

            async fn insert_sealed_secret_if_absent(
                &self,
                name: &str,
                sealed: &$crate::crypto::Sealed,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "insert into sealed_secret (name, key_id, nonce, ciphertext) values ($1, $2, $3, $4) \
                     on conflict (name) do nothing",
                )
                .bind(name)
                .bind(&sealed.key_id)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn reseal_secret(
                &self,
                name: &str,
                old: &$crate::crypto::Sealed,
                new: &$crate::crypto::Sealed,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update sealed_secret set key_id = $3, nonce = $4, ciphertext = $5 \
                     where name = $1 and nonce = $2",
                )
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
                after: Option<uuid::Uuid>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SealedToken>> {
                // The current seal version: 3 for a row with its own Hex origin, else 2.
                let rows: Vec<(uuid::Uuid, String, String, Option<String>, String, Vec<u8>, Vec<u8>, i16)> = sqlx::query_as(
                    "select id, tenant, subdomain, hex_url, key_id, nonce, ciphertext, seal_version from connection \
                     where (key_id <> $1 or seal_version <> case when hex_url is null then $4 else $5 end) \
                     and ($2 is null or id > $2) order by id limit $3",
                )
                .bind(key_id)
                .bind(after)
                .bind(i64::from(limit))
                .bind($crate::crypto::SEAL_V2)
                .bind($crate::crypto::SEAL_V3)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, tenant, subdomain, hex_url, key_id, nonce, ciphertext, version)| $crate::store::SealedToken {
                        id,
                        tenant,
                        subdomain,
                        hex_url,
                        sealed: $crate::crypto::Sealed { key_id, nonce, ciphertext, version },
                    })
                    .collect())
            }

            async fn count_tokens_not_sealed_by(&self, key_id: &str) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "select count(*) from connection where key_id <> $1 \
                     or seal_version <> case when hex_url is null then $2 else $3 end",
                )
                    .bind(key_id)
                    .bind($crate::crypto::SEAL_V2)
                    .bind($crate::crypto::SEAL_V3)
                    .fetch_one(&self.pool)
                    .await?)
            }

            /// No cache notice: a re-sealed token is the same token, and a cached entry sealed by
            /// the older key still opens for as long as this process holds that key (dropping the
            /// key from `HEXBROKER_ENCRYPTION_KEYS` means a restart, with empty caches). One notice
            /// per row would be 100,000 notices for a big table, each emptying a cache entry on
            /// every replica.
            async fn reseal_tokens(&self, batch: &[$crate::store::Reseal]) -> $crate::store::StoreResult<u64> {
                let mut tx = self.begin().await?;
                let mut done = 0;
                for reseal in batch {
                    done += sqlx::query(
                        "update connection set key_id = $3, nonce = $4, ciphertext = $5, seal_version = $6 \
                         where id = $1 and nonce = $2",
                    )
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

            async fn insert_api_key(
                &self,
                key: &$crate::store::NewApiKey,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<$crate::store::ApiKey> {
                let mut tx = self.begin().await?;
                let created: $crate::store::ApiKey = sqlx::query_as(concat!(
                    "insert into api_key (id, tenant, name, prefix, hash, scopes, connection_id, created_at, expires_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ",
                    api_key_columns!()
                ))
                .bind(key.id)
                .bind(&key.tenant)
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.hash)
                .bind(key.scopes.to_string())
                .bind(key.connection_id)
                .bind($crate::store::now())
                .bind(key.expires_at)
                .fetch_one(&mut *tx)
                .await?;
                let detail = format!("key {}", created.id);
                Self::audit_in(&mut tx, &key.tenant, key.connection_id, audit, "ok", Some(&detail)).await?;
                self.commit(tx).await?;
                Ok(created)
            }

            async fn api_key_by_hash(&self, hash: &[u8]) -> $crate::store::StoreResult<Option<$crate::store::ApiKey>> {
                Ok(sqlx::query_as(concat!("select ", api_key_columns!(), " from api_key where hash = $1"))
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_api_keys(&self) -> $crate::store::StoreResult<Vec<$crate::store::ApiKey>> {
                Ok(sqlx::query_as(concat!("select ", api_key_columns!(), " from api_key order by created_at desc, id desc"))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn revoke_api_key(
                &self,
                id: uuid::Uuid,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.begin().await?;
                let revoked: Option<(String, Option<uuid::Uuid>)> = sqlx::query_as(
                    "update api_key set revoked_at = $2 where id = $1 and revoked_at is null                      returning tenant, connection_id",
                )
                .bind(id)
                .bind($crate::store::now())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((tenant, connection_id)) = revoked else {
                    // Revoked already, perhaps by another process (which cannot reach this one's
                    // caches on SQLite): any copy here goes all the same.
                    self.hooks.forget($crate::store::Stale::Key(id));
                    return Ok(false);
                };
                tx.stale($crate::store::Stale::Key(id));
                let detail = format!("key {id}");
                Self::audit_in(&mut tx, &tenant, connection_id, audit, "ok", Some(&detail)).await?;
                self.commit(tx).await?;
                Ok(true)
            }

            async fn revoke_connection_key(
                &self,
                tenant: &str,
                connection_id: uuid::Uuid,
                key_id: uuid::Uuid,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "update api_key set revoked_at = $4 \
                     where id = $1 and tenant = $2 and connection_id = $3 and revoked_at is null",
                )
                .bind(key_id)
                .bind(tenant)
                .bind(connection_id)
                .bind($crate::store::now())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    // As for `revoke_api_key`: any copy here goes all the same.
                    self.hooks.forget($crate::store::Stale::Key(key_id));
                    return Ok(false);
                }
                tx.stale($crate::store::Stale::Key(key_id));
                let detail = format!("key {key_id}");
                Self::audit_in(&mut tx, tenant, Some(connection_id), audit, "ok", Some(&detail)).await?;
                self.commit(tx).await?;
                Ok(true)
            }

            async fn insert_connection(
                &self,
                new: &$crate::store::NewConnection,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<$crate::store::Inserted> {
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                let created: Option<$crate::store::Connection> =
                    bind_new_connection!(sqlx::query_as(insert_connection_sql!()), new, now)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(connection) = created {
                    Self::events_in(&mut tx, &connection, $crate::lifecycle::CREATED.events).await?;
                    Self::audit_in(&mut tx, &new.tenant, Some(connection.id), audit, "ok", None).await?;
                    self.commit(tx).await?;
                    return Ok($crate::store::Inserted::Created(connection));
                }
                drop(tx);
                // Lost a race with an identical connect, or a repeat: the row is there.
                let existing = self
                    .connection_by_fingerprint(&new.tenant, &new.end_user_id, &new.subdomain, &new.token_fingerprint)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?;
                Ok($crate::store::Inserted::Existing(existing))
            }

            async fn connection_by_fingerprint(
                &self,
                tenant: &str,
                end_user_id: &str,
                subdomain: &str,
                fingerprint: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    connection_columns!(),
                    " from connection where tenant = $1 and end_user_id = $2 and subdomain = $3 and token_fingerprint = $4"
                ))
                .bind(tenant)
                .bind(end_user_id)
                .bind(subdomain)
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn connection(&self, tenant: &str, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!("select ", connection_columns!(), " from connection where tenant = $1 and id = $2"))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn connection_with_token(
                &self,
                tenant: &str,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<std::sync::Arc<($crate::store::Connection, $crate::crypto::Sealed)>>> {
                let row: Option<$crate::store::sql::ConnectionWithToken> = sqlx::query_as(concat!(
                    "select ",
                    connection_columns!(),
                    ", key_id, nonce, ciphertext, seal_version from connection where tenant = $1 and id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| {
                    let sealed = $crate::crypto::Sealed {
                        key_id: r.key_id,
                        nonce: r.nonce,
                        ciphertext: r.ciphertext,
                        version: r.seal_version,
                    };
                    std::sync::Arc::new((r.connection, sealed))
                }))
            }

            async fn list_connections(
                &self,
                tenant: &str,
                filter: &$crate::store::ConnectionFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "select ",
                    connection_columns!(),
                    " from connection where tenant = $1 \
                     and ($2 is null or end_user_id = $2) \
                     and ($3 is null or id < $3) \
                     and ($4 is null \
                          or ($4 = 'active' and status = 'active' and (token_expires_at is null or token_expires_at > $5)) \
                          or ($4 = 'expired' and (status = 'expired' or (status = 'active' and token_expires_at <= $5))) \
                          or ($4 = 'invalid' and status = 'invalid')) \
                     and ($7 is null or subdomain = $7) \
                     order by id desc limit $6"
                ))
                .bind(tenant)
                .bind(&filter.end_user_id)
                .bind(filter.before_id)
                .bind(&filter.status)
                .bind($crate::store::now())
                .bind(i64::from(filter.limit))
                .bind(&filter.subdomain)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn apply(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                change: &$crate::lifecycle::Change<'_>,
                audit: &$crate::audit::AuditContext,
                expect: &$crate::store::Expect,
            ) -> $crate::store::StoreResult<$crate::store::Applied> {
                let mut tx = self.begin().await?;
                let applied = Self::apply_in(&mut tx, tenant, id, change, audit, expect).await?;
                if matches!(applied, $crate::store::Applied::Done(_)) {
                    self.commit(tx).await?;
                }
                Ok(applied)
            }

            async fn record_audit(
                &self,
                tenant: &str,
                connection_id: Option<uuid::Uuid>,
                audit: &$crate::audit::AuditContext,
                outcome: &str,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::audit_in(&mut tx, tenant, connection_id, audit, outcome, None).await?;
                self.commit(tx).await?;
                Ok(())
            }

            async fn count_connections_by_status(&self) -> $crate::store::StoreResult<Vec<($crate::lifecycle::Status, i64)>> {
                Ok(sqlx::query_as(
                    "select case when status = 'active' and token_expires_at <= $1 then 'expired' else status end as s, \
                     count(*) from connection group by s",
                )
                .bind($crate::store::now())
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_session(
                &self,
                new: &$crate::store::NewSession,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<$crate::store::Session> {
                let mut tx = self.begin().await?;
                let session: $crate::store::Session = sqlx::query_as(concat!(
                    "insert into connect_session (id, tenant, token_hash, end_user_id, end_user_email, connection_id, \
                     created_by_key, expires_at, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ",
                    session_columns!()
                ))
                .bind(new.id)
                .bind(&new.tenant)
                .bind(&new.token_hash)
                .bind(&new.end_user_id)
                .bind(&new.end_user_email)
                .bind(new.connection_id)
                .bind(new.created_by_key)
                .bind(new.expires_at)
                .bind($crate::store::now())
                .fetch_one(&mut *tx)
                .await?;
                let detail = format!("session {}", session.id);
                Self::audit_in(&mut tx, &new.tenant, new.connection_id, audit, "ok", Some(&detail)).await?;
                self.commit(tx).await?;
                Ok(session)
            }

            async fn session_by_hash(&self, hash: &[u8]) -> $crate::store::StoreResult<Option<$crate::store::Session>> {
                Ok(sqlx::query_as(concat!("select ", session_columns!(), " from connect_session where token_hash = $1"))
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn complete_session(
                &self,
                session: &$crate::store::Session,
                write: &$crate::store::SessionWrite,
                origin: Option<&str>,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<$crate::store::SessionOutcome> {
                use $crate::store::{SessionOutcome, SessionWrite};
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                // The claim comes first, so the row lock (Postgres) or write lock (SQLite) it
                // takes makes a racing request wait here and then find the session used.
                let claimed = sqlx::query(
                    "update connect_session set used_at = $2, used_origin = $3 \
                     where id = $1 and used_at is null and expires_at > $2",
                )
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
                    SessionWrite::Create(new) => {
                        let created: Option<$crate::store::Connection> =
                            bind_new_connection!(sqlx::query_as(insert_connection_sql!()), new, now)
                                .fetch_optional(&mut *tx)
                                .await?;
                        match created {
                            Some(connection) => {
                                Self::events_in(&mut tx, &connection, $crate::lifecycle::CREATED.events).await?;
                                Self::audit_in(&mut tx, &session.tenant, Some(connection.id), audit, "ok", None).await?;
                                SessionOutcome::Created(connection)
                            }
                            None => SessionOutcome::Existing(
                                sqlx::query_as(concat!(
                                    "select ",
                                    connection_columns!(),
                                    " from connection where tenant = $1 and end_user_id = $2 and subdomain = $3 \
                                     and token_fingerprint = $4"
                                ))
                                .bind(&new.tenant)
                                .bind(&new.end_user_id)
                                .bind(&new.subdomain)
                                .bind(&new.token_fingerprint)
                                .fetch_one(&mut *tx)
                                .await?,
                            ),
                        }
                    }
                    SessionWrite::Replace(r) => {
                        let change = $crate::lifecycle::Change::Replaced(r);
                        let expect = $crate::store::Expect::default();
                        match Self::apply_in(&mut tx, &session.tenant, r.id, &change, audit, &expect).await? {
                            $crate::store::Applied::Done(connection) => SessionOutcome::Replaced(connection),
                            $crate::store::Applied::TokenTaken => return Ok(SessionOutcome::TokenTaken),
                            $crate::store::Applied::WorkspaceMismatch(_) => {
                                return Ok(SessionOutcome::WorkspaceMismatch)
                            }
                            _ => return Ok(SessionOutcome::ConnectionGone),
                        }
                    }
                };
                let result_id = match &outcome {
                    SessionOutcome::Created(c) | SessionOutcome::Existing(c) | SessionOutcome::Replaced(c) => c.id,
                    _ => unreachable!("only written outcomes reach here"),
                };
                sqlx::query("update connect_session set result_connection_id = $2 where id = $1")
                    .bind(session.id)
                    .bind(result_id)
                    .execute(&mut *tx)
                    .await?;
                self.commit(tx).await?;
                Ok(outcome)
            }

            async fn list_events(
                &self,
                tenant: &str,
                filter: &$crate::events::EventFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::events::EventRecord>> {
                Ok(sqlx::query_as(
                    "select id, type, connection_id, created_at, state, attempts, next_attempt_at, last_error \
                     from event where tenant = $1 and type <> 'webhook.test' and ($2 is null or type = $2) \
                     and ($3 is null or connection_id = $3) and ($4 is null or state = $4) \
                     and ($5 is null or id < $5) order by id desc limit $6",
                )
                .bind(tenant)
                .bind(&filter.kind)
                .bind(filter.connection_id)
                .bind(filter.state.map($crate::events::EventState::as_str))
                .bind(filter.before_id)
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn redeliver_event(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                audit: &$crate::audit::AuditContext,
            ) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let mut tx = self.begin().await?;
                let queued: Option<(uuid::Uuid,)> = sqlx::query_as(
                    "update event set state = 'pending', attempts = 0, next_attempt_at = $3, queued_at = $3, \
                     locked_until = null where tenant = $1 and id = $2 returning connection_id",
                )
                .bind(tenant)
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((connection_id,)) = queued else { return Ok(false) };
                sqlx::query(
                    "update webhook_delivery set state = 'pending', attempts = 0, next_attempt_at = $2, queued_at = $2, \
                     locked_until = null, delivered_at = null where event_id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let detail = format!("event {id}");
                let connection_id = Some(connection_id).filter(|c| !c.is_nil());
                Self::audit_in(&mut tx, tenant, connection_id, audit, "ok", Some(&detail)).await?;
                tx.recorded_events();
                self.commit(tx).await?;
                Ok(true)
            }

            async fn list_audit(
                &self,
                tenant: &str,
                filter: &$crate::audit::AuditFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::audit::AuditEntry>> {
                Ok(sqlx::query_as(
                    "select id, created_at, actor_type, actor_id, actor_name, action, connection_id, outcome, \
                     detail, request_id, caller_request_id, client_addr, tenant from audit_event where tenant = $1 \
                     and ($2 is null or connection_id = $2) and ($3 is null or action = $3) \
                     and ($4 is null or actor_id = $4) and ($5 is null or id < $5) order by id desc limit $6",
                )
                .bind(tenant)
                .bind(filter.connection_id)
                .bind(&filter.action)
                .bind(&filter.actor)
                .bind(filter.before_id)
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn prune(&self, before: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<u64> {
                let audit = sqlx::query("delete from audit_event where created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                let events = sqlx::query("delete from event where state = 'delivered' and created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(audit + events)
            }

            $($($extra)*)?
        }
    };
}

pub(super) use {
    api_key_columns, bind_new_connection, connection_columns, impl_store, insert_connection_sql,
    session_columns,
};
