//! The Postgres backend, for production and for several replicas sharing one database.

use std::sync::Arc;
use std::time::Duration;

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection as _;

use super::backend::impl_store;
use super::console::impl_console_store;
use super::effects::Hooks;
use super::requestlog::{impl_request_log_store, request_columns};
use super::sql::{EVENT_CHANNEL, INVALIDATION_CHANNEL};
use super::verify::impl_verify_store;
use super::webhooks::impl_webhook_store;
use super::writes::impl_writes;

/// A [`Store`](super::Store) on Postgres.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The delivery worker and the caches, told of each commit (see `effects.rs`); the worker also
    /// when any replica commits an event (once listened for).
    hooks: Arc<Hooks>,
}

impl PgStore {
    /// Connects and applies the Postgres migrations. A server that refuses connections is
    /// retried until the pool's timeout (Postgres may be starting beside us); then the error says
    /// why in words (refused at host:port, no such database, login refused), never the password.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| anyhow::anyhow!("HEXBROKER_DATABASE_URL is not a Postgres URL"))?;
        let started = tokio::time::Instant::now();
        let pool = loop {
            let attempt = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await;
            match attempt {
                Err(sqlx::Error::PoolTimedOut) if started.elapsed() + ACQUIRE_TIMEOUT <= CONNECT_TIMEOUT => {}
                other => break other,
            }
        };
        let pool = match pool {
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
        Ok(Self { pool, hooks: Arc::default() })
    }

    /// The pool, for tests that read tables raw.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How long start-up waits for Postgres to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a query waits for a pooled connection. Short, so that while Postgres is away the
/// requests that need it fail fast (503 `database_unavailable`) instead of piling up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The listeners' retry delays after losing their connection: doubling from the first to the
/// last, so a database that is away is not hammered and one that is back is found soon.
const RELISTEN_FIRST: Duration = Duration::from_millis(100);
const RELISTEN_MAX: Duration = Duration::from_secs(2);

/// A fresh listening connection on `channel`, retried (with backoff) until Postgres lets it
/// listen again, or until `gone` says nobody needs it any more.
async fn relisten(pool: &PgPool, channel: &str, what: &str, gone: impl Fn() -> bool) -> Option<PgListener> {
    let mut delay = RELISTEN_FIRST;
    loop {
        if gone() {
            return None;
        }
        let attempt = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(listener)) => {
                tracing::info!(listener = what, "listening again");
                return Some(listener);
            }
            Ok(Err(e)) => tracing::debug!(listener = what, error = %e, "cannot listen yet"),
            Err(_) => tracing::debug!(listener = what, "cannot listen yet: timed out"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RELISTEN_MAX);
    }
}

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

impl_writes!(PgStore, sqlx::Postgres, notify: true);
impl_webhook_store!(PgStore, sqlx::Postgres, claim: crate::store::sql::webhook::CLAIM_DELIVERIES_POSTGRES);
impl_console_store!(PgStore);
impl_request_log_store!(PgStore, sqlx::Postgres, batch: super::requestlog::insert_batch_postgres);

impl_verify_store!(PgStore, claim: crate::store::sql::verify::CLAIM_DUE_POSTGRES);

impl_store!(PgStore, {
    async fn event_signal(&self) -> crate::store::StoreResult<Arc<tokio::sync::Notify>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENT_CHANNEL).await?;
        let wake = Arc::downgrade(&self.hooks.wake);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let received = listener.try_recv().await;
                let Some(strong) = wake.upgrade() else { break };
                match received {
                    Ok(Some(_)) => strong.notify_one(),
                    // The connection is lost (Postgres restarted, or the backend was terminated):
                    // listen again on a fresh one, then wake the worker, since notices sent
                    // meanwhile are lost and the claim decides what is due.
                    Ok(None) | Err(_) => {
                        drop(strong);
                        tracing::warn!("lost the event listener; listening again");
                        let Some(fresh) =
                            relisten(&pool, EVENT_CHANNEL, "events", || wake.strong_count() == 0).await
                        else {
                            break;
                        };
                        listener = fresh;
                        let Some(strong) = wake.upgrade() else { break };
                        strong.notify_one();
                    }
                }
            }
        });
        Ok(self.hooks.wake.clone())
    }

    async fn announce_to(&self, forget: Arc<dyn crate::store::Forget>) -> crate::store::StoreResult<()> {
        if !self.hooks.announce_to(forget) {
            tracing::warn!("the store tells its caches already; ignoring another");
            return Ok(());
        }
        let Some(forget) = self.hooks.forget_weak() else { return Ok(()) };
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let stale = match listener.try_recv().await {
                    Ok(Some(notification)) => Stale::parse(notification.payload()),
                    // The connection is lost. What is cached stays served meanwhile (while
                    // Postgres is away nothing can change, and the hot path needs no database);
                    // once listening again, notices may have been missed, so the caches are
                    // cleared then, after the gap, not before it.
                    Ok(None) | Err(_) => {
                        tracing::warn!("lost the invalidation listener; listening again");
                        let gone = || forget.strong_count() == 0;
                        let Some(fresh) = relisten(&pool, INVALIDATION_CHANNEL, "invalidations", gone).await
                        else {
                            break;
                        };
                        listener = fresh;
                        Stale::Everything
                    }
                };
                let Some(forget) = forget.upgrade() else { break };
                forget.forget(stale);
            }
        });
        Ok(())
    }
});
