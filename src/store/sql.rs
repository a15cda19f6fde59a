//! The SQL that both backends run. `impl_store!` writes the one `Store` implementation for a
//! backend type with a `pool` field; the pool's type picks the driver, so every statement below
//! runs (and is tested) on Postgres and on SQLite alike.

/// The columns of a [`Connection`](super::Connection), in its field order.
macro_rules! connection_columns {
    () => {
        "id, tenant, end_user_id, end_user_email, label, metadata, subdomain, token_type, token_hint, \
         hex_org_id, hex_user_email, token_expires_at, status, status_reason, last_verified_at, \
         created_at, updated_at"
    };
}

/// The columns of an [`ApiKey`](super::ApiKey).
macro_rules! api_key_columns {
    () => {
        "id, tenant, name, prefix, scopes, connection_id, created_at, expires_at, revoked_at"
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
    ($store:ty) => {
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

            async fn insert_connection(
                &self,
                new: &$crate::store::NewConnection,
            ) -> $crate::store::StoreResult<$crate::store::Inserted> {
                let now = $crate::store::now();
                let created: Option<$crate::store::Connection> = sqlx::query_as(concat!(
                    "insert into connection (id, tenant, end_user_id, end_user_email, label, metadata, subdomain, \
                     token_type, token_hint, token_fingerprint, key_id, nonce, ciphertext, hex_org_id, \
                     hex_user_email, token_expires_at, status, last_verified_at, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'active', $17, $17, $17) \
                     on conflict (tenant, end_user_id, subdomain, token_fingerprint) do nothing returning ",
                    connection_columns!()
                ))
                .bind(new.id)
                .bind(&new.tenant)
                .bind(&new.end_user_id)
                .bind(&new.end_user_email)
                .bind(&new.label)
                .bind(sqlx::types::Json(&new.metadata))
                .bind(&new.subdomain)
                .bind(new.token_type)
                .bind(&new.token_hint)
                .bind(&new.token_fingerprint)
                .bind(&new.sealed.key_id)
                .bind(&new.sealed.nonce)
                .bind(&new.sealed.ciphertext)
                .bind(&new.identity.org_id)
                .bind(&new.identity.user_email)
                .bind(new.identity.token_expires_at)
                .bind(now)
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
            ) -> $crate::store::StoreResult<Option<($crate::store::Connection, $crate::crypto::Sealed)>> {
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
                    (r.connection, sealed)
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

            async fn update_connection(
                &self,
                tenant: &str,
                id: uuid::Uuid,
                label: Option<Option<&str>>,
                metadata: Option<&serde_json::Value>,
            ) -> $crate::store::StoreResult<Option<$crate::store::Connection>> {
                Ok(sqlx::query_as(concat!(
                    "update connection set \
                     label = case when $3 then $4 else label end, \
                     metadata = case when $5 then $6 else metadata end, \
                     updated_at = $7 \
                     where tenant = $1 and id = $2 returning ",
                    connection_columns!()
                ))
                .bind(tenant)
                .bind(id)
                .bind(label.is_some())
                .bind(label.flatten())
                .bind(metadata.is_some())
                .bind(sqlx::types::Json(metadata.unwrap_or(&serde_json::Value::Null)))
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn delete_connection(&self, tenant: &str, id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("delete from connection where tenant = $1 and id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(super) use {api_key_columns, connection_columns, impl_store};
