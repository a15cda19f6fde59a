//! The application's shared state: one cloneable [`AppState`] of cheap handles (the store, the
//! caches, the keys, the clients, the configuration), built once from [`Config`].
//!
//! A leaf of the crate's wiring: building the state opens the database and resolves the keys, but
//! spawns nothing (the background work is [`crate::background`]'s) and serves nothing (that is
//! [`crate::app`]'s). Extractors and middleware take the part they need through axum's
//! [`FromRef`]: the extractors' [`Auth`], the proxy's [`Proxy`], the edge's [`Guards`], MCP's
//! [`Mcp`](crate::mcp::Mcp); so those modules never name the application.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::extract::FromRef;

use crate::auth::{Auth, Callers};
use crate::clock::Clock;
use crate::config::Config;
use crate::connect::Attempts;
use crate::crypto::{self, Hasher, Keyring, HASH_KEY_AAD, KEY_LEN};
use crate::edge::Guards;
use crate::hex::HexClient;
use crate::keyfile::{self, POSTGRES_NEEDS_KEYS};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, RetryPolicy, Targets, Timeouts, Upstream};
use crate::requestlog::RequestLog;
use crate::store::{self, DynStore, Forget, Stale};

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
    /// The process's metrics.
    pub metrics: Metrics,
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// The time the lifecycle runs on (real; tests move it).
    pub clock: Clock,
    /// What tells callers apart (the hot path's first cache): the extractors' part.
    pub auth: Auth,
    /// The proxy's part: its cache of targets, its client, its limits, its marks, its log.
    pub proxy: Proxy,
    /// The network edge's limits: requests in flight, the rate per key.
    pub edge: Arc<Guards>,
    /// The allowance of connect attempts that Hex refuses.
    pub attempts: Attempts,
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
        let keyring = Arc::new(keyfile::resolve_keyring(&config, holds_sealed)?);
        let hasher = Arc::new(load_hash_key(&store, &keyring).await?);
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
        let edge = Arc::new(Guards::new(&config));
        let attempts = Attempts::new(&config);
        let request_log = RequestLog::new(&config.request_log, metrics.clone());
        let mcp_tools =
            crate::mcp::Tools::from_hex_spec(config.mcp_tools.as_deref()).context("HEXBROKER_MCP_TOOLS")?;
        let config = Arc::new(config);
        let clock = Clock::real();
        let auth = Auth::new(store.clone(), caches.callers.clone(), hasher.clone(), edge.clone());
        let proxy = Proxy::new(crate::proxy::Handles {
            store: store.clone(),
            targets: caches.targets.clone(),
            keyring: keyring.clone(),
            hex: hex.clone(),
            upstream,
            limiter: Arc::default(),
            usage: Arc::default(),
            request_log,
            metrics: metrics.clone(),
            config: config.clone(),
            clock: clock.clone(),
        });
        Ok(Self(Arc::new(Shared {
            store,
            keyring,
            hasher,
            hex,
            metrics,
            config,
            clock,
            auth,
            proxy,
            edge,
            attempts,
            mcp_tools: Arc::new(mcp_tools),
        })))
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Proxy {
    fn from_ref(state: &AppState) -> Self {
        state.proxy.clone()
    }
}

impl FromRef<AppState> for crate::mcp::Mcp {
    fn from_ref(state: &AppState) -> Self {
        Self { auth: state.auth.clone(), proxy: state.proxy.clone(), tools: state.mcp_tools.clone() }
    }
}

impl FromRef<AppState> for Arc<Guards> {
    fn from_ref(state: &AppState) -> Self {
        state.edge.clone()
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
