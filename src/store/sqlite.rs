//! The SQLite backend: the embedded default, so that `cargo run` works with no configuration.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::console::impl_console_store;
use super::requestlog::{impl_request_log_store, request_columns};
use super::sql::{
    api_key_columns, bind_new_connection, connection_columns, impl_store, insert_connection_sql,
    session_columns,
};
use super::watch::impl_watch_store;
use super::webhooks::{
    endpoint_columns, endpoint_secret_columns, impl_webhook_store, CLAIM_DELIVERIES_SQLITE,
};

/// A [`Store`](super::Store) on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Woken when this process commits an event.
    wake: Arc<tokio::sync::Notify>,
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
        Ok(Self { pool, wake: Arc::default() })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_webhook_store!(SqliteStore, sqlx::Sqlite, claim: CLAIM_DELIVERIES_SQLITE);
impl_console_store!(SqliteStore);
impl_request_log_store!(SqliteStore, sqlx::Sqlite);

impl_watch_store!(SqliteStore, "");

impl_store!(SqliteStore, sqlx::Sqlite, notify: false, {
    async fn event_signal(&self) -> crate::store::StoreResult<Arc<tokio::sync::Notify>> {
        Ok(self.wake.clone())
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
