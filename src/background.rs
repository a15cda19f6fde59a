//! A replica's background work, started beside the server and stopped with it: webhook
//! delivery, the request log's writer and pruner, the background token checks
//! ([`crate::verify`]), audit pruning, and the connection gauges.

use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{self, DynStore};

/// A replica's background work: webhook delivery, audit pruning, the request log's writer and
/// pruner, the background token checks and the connection gauges. It stops when this is dropped
/// or [`Background::stop`]ped; its work is in the database, so nothing is lost.
pub struct Background {
    stop: tokio::sync::watch::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rounds: crate::verify::Rounds,
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
        let (store, metrics, config) = (&state.store, &state.metrics, &state.config);
        let log = &state.proxy.request_log;
        tasks.extend(crate::requestlog::spawn(
            log,
            store,
            metrics,
            &state.clock,
            config.request_log,
            &stopped,
        ));
        tasks.push(tokio::spawn(prune(store.clone(), config.audit_retention, stopped.clone())));
        tasks.push(tokio::spawn(refresh_gauges(
            store.clone(),
            metrics.clone(),
            config.metrics_refresh,
            stopped,
        )));
        let grace = state.config.server.shutdown_grace;
        Ok(Self { stop, tasks, rounds: crate::verify::Rounds::spawn(state), grace })
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
        self.rounds.stop().await;
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

/// Keeps the connection gauges in `/metrics` fresh by counting in the database every
/// `HEXBROKER_METRICS_REFRESH`, so that a scrape never runs a count across all tenants.
async fn refresh_gauges(
    store: DynStore,
    metrics: Metrics,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match store.count_connections_by_status().await {
            Ok(counts) => metrics.set_connections(&counts),
            Err(e) => tracing::warn!(error = %e, "counting connections for the metrics failed"),
        }
    }
}
