//! The SQL that both backends run. `impl_store!` writes the one `Store` implementation for a
//! backend type with a `pool` field; the pool's type picks the driver, so every statement below
//! runs (and is tested) on Postgres and on SQLite alike.

/// The columns of a [`Connection`](super::Connection), in its field order.
macro_rules! connection_columns {
    () => {
        "id, tenant, end_user_id, end_user_email, label, metadata, subdomain, token_type, token_hint, \
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
             hex_user_email, token_expires_at, status, last_verified_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'active', $17, $17, $17) \
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
    };
}

/// A connection row with its sealed token.
#[derive(sqlx::FromRow)]
pub(super) struct ConnectionWithToken {
    #[sqlx(flatten)]
    pub connection: super::Connection,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

macro_rules! impl_store {
    ($store:ty $(, { $($extra:tt)* })?) => {
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
                Ok(row.map(|(key_id, nonce, ciphertext)| $crate::crypto::Sealed { key_id, nonce, ciphertext }))
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
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, $crate::crypto::Sealed)>> {
                let rows: Vec<(uuid::Uuid, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
                    "select id, key_id, nonce, ciphertext from connection \
                     where key_id <> $1 and ($2 is null or id > $2) order by id limit $3",
                )
                .bind(key_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, key_id, nonce, ciphertext)| (id, $crate::crypto::Sealed { key_id, nonce, ciphertext }))
                    .collect())
            }

            async fn count_tokens_not_sealed_by(&self, key_id: &str) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar("select count(*) from connection where key_id <> $1")
                    .bind(key_id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn reseal_token(
                &self,
                id: uuid::Uuid,
                old: &$crate::crypto::Sealed,
                new: &$crate::crypto::Sealed,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update connection set key_id = $3, nonce = $4, ciphertext = $5 where id = $1 and nonce = $2",
                )
                .bind(id)
                .bind(&old.nonce)
                .bind(&new.key_id)
                .bind(&new.nonce)
                .bind(&new.ciphertext)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_api_key(&self, key: &$crate::store::NewApiKey) -> $crate::store::StoreResult<$crate::store::ApiKey> {
                Ok(sqlx::query_as(concat!(
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
                .fetch_one(&self.pool)
                .await?)
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

            async fn revoke_api_key(&self, id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("update api_key set revoked_at = $2 where id = $1 and revoked_at is null")
                    .bind(id)
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_connection_key(
                &self,
                tenant: &str,
                connection_id: uuid::Uuid,
                key_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update api_key set revoked_at = $4 \
                     where id = $1 and tenant = $2 and connection_id = $3 and revoked_at is null",
                )
                .bind(key_id)
                .bind(tenant)
                .bind(connection_id)
                .bind($crate::store::now())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_connection(
                &self,
                new: &$crate::store::NewConnection,
            ) -> $crate::store::StoreResult<$crate::store::Inserted> {
                let now = $crate::store::now();
                let created: Option<$crate::store::Connection> =
                    bind_new_connection!(sqlx::query_as(insert_connection_sql!()), new, now)
                        .fetch_optional(&self.pool)
                        .await?;
                if let Some(connection) = created {
                    return Ok($crate::store::Inserted::Created(connection));
                }
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
                    ", key_id, nonce, ciphertext from connection where tenant = $1 and id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| {
                    let sealed = $crate::crypto::Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext };
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
                     order by id desc limit $6"
                ))
                .bind(tenant)
                .bind(&filter.end_user_id)
                .bind(filter.before_id)
                .bind(&filter.status)
                .bind($crate::store::now())
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn mark_verified(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                identity: &$crate::store::HexIdentity,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
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
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn mark_invalid(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                reason: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set status = 'invalid', status_reason = $3, updated_at = $4 \
                     where tenant = $1 and id = $2 returning ",
                    connection_columns!()
                ))
                .bind(tenant)
                .bind(id)
                .bind(reason)
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn update_connection(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                change: &$crate::store::ConnectionChange,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set \
                     label = case when $3 then $4 else label end, \
                     metadata = case when $5 then $6 else metadata end, \
                     rate_limit_per_minute = case when $7 then $8 else rate_limit_per_minute end, \
                     updated_at = $9 \
                     where tenant = $1 and id = $2 returning ",
                    connection_columns!()
                ))
                .bind(tenant)
                .bind(id)
                .bind(change.label.is_some())
                .bind(change.label.clone().flatten())
                .bind(change.metadata.is_some())
                .bind(sqlx::types::Json(change.metadata.as_ref().unwrap_or(&serde_json::Value::Null)))
                .bind(change.rate_limit_per_minute.is_some())
                .bind(change.rate_limit_per_minute.flatten().map(|n| n as i32))
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn count_connections_by_status(&self) -> $crate::store::StoreResult<Vec<(String, i64)>> {
                Ok(sqlx::query_as(
                    "select case when status = 'active' and token_expires_at <= $1 then 'expired' else status end as s, \
                     count(*) from connection group by s",
                )
                .bind($crate::store::now())
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_session(&self, new: &$crate::store::NewSession) -> $crate::store::StoreResult<$crate::store::Session> {
                Ok(sqlx::query_as(concat!(
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
                .fetch_one(&self.pool)
                .await?)
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
            ) -> $crate::store::StoreResult<$crate::store::SessionOutcome> {
                use $crate::store::{SessionOutcome, SessionWrite};
                let now = $crate::store::now();
                let mut tx = self.pool.begin().await?;
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
                            Some(connection) => SessionOutcome::Created(connection),
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
                        let replaced: Result<Option<$crate::store::Connection>, sqlx::Error> = sqlx::query_as(concat!(
                            "update connection set subdomain = $3, token_type = $4, token_hint = $5, \
                             token_fingerprint = $6, key_id = $7, nonce = $8, ciphertext = $9, hex_org_id = $10, \
                             hex_user_email = $11, token_expires_at = $12, status = 'active', status_reason = null, \
                             last_verified_at = $13, updated_at = $13 where tenant = $1 and id = $2 returning ",
                            connection_columns!()
                        ))
                        .bind(&session.tenant)
                        .bind(r.id)
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
                        .fetch_optional(&mut *tx)
                        .await;
                        match replaced {
                            Ok(Some(connection)) => SessionOutcome::Replaced(connection),
                            Ok(None) => return Ok(SessionOutcome::ConnectionGone),
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                                return Ok(SessionOutcome::TokenTaken)
                            }
                            Err(e) => return Err(e.into()),
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
                tx.commit().await?;
                Ok(outcome)
            }

            async fn delete_connection(&self, tenant: &str, id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("delete from connection where tenant = $1 and id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            $($($extra)*)?
        }
    };
}

pub(super) use {
    api_key_columns, bind_new_connection, connection_columns, impl_store, insert_connection_sql,
    session_columns,
};
