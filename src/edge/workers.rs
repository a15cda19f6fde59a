//! Serving on several threads (`HEXBROKER_WORKERS` above 1; 1, the default, serves on the main
//! runtime), each on its own: a current-thread runtime with its own accept loop
//! on a clone of the listener, and its own pool of connections to Hex (see `proxy::Upstream`).
//! A request is read, authenticated, forwarded and answered on one thread, with no hand-off
//! between threads on the way: the profile of the multi-threaded runtime showed the time going
//! to wake-ups between its workers and the pool's connection tasks (see `bench/README.md`).
//!
//! The listener is one socket: every worker waits on it and whichever is free takes the next
//! connection. Each worker keeps its share of `HEXBROKER_MAX_CONNECTIONS`. The background work
//! (webhooks, background checks) stays on the main runtime.
//!
//! Shutdown stops the one socket from accepting first (`shutdown(2)`, which reaches every
//! worker's copy at once), and only then tells the workers, which drain as one listener does: no
//! connection is accepted after any worker has started closing idle ones.
//!
//! A worker's runtime keeps running after its listener stops, until the process exits: what it
//! opened meanwhile (pooled database and Hex connections, shared with the main runtime) stays
//! usable by the shutdown work that follows.

use std::cell::Cell;
use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::ServerLimits;
use crate::metrics::Metrics;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The serving worker this thread is (0 on any other thread).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Serves `router` on `listener` from `workers` threads until `shutdown` completes, then lets
/// each drain as [`super::serve_with`] does.
pub async fn serve_on_workers<S>(
    listener: TcpListener,
    router: Router,
    shutdown: S,
    limits: ServerLimits,
    metrics: Metrics,
    workers: usize,
) -> std::io::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    let listener = listener.into_std()?;
    let limits = ServerLimits { max_connections: limits.max_connections.div_ceil(workers.max(1)), ..limits };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (go, going) = tokio::sync::watch::channel(false);
    let mut started = Vec::with_capacity(workers);
    let mut served = Vec::with_capacity(workers);
    for index in 0..workers {
        let listener = listener.try_clone()?;
        let (router, metrics) = (router.clone(), metrics.clone());
        let mut stopping = stopping.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let mut going = going.clone();
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(format!("hexbroker-worker-{index}")).spawn(move || {
            INDEX.with(|i| i.set(index));
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let outcome = runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = ready.send(Ok(()));
                // Every worker serves, or none does (the sender is dropped).
                if going.wait_for(|go| *go).await.is_err() {
                    return Ok(());
                }
                super::serve_with(listener, router, stopped, limits, metrics).await
            });
            let _ = done.send(outcome);
            runtime.block_on(std::future::pending::<()>());
        })?;
        started.push(is_ready);
        served.push(finished);
    }
    // Serving starts once every worker has its runtime and its listener: a worker that could not
    // (out of descriptors, say) fails the start instead of stopping the others' listener later.
    for is_ready in started {
        let ready = is_ready.await.unwrap_or_else(|_| Err(std::io::Error::other("ended without a word")));
        if let Err(e) = ready {
            return Err(std::io::Error::new(e.kind(), format!("a serving worker could not start: {e}")));
        }
    }
    let _ = go.send(true);
    // A worker that stops before the shutdown ends the serving, as a listener error would.
    tokio::pin!(shutdown);
    let early = tokio::select! {
        () = &mut shutdown => None,
        (outcome, _, _) = futures_util::future::select_all(served.iter_mut()) => Some(outcome),
    };
    if let Err(e) = socket2::SockRef::from(&listener).shutdown(std::net::Shutdown::Read) {
        tracing::warn!(error = %e, "could not stop the listening socket; the workers stop on their own");
    }
    drop(listener);
    let _ = stop.send(true);
    if let Some(outcome) = early {
        outcome.map_err(|_| std::io::Error::other("a serving worker ended without a word"))??;
        return Err(std::io::Error::other("a serving worker stopped before the shutdown"));
    }
    for finished in served {
        finished.await.map_err(|_| std::io::Error::other("a serving worker ended without a word"))??;
    }
    Ok(())
}
