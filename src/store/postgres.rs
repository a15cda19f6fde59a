//! The Postgres backend, for production and for several replicas sharing one database.

use std::sync::Arc;
use std::time::Duration;

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection as _;

use super::sql::{
    api_key_columns, bind_new_connection, connection_columns, impl_store, insert_connection_sql,
    session_columns, CLAIM_EVENTS_POSTGRES, EVENT_CHANNEL, INVALIDATION_CHANNEL,
};
use super::watch::impl_watch_store;

/// A [`Store`](super::Store) on Postgres.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Woken when this replica commits an event, and (once listened for) when any replica does.
    wake: Arc<tokio::sync::Notify>,
}

impl PgStore {
    /// Connects and applies the Postgres migrations. A server that refuses connections is
    /// retried until the pool's timeout (Postgres may be starting beside us); then the error says
    /// why in words (refused at host:port, no such database, login refused), never the password.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| anyhow::anyhow!("HEXBROKER_DATABASE_URL is not a Postgres URL"))?;
        let pool = match PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::PoolTimedOut) => {
                // The pool hides the last attempt's error: one more attempt finds it.
                let cause =
                    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
                        Ok(Err(e)) => e,
                        Ok(Ok(_)) | Err(_) => sqlx::Error::PoolTimedOut,
                    };
                return Err(connect_error(&options, &cause));
            }
            Err(e) => return Err(connect_error(&options, &e)),
        };
        sqlx::migrate!("migrations/postgres").run(&pool).await.context("applying Postgres migrations")?;
        Ok(Self { pool, wake: Arc::default() })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How long start-up waits for Postgres to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why Postgres could not be reached, in one sentence that names the server and never the
/// password.
fn connect_error(options: &PgConnectOptions, error: &sqlx::Error) -> anyhow::Error {
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let database = options.get_database().unwrap_or(options.get_username());
    let what = match error {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {server}; is Postgres running there?")
        }
        sqlx::Error::Io(e) => format!("cannot reach {server}: {e}"),
        sqlx::Error::Database(e) if e.code().as_deref() == Some("3D000") => format!(
            "the server at {server} has no database `{database}`; create it (`createdb {database}`) or fix the URL"
        ),
        sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("28P01" | "28000")) => {
            format!("the server at {server} refused the login: {}", e.message())
        }
        sqlx::Error::Database(e) => format!("the server at {server} refused the connection: {}", e.message()),
        sqlx::Error::PoolTimedOut => {
            format!("no answer from {server} within {}s", CONNECT_TIMEOUT.as_secs())
        }
        other => format!("cannot connect to {server}: {other}"),
    };
    anyhow::anyhow!("connecting to Postgres (HEXBROKER_DATABASE_URL): {what}")
}

impl_watch_store!(PgStore, " for update skip locked");

impl_store!(PgStore, sqlx::Postgres, notify: true, claim: CLAIM_EVENTS_POSTGRES, {
    async fn event_signal(&self) -> crate::store::StoreResult<Arc<tokio::sync::Notify>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENT_CHANNEL).await?;
        let wake = Arc::downgrade(&self.wake);
        tokio::spawn(async move {
            loop {
                let received = listener.try_recv().await;
                let Some(wake) = wake.upgrade() else { break };
                // A lost connection may have lost a notice too: wake anyway, the claim decides.
                wake.notify_one();
                if let Err(e) = received {
                    tracing::warn!(error = %e, "lost the event listener; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Ok(self.wake.clone())
    }

    async fn subscribe_invalidations(
        &self,
    ) -> crate::store::StoreResult<Option<tokio::sync::mpsc::Receiver<Option<String>>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let message = match listener.try_recv().await {
                    Ok(Some(notification)) => Some(notification.payload().to_owned()),
                    // The connection dropped and sqlx reconnected: notifications may be lost.
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the invalidation listener; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        None
                    }
                };
                if tx.send(message).await.is_err() {
                    break;
                }
            }
        });
        Ok(Some(rx))
    }
});
