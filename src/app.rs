//! The application's shared state and its life: building it from configuration, and serving.

use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::crypto::{self, Hasher, Keyring, HASH_KEY_AAD, KEY_LEN};
use crate::hex::HexClient;
use crate::metrics::Metrics;
use crate::proxy::{RateLimiter, RetryPolicy, Timeouts, Upstream};
use crate::store::{self, CachedStore, DynStore};

/// Everything a request needs, behind one `Arc`: axum clones the state for every extractor, and
/// one reference count is cheaper than one per handle.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles inside [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The database.
    pub store: DynStore,
    /// The token encryption keys.
    pub keyring: Arc<Keyring>,
    /// The keyed hash for secrets and token fingerprints.
    pub hasher: Arc<Hasher>,
    /// hexbroker's own client for Hex.
    pub hex: HexClient,
    /// The proxy's pooled client.
    pub upstream: Upstream,
    /// The per-connection outbound rate limit's state.
    pub limiter: Arc<RateLimiter>,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The configuration it was built from.
    pub config: Arc<Config>,
}

impl std::fmt::Debug for dyn store::Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl AppState {
    /// Opens the database (applying migrations), resolves the keyring, and loads the hash key.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let keyring = resolve_keyring(&config)?;
        let store = store::open(&config.database_url, config.database_max_connections).await?;
        let store: DynStore = CachedStore::wrap(store, config.cache_ttl, config.cache_capacity).await?;
        let hasher = load_hash_key(&store, &keyring).await?;
        let hex = HexClient::new(&config.hex_url, config.hex_timeout)?;
        let retry = RetryPolicy { max_retries: config.proxy_retries, budget: config.proxy_retry_budget };
        let metrics = Metrics::new();
        let timeouts = Timeouts {
            connect: config.proxy_connect_timeout,
            head: config.proxy_timeout,
            exchange: config.proxy_exchange_timeout,
        };
        let upstream = Upstream::new(timeouts, retry, metrics.clone());
        Ok(Self(Arc::new(Shared {
            store,
            keyring: Arc::new(keyring),
            hasher: Arc::new(hasher),
            hex,
            upstream,
            metrics,
            limiter: Arc::default(),
            config: Arc::new(config),
        })))
    }
}

/// The configured keyring; with SQLite and none configured, the key file beside the database
/// (generated on first run, mode 0600).
fn resolve_keyring(config: &Config) -> anyhow::Result<Keyring> {
    if let Some(keyring) = &config.encryption_keys {
        return Ok(keyring.clone());
    }
    if !config.is_sqlite() {
        bail!(
            "HEXBROKER_ENCRYPTION_KEYS: is required with Postgres; create a key with `hexbroker encryption-key generate`"
        );
    }
    match store::sqlite_database_file(&config.database_url) {
        Some(db) => {
            let mut path = db.into_os_string();
            path.push(".key");
            key_file(Path::new(&path))
        }
        None => {
            tracing::warn!(
                "HEXBROKER_ENCRYPTION_KEYS is unset and the database is in memory: using a throwaway key"
            );
            Ok(Keyring::parse(&Keyring::generate_entry())?)
        }
    }
}

fn key_file(path: &Path) -> anyhow::Result<Keyring> {
    if !path.exists() {
        let entry = Keyring::generate_entry();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file =
            options.open(path).with_context(|| format!("creating the key file {}", path.display()))?;
        writeln!(file, "{entry}")?;
        tracing::warn!(
            key_file = %path.display(),
            "HEXBROKER_ENCRYPTION_KEYS is unset: generated an encryption key beside the SQLite database; \
             back it up, or set HEXBROKER_ENCRYPTION_KEYS for production"
        );
    } else {
        tracing::warn!(key_file = %path.display(), "HEXBROKER_ENCRYPTION_KEYS is unset: using the key file beside the SQLite database");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the key file {}", path.display()))?;
    Keyring::parse(&text)
        .with_context(|| format!("the key file {} is not a KID:BASE64 keyring", path.display()))
}

/// The keyed-hash key, stored sealed in the database; the first replica to start makes it.
async fn load_hash_key(store: &DynStore, keyring: &Keyring) -> anyhow::Result<Hasher> {
    const NAME: &str = "hash_key";
    if store.sealed_secret(NAME).await?.is_none() {
        let key = zeroize::Zeroizing::new(crypto::random_bytes::<KEY_LEN>());
        store.insert_sealed_secret_if_absent(NAME, &keyring.seal(HASH_KEY_AAD, key.as_slice())).await?;
    }
    let sealed = store.sealed_secret(NAME).await?.context("the hash key vanished while starting")?;
    let bytes = keyring
        .open(HASH_KEY_AAD, &sealed)
        .context("opening the database's hash key with HEXBROKER_ENCRYPTION_KEYS")?;
    let key: [u8; KEY_LEN] =
        bytes.as_slice().try_into().context("the stored hash key has the wrong length")?;
    Ok(Hasher::new(key))
}

/// Serves `router` on `listener` until `shutdown` completes, then drains in-flight requests.
/// Handlers can read the client's address (`ConnectInfo`) for the audit trail.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A replica's background work: webhook delivery and audit pruning. It stops when this is
/// dropped or [`Background::stop`]ped; its work is in the database, so nothing is lost.
pub struct Background {
    stop: tokio::sync::watch::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Starts the background tasks of `state`'s replica.
    pub fn spawn(state: &AppState) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut tasks = Vec::new();
        if let Some(worker) = crate::events::worker::spawn(
            state.store.clone(),
            state.hex.clone(),
            &state.config,
            stopped.clone(),
        )? {
            tasks.push(worker);
        }
        tasks.push(tokio::spawn(prune(state.store.clone(), state.config.audit_retention, stopped)));
        Ok(Self { stop, tasks })
    }

    /// Stops the tasks at their next pause and waits for them (up to 5 s, then they are cut
    /// off). Deliveries already started finish on their own; an event claimed by a task that
    /// was cut off waits out its lease and is tried again.
    pub async fn stop(self) {
        drop(self.stop);
        for mut task in self.tasks {
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Deletes audit entries and delivered events older than `retention`, hourly.
async fn prune(store: DynStore, retention: std::time::Duration, mut stop: tokio::sync::watch::Receiver<()>) {
    let every = std::time::Duration::from_secs(3600).min(retention);
    loop {
        let cutoff =
            chrono::Duration::from_std(retention).ok().and_then(|r| store::now().checked_sub_signed(r));
        if let Some(cutoff) = cutoff {
            match store.prune(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned old audit entries and delivered events"),
                Err(e) => tracing::warn!(error = %e, "could not prune the audit trail"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
