//! The application's shared state and its life: building it from configuration, and serving.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::Router;
use tokio::net::TcpListener;

use crate::auth::Callers;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{self, Hasher, Keyring, HASH_KEY_AAD, KEY_LEN};
use crate::hex::HexClient;
use crate::metrics::Metrics;
use crate::proxy::{RateLimiter, RetryPolicy, Targets, Timeouts, Upstream};
use crate::store::{self, DynStore, Forget, Stale};
use crate::watch::Usage;

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
    /// The callers seen lately, by key hash (the hot path's first cache).
    pub callers: Arc<Callers>,
    /// The connections called lately, prepared for the proxy (its second cache).
    pub targets: Arc<Targets>,
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
    /// The time the lifecycle runs on (real; tests move it).
    pub clock: Clock,
    /// The proxy's in-memory per-connection marks (last used, recent calls), for the watchers.
    pub usage: Arc<Usage>,
    /// The network edge's limits: requests in flight, the rate per key, connect attempts.
    pub edge: crate::edge::Guards,
    /// The request log's queue (§11).
    pub request_log: crate::requestlog::RequestLog,
    /// The MCP tools made from Hex's spec (§14), narrowed by `HEXBROKER_MCP_TOOLS`.
    pub mcp_tools: Arc<crate::mcp::Tools>,
}

impl std::fmt::Debug for dyn store::Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl AppState {
    /// Opens the database (applying migrations), resolves the keyring, and loads the hash key.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        if config.encryption_keys.is_none() && !config.is_sqlite() {
            bail!(POSTGRES_NEEDS_KEYS);
        }
        let store = store::open(&config.database_url, config.database_max_connections).await?;
        let caches = Arc::new(Caches {
            callers: Arc::new(Callers::new(config.cache_ttl, config.cache_capacity)),
            targets: Arc::new(Targets::new(config.cache_ttl, config.cache_capacity)),
        });
        store.announce_to(caches.clone()).await?;
        let holds_sealed = store.sealed_secret(HASH_KEY_NAME).await?.is_some();
        let keyring = resolve_keyring(&config, holds_sealed)?;
        let hasher = load_hash_key(&store, &keyring).await?;
        let hex = HexClient::with_hosts(&config.hex_url, &config.hex_hosts, config.hex_timeout)?;
        let retry = RetryPolicy { max_retries: config.proxy_retries, budget: config.proxy_retry_budget };
        let metrics = Metrics::new();
        let timeouts = Timeouts {
            connect: config.proxy_connect_timeout,
            head: config.proxy_timeout,
            exchange: config.proxy_exchange_timeout,
        };
        let upstream = Upstream::new(timeouts, retry, metrics.clone(), config.workers)
            .with_max_per_workspace(config.proxy_max_per_workspace);
        let edge = crate::edge::Guards::new(&config);
        let request_log = crate::requestlog::RequestLog::new(&config.request_log, metrics.clone());
        let mcp_tools =
            crate::mcp::Tools::from_hex_spec(config.mcp_tools.as_deref()).context("HEXBROKER_MCP_TOOLS")?;
        let state = Self(Arc::new(Shared {
            edge,
            request_log,
            mcp_tools: Arc::new(mcp_tools),
            store,
            callers: caches.callers.clone(),
            targets: caches.targets.clone(),
            keyring: Arc::new(keyring),
            hasher: Arc::new(hasher),
            hex,
            upstream,
            metrics,
            limiter: Arc::default(),
            config: Arc::new(config),
            clock: Clock::real(),
            usage: Arc::default(),
        }));
        refresh_gauges(&state);
        Ok(state)
    }
}

/// The hot path's two caches, as the store tells them what went stale.
struct Caches {
    callers: Arc<Callers>,
    targets: Arc<Targets>,
}

impl Forget for Caches {
    fn forget(&self, stale: Stale) {
        match stale {
            Stale::Key(id) => self.callers.forget_key(id),
            Stale::Connection(id) => {
                self.targets.forget(id);
                self.callers.forget_connection(id);
            }
            Stale::Everything => {
                self.targets.clear();
                self.callers.clear();
            }
        }
    }
}

/// Keeps the connection gauges in `/metrics` fresh by counting in the database every
/// `HEXBROKER_METRICS_REFRESH`, so that a scrape never runs a count across all tenants. The task
/// holds the state weakly and ends with it.
fn refresh_gauges(state: &AppState) {
    let weak = Arc::downgrade(&state.0);
    let every = state.config.metrics_refresh;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            match shared.store.count_connections_by_status().await {
                Ok(counts) => shared.metrics.set_connections(&counts),
                Err(e) => tracing::warn!(error = %e, "counting connections for the metrics failed"),
            }
        }
    });
}

const POSTGRES_NEEDS_KEYS: &str =
    "HEXBROKER_ENCRYPTION_KEYS: is required with Postgres; create a key with `hexbroker encryption-key generate`";

/// The configured keyring; with SQLite and none configured, the key file beside the database
/// (generated on first run, mode 0600). `holds_sealed` says the database already holds values
/// sealed by some key, so that a missing key file is an error rather than a fresh key.
fn resolve_keyring(config: &Config, holds_sealed: bool) -> anyhow::Result<Keyring> {
    if let Some(keyring) = &config.encryption_keys {
        return Ok(keyring.clone());
    }
    if !config.is_sqlite() {
        bail!(POSTGRES_NEEDS_KEYS);
    }
    match key_file_path(config) {
        Some(path) => key_file(&path, holds_sealed),
        None => {
            tracing::warn!(
                "HEXBROKER_ENCRYPTION_KEYS is unset and the database is in memory: using a throwaway key"
            );
            Ok(Keyring::parse(&Keyring::generate_entry())?)
        }
    }
}

/// The key file hexbroker uses when `HEXBROKER_ENCRYPTION_KEYS` is unset: `<database>.key` beside
/// a SQLite file; `None` when keys are configured, or on Postgres, or for an in-memory database.
pub fn key_file_path(config: &Config) -> Option<PathBuf> {
    if config.encryption_keys.is_some() || !config.is_sqlite() {
        return None;
    }
    let mut path = store::sqlite_database_file(&config.database_url)?.into_os_string();
    path.push(".key");
    Some(PathBuf::from(path))
}

/// The keyring in the key file at `path`, made on first run. A database that already holds
/// sealed values never gets a fresh key beside it: that key would open nothing. Two processes
/// starting at once both end up with the one file: each writes a whole file under a name of its
/// own and links it into place, and the one that finds the place taken reads the other's.
fn key_file(path: &Path, holds_sealed: bool) -> anyhow::Result<Keyring> {
    if let Some(keyring) = read_key_file(path)? {
        tracing::warn!(key_file = %path.display(), "HEXBROKER_ENCRYPTION_KEYS is unset: using the key file beside the SQLite database");
        return Ok(keyring);
    }
    if holds_sealed {
        bail!(
            "this database's key file is missing: expected it at {}. The database holds values sealed \
             by the key that was in it, and a fresh key would open none of them; restore the file from \
             a backup, or set HEXBROKER_ENCRYPTION_KEYS to that key",
            path.display()
        );
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.tmp", hex::encode(crypto::random_bytes::<8>())));
    let staging = std::path::PathBuf::from(staging);
    let written = write_new_key_file(&staging).and_then(|()| match std::fs::hard_link(&staging, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&staging);
    if written.with_context(|| format!("creating the key file {}", path.display()))? {
        tracing::warn!(
            key_file = %path.display(),
            "HEXBROKER_ENCRYPTION_KEYS is unset: generated an encryption key beside the SQLite database; \
             back it up, or set HEXBROKER_ENCRYPTION_KEYS for production"
        );
    }
    read_key_file(path)?.with_context(|| format!("the key file {} vanished while starting", path.display()))
}

/// Writes a fresh keyring to a new file at `path`, readable by its owner alone, and syncs it.
fn write_new_key_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let entry = zeroize::Zeroizing::new(Keyring::generate_entry());
    writeln!(file, "{}", entry.as_str())?;
    file.sync_all()
}

/// The keyring in the key file, or `None` when there is no file. A file that group or others
/// may read is repaired to 0600 with a warning (its key may have been read: rotate it).
fn read_key_file(path: &Path) -> anyhow::Result<Option<Keyring>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the key file {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(|| {
                format!(
                    "the key file {} may be read by other users (mode {:o}) and could not be made 0600",
                    path.display(),
                    mode & 0o777
                )
            })?;
            tracing::warn!(
                key_file = %path.display(),
                was = format!("{:o}", mode & 0o777),
                "the key file could be read by other users; made it 0600. If others had access, \
                 rotate the key (`hexbroker encryption-key generate`, then `hexbroker reencrypt`)"
            );
        }
    }
    Keyring::parse(&text)
        .map(Some)
        .with_context(|| format!("the key file {} is not a KID:BASE64 keyring", path.display()))
}

/// The name of the sealed keyed-hash key; its presence says the database holds sealed values.
const HASH_KEY_NAME: &str = "hash_key";

/// The keyed-hash key, stored sealed in the database; the first replica to start makes it.
async fn load_hash_key(store: &DynStore, keyring: &Keyring) -> anyhow::Result<Hasher> {
    const NAME: &str = HASH_KEY_NAME;
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

/// Serves `router` on `listener` with the default listener limits until `shutdown` completes,
/// then drains in-flight requests; [`crate::edge::serve_with`] takes the configured ones.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = crate::config::ServerLimits::default();
    crate::edge::serve_with(listener, router, shutdown, limits, Metrics::new()).await
}

/// Serves `state` on `listener`, and `/metrics` on `metrics_listener` when there is one (bind it
/// to `HEXBROKER_METRICS_LISTEN`), with the configured listener limits, until `shutdown`
/// completes. What `hexbroker serve` and the tests run.
pub async fn serve_app(
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use futures_util::FutureExt as _;
    let shutdown = shutdown.boxed().shared();
    let limits = state.config.server;
    let metrics = state.metrics.clone();
    let metrics_server = metrics_listener.map(|metrics_listener| {
        let router = crate::routes::metrics_router(state.clone());
        tokio::spawn(crate::edge::serve_with(
            metrics_listener,
            router,
            shutdown.clone(),
            limits,
            metrics.clone(),
        ))
    });
    let workers = state.config.workers;
    let router = crate::routes::router(state);
    if workers > 1 {
        crate::edge::serve_on_workers(listener, router, shutdown, limits, metrics, workers).await?;
    } else {
        crate::edge::serve_with(listener, router, shutdown, limits, metrics).await?;
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// A replica's background work: webhook delivery, audit pruning, the request log's writer and
/// pruner, and the watchers. It stops when this is
/// dropped or [`Background::stop`]ped; its work is in the database, so nothing is lost.
pub struct Background {
    stop: tokio::sync::watch::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watchers: crate::watch::Watchers,
    /// `HEXBROKER_SHUTDOWN_GRACE`: how long [`Background::stop`] waits for the tasks.
    grace: std::time::Duration,
}

impl Background {
    /// Starts the background tasks of `state`'s replica.
    pub fn spawn(state: &AppState) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut tasks = Vec::new();
        if let Some(worker) = crate::events::worker::spawn(
            state.store.clone(),
            state.hex.clone(),
            state.keyring.clone(),
            &state.config,
            stopped.clone(),
        )? {
            tasks.push(worker);
        }
        tasks.extend(crate::requestlog::spawn(state, &stopped));
        tasks.push(tokio::spawn(prune(state.store.clone(), state.config.audit_retention, stopped)));
        let grace = state.config.server.shutdown_grace;
        Ok(Self { stop, tasks, watchers: crate::watch::Watchers::spawn(state), grace })
    }

    /// Stops the tasks at their next pause: webhook delivery starts no new attempt and waits for
    /// those in flight to be recorded. Waits up to the shutdown grace period in all, then cuts
    /// off what is left; an event whose attempt was cut off waits out its lease and is tried
    /// again, so it is delivered at least once, never lost.
    pub async fn stop(self) {
        drop(self.stop);
        let deadline =
            tokio::time::Instant::now() + self.grace.min(std::time::Duration::from_secs(24 * 3600));
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    "background work still running at the end of the shutdown grace period: cut off"
                );
                task.abort();
            }
        }
        self.watchers.stop().await;
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

/// Completes on the first Ctrl-C or SIGTERM; a second one exits the process at once, without
/// waiting for the shutdown grace period (status 130 after SIGINT, 143 after SIGTERM, as if the
/// signal's default action had run). The handlers are installed when this is called, not when
/// the future is first polled, so a signal sent as soon as the server says it listens is not lost
/// to the default action (which would kill the process without draining).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            let name = next_signal(&mut interrupt, &mut terminate).await;
            tracing::info!(signal = name, "shutting down; a second signal exits at once");
            tokio::spawn(async move {
                let name = next_signal(&mut interrupt, &mut terminate).await;
                tracing::warn!(
                    signal = name,
                    "second signal: exiting without waiting for requests in progress"
                );
                crate::telemetry::flush();
                std::process::exit(if name == "SIGINT" { 130 } else { 143 });
            });
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        }
    }
}

/// The name of the next of the two signals to arrive (a handler that could not be installed
/// never fires).
#[cfg(unix)]
async fn next_signal(
    interrupt: &mut Option<tokio::signal::unix::Signal>,
    terminate: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
        if let Some(signal) = signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
    tokio::select! {
        () = recv(interrupt) => "SIGINT",
        () = recv(terminate) => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_that_others_can_read_is_made_0600_and_still_opens() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let entry = Keyring::generate_entry();
        std::fs::write(&path, format!("{entry}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let keyring = key_file(&path, true).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(keyring.active_key_id(), entry.split_once(':').unwrap().0);
    }

    #[test]
    fn a_missing_key_file_beside_sealed_rows_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let err = format!("{:#}", key_file(&path, true).unwrap_err());
        assert!(err.contains("key file is missing"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists(), "no fresh key was written");
    }

    #[test]
    fn processes_creating_the_key_file_at_once_all_end_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let barrier = std::sync::Barrier::new(8);
        let rings: Vec<Keyring> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        key_file(&path, false)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        let sealed = rings[0].seal(b"aad", b"value");
        for ring in &rings {
            assert_eq!(ring.open(b"aad", &sealed).unwrap().as_slice(), b"value");
        }
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no staging file is left behind: {left:?}");
    }
}
