//! The Postgres backend, for production and for several replicas sharing one database.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql::{
    api_key_columns, bind_new_connection, connection_columns, impl_store, insert_connection_sql,
    session_columns,
};

/// A [`Store`](super::Store) on Postgres.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies the Postgres migrations.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .context("connecting to Postgres (HEXBROKER_DATABASE_URL)")?;
        sqlx::migrate!("migrations/postgres").run(&pool).await.context("applying Postgres migrations")?;
        Ok(Self { pool })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PgStore);
