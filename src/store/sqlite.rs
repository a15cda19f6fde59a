//! The SQLite backend: the embedded default, so that `cargo run` works with no configuration.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::backend::impl_store;
use super::console::impl_console_store;
use super::effects::Hooks;
use super::requestlog::{impl_request_log_store, request_columns};
use super::verify::impl_verify_store;
use super::webhooks::impl_webhook_store;
use super::writes::impl_writes;

/// A [`Store`](super::Store) on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The delivery worker and the caches, told of each commit (see `effects.rs`).
    hooks: Arc<Hooks>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies the SQLite migrations.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = SqliteConnectOptions::from_str(url)
            .context("reading HEXBROKER_DATABASE_URL as a SQLite URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("opening the SQLite database (HEXBROKER_DATABASE_URL)")?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await.context("applying SQLite migrations")?;
        Ok(Self { pool, hooks: Arc::default() })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_writes!(SqliteStore, sqlx::Sqlite, notify: false);
impl_webhook_store!(SqliteStore, sqlx::Sqlite, claim: crate::store::sql::webhook::CLAIM_DELIVERIES_SQLITE);
impl_console_store!(SqliteStore);
impl_request_log_store!(SqliteStore, sqlx::Sqlite, batch: super::requestlog::insert_batch_sqlite);

impl_verify_store!(SqliteStore, claim: crate::store::sql::verify::CLAIM_DUE_SQLITE);

impl_store!(SqliteStore, {
    async fn event_signal(&self) -> crate::store::StoreResult<Arc<tokio::sync::Notify>> {
        Ok(self.hooks.wake.clone())
    }

    /// Only this process's writes: another process on the same file is not heard (the caches'
    /// TTL covers it).
    async fn announce_to(&self, forget: Arc<dyn crate::store::Forget>) -> crate::store::StoreResult<()> {
        if !self.hooks.announce_to(forget) {
            tracing::warn!("the store tells its caches already; ignoring another");
        }
        Ok(())
    }
});

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let text = path.to_string_lossy();
    if text.is_empty() || text == ":memory:" || url.contains("mode=memory") {
        None
    } else {
        Some(path.to_path_buf())
    }
}
