//! The application's wiring: the router ([`crate::routes`]) served on the listeners
//! ([`crate::edge`]) with the state ([`crate::state`]) built from configuration. `hexbroker
//! serve` (and the tests) build an [`AppState`], start its [`crate::background::Background`]
//! work, and call [`serve_app`] with a shutdown future ([`crate::signals::shutdown_signal`]).

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::state::AppState;

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
