//! The Postgres backend, for production and for several replicas sharing one database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

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
        Ok(Self { pool, wake: Arc::default() })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
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
