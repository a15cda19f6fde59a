//! Operator console storage (§12): console sessions (the cookie's keyed hash, never the cookie),
//! and the reads the console's pages need beyond the API's: a tenant's API keys and a
//! connection's keys. Sessions live in the database, so every replica sees a sign-in and a
//! sign-out at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiKey, StoreResult};
use crate::scopes::Scopes;

/// A console session as read on each request, with the key it acts as.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleSession {
    /// Its id.
    pub id: Uuid,
    /// The tenant it sees (its key's).
    pub tenant: String,
    /// The admin API key that signed in.
    pub key_id: Uuid,
    /// That key's name (the audit trail's actor name).
    pub key_name: String,
    /// That key's scopes.
    #[sqlx(try_from = "String")]
    pub key_scopes: Scopes,
    /// When that key stops working, if ever.
    pub key_expires_at: Option<DateTime<Utc>>,
    /// When that key was revoked, if it was.
    pub key_revoked_at: Option<DateTime<Utc>>,
    /// When it was made (sign-in).
    pub created_at: DateTime<Utc>,
    /// When it was last used (to within a minute).
    pub last_seen_at: DateTime<Utc>,
    /// Its absolute expiry.
    pub expires_at: DateTime<Utc>,
}

/// A console session to store.
#[derive(Debug, Clone)]
pub struct NewConsoleSession {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The key that signed in.
    pub key_id: Uuid,
    /// The keyed hash of the cookie's secret.
    pub token_hash: Vec<u8>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Its absolute expiry.
    pub expires_at: DateTime<Utc>,
}

/// The console's operations, on either backend (a supertrait of [`super::Store`]).
#[async_trait::async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a new session; sessions past their absolute expiry are deleted on the way.
    async fn insert_console_session(&self, new: &NewConsoleSession) -> StoreResult<()>;
    /// The session whose cookie hashes to `hash`, with its key.
    async fn console_session_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ConsoleSession>>;
    /// Records that session `id` was used at `at`.
    async fn touch_console_session(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    /// Ends session `id` (sign-out, or found expired); false when it was gone already.
    async fn delete_console_session(&self, id: Uuid) -> StoreResult<bool>;
    /// A page of `tenant`'s internal API keys (not connection keys), newest first.
    async fn list_tenant_api_keys(
        &self,
        tenant: &str,
        before_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ApiKey>>;
    /// The keys of connection `connection_id` in `tenant`, newest first.
    async fn list_connection_keys(&self, tenant: &str, connection_id: Uuid) -> StoreResult<Vec<ApiKey>>;
    /// Key `id`, if it is in `tenant`.
    async fn api_key_in_tenant(&self, tenant: &str, id: Uuid) -> StoreResult<Option<ApiKey>>;
}

macro_rules! impl_console_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ConsoleStore for $store {
            async fn insert_console_session(
                &self,
                new: &$crate::store::NewConsoleSession,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("delete from console_session where expires_at <= $1")
                    .bind(new.created_at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into console_session (id, tenant, key_id, token_hash, created_at, last_seen_at, \
                     expires_at) values ($1, $2, $3, $4, $5, $5, $6)",
                )
                .bind(new.id)
                .bind(&new.tenant)
                .bind(new.key_id)
                .bind(&new.token_hash)
                .bind(new.created_at)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn console_session_by_hash(
                &self,
                hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::ConsoleSession>> {
                Ok(sqlx::query_as(
                    "select s.id, s.tenant, s.key_id, k.name as key_name, k.scopes as key_scopes, \
                     k.expires_at as key_expires_at, k.revoked_at as key_revoked_at, s.created_at, \
                     s.last_seen_at, s.expires_at from console_session s join api_key k on k.id = s.key_id \
                     where s.token_hash = $1",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn touch_console_session(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("update console_session set last_seen_at = $2 where id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_console_session(&self, id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("delete from console_session where id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(done > 0)
            }

            async fn list_tenant_api_keys(
                &self,
                tenant: &str,
                before_id: Option<uuid::Uuid>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKey>> {
                Ok(sqlx::query_as($crate::store::sql::api_key::LIST_IN_TENANT)
                .bind(tenant)
                .bind(before_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_connection_keys(
                &self,
                tenant: &str,
                connection_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKey>> {
                Ok(sqlx::query_as($crate::store::sql::api_key::OF_CONNECTION)
                .bind(tenant)
                .bind(connection_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn api_key_in_tenant(
                &self,
                tenant: &str,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKey>> {
                Ok(sqlx::query_as($crate::store::sql::api_key::IN_TENANT)
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}

pub(super) use impl_console_store;
