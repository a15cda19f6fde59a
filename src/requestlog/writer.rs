//! The request log's background work: the writer, which turns queued entries into rows and
//! writes them a batch per transaction, and the pruner, which keeps the log within its retention
//! and row cap in small deletes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{AnsweredBy, Entry, RequestLog};
use crate::clock::Clock;
use crate::config::RequestLogConfig;
use crate::metrics::Metrics;
use crate::store::{self, DynStore, HourCount, NewRequest, StoreResult};

/// The most entries written in one transaction.
const BATCH: usize = 1_000;
/// The most rows one pruning statement deletes: small, so no delete holds its locks for long.
const PRUNE_BATCH: u32 = 1_000;
/// The longest path recorded (in bytes, cut at a character boundary).
const MAX_PATH: usize = 2_048;
/// How long the writer lets a short queue fill before writing it: at most this, looking every
/// [`GATHER_TICK`] whether a full batch is waiting. A long gather makes a quiet replica's batches
/// larger (each batch's cost is mostly fixed: a round trip, a statement); the ticks keep a busy
/// one's queue far from full.
const GATHER: Duration = Duration::from_millis(500);
/// How often a gathering writer looks whether a full batch is waiting.
const GATHER_TICK: Duration = Duration::from_millis(100);
/// How long the writer waits before trying a batch the database refused once more.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Starts the replica's writer (when the log is on and no writer has its queue yet) and its
/// pruner; both end when `stop`'s sender is dropped, the writer after writing what is queued.
pub fn spawn(
    log: &RequestLog,
    store: &DynStore,
    metrics: &Metrics,
    clock: &Clock,
    config: RequestLogConfig,
    stop: &watch::Receiver<()>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(queue) = log.take_receiver() {
        tasks.push(tokio::spawn(write(store.clone(), metrics.clone(), queue, stop.clone())));
    }
    tasks.push(tokio::spawn(prune(store.clone(), clock.clone(), config, stop.clone())));
    tasks
}

/// Takes entries off the queue and writes them, a batch per transaction; on stop, closes the
/// queue (later entries are dropped and counted), writes what it holds, and ends.
async fn write(
    store: DynStore,
    metrics: Metrics,
    mut queue: mpsc::Receiver<Entry>,
    mut stop: watch::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            entry = queue.recv() => match entry {
                Some(entry) => batch.push(entry),
                None => return,
            },
        }
        // Let a short queue fill before taking it. A send wakes the writer only while it waits in
        // `recv`; waiting on a timer instead spares the proxy's hot path a cross-thread wake-up
        // per call, and the database many small transactions. A full batch is taken at once.
        let (mut gathered, mut stopping) = (Duration::ZERO, false);
        while queue.len() < BATCH && gathered < GATHER && !stopping {
            tokio::select! {
                biased;
                _ = stop.changed() => stopping = true,
                () = tokio::time::sleep(GATHER_TICK) => gathered += GATHER_TICK,
            }
        }
        if stopping {
            break;
        }
        // What is queued, in one take: its queue slots are handed back at once, not one by one.
        // (This task is the only receiver, so what `len` counts is there and the take does not
        // wait.)
        let queued = queue.len().min(BATCH.saturating_sub(batch.len()));
        if queued > 0 {
            queue.recv_many(&mut batch, queued).await;
        }
        metrics.request_log_queued(queue.len());
        write_batch(&store, &metrics, &mut batch, true).await;
    }
    queue.close();
    loop {
        while batch.len() < BATCH {
            match queue.recv().await {
                Some(entry) => batch.push(entry),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        write_batch(&store, &metrics, &mut batch, false).await;
    }
    metrics.request_log_queued(0);
}

/// Writes `batch` (emptying it); a batch the database refuses is tried once more after a pause
/// (unless `retry` is false), then dropped and counted.
async fn write_batch(store: &DynStore, metrics: &Metrics, batch: &mut Vec<Entry>, retry: bool) {
    let n = batch.len() as u64;
    {
        let (rows, counts) = rows_of(batch);
        let mut outcome = store.insert_requests(&rows, &counts).await;
        if outcome.is_err() && retry {
            tokio::time::sleep(RETRY_AFTER).await;
            outcome = store.insert_requests(&rows, &counts).await;
        }
        match outcome {
            Ok(()) => metrics.request_log_written(n),
            Err(e) => {
                tracing::warn!(error = %e, entries = n, "could not write request log entries; dropped");
                metrics.request_log_dropped(n);
            }
        }
    }
    batch.clear();
}

/// The rows of `entries` (borrowed from them), and what they add to each connection's hourly
/// counts (in key order, so that two replicas' batches lock count rows in the same order).
fn rows_of(entries: &[Entry]) -> (Vec<NewRequest<'_>>, Vec<HourCount>) {
    let mut counts: BTreeMap<(Uuid, DateTime<Utc>), HourCount> = BTreeMap::new();
    // The random part of each id: one system call per batch, then splitmix64 (ids need to be
    // unique, not secret).
    let mut seed = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
    let rows = entries
        .iter()
        .map(|entry| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let random = splitmix(seed);
            let hour = hour_of(entry.at);
            let count = counts.entry((entry.connection_id, hour)).or_insert(HourCount {
                connection_id: entry.connection_id,
                hour,
                calls: 0,
                errors: 0,
                last_error_at: None,
            });
            count.calls = count.calls.saturating_add(1);
            if entry.status >= 400 {
                count.errors = count.errors.saturating_add(1);
                count.last_error_at = count.last_error_at.max(Some(entry.at));
            }
            row_of(entry, random)
        })
        .collect();
    (rows, counts.into_values().collect())
}

/// splitmix64's output function: 64 well-mixed bits from a counter.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn row_of(entry: &Entry, random: u64) -> NewRequest<'_> {
    let path = entry.path.as_str();
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    NewRequest {
        id: store::id_with(entry.at, random),
        tenant: &entry.key.tenant,
        connection_id: entry.connection_id,
        at: entry.at,
        method: entry.method.as_str(),
        path: if path.is_empty() { "/" } else { &path[..end] },
        status: i32::from(entry.status),
        answered_by: entry.answered_by.as_str(),
        code: match entry.answered_by {
            AnsweredBy::Hexbroker => entry.code,
            AnsweredBy::Hex => None,
        },
        duration_ms: millis(entry.duration),
        hex_duration_ms: entry.hex_duration.map(millis),
        retries: i32::try_from(entry.retries).unwrap_or(i32::MAX),
        via: entry.via.as_str(),
        key_id: Some(entry.key.id),
        request_id: entry.request_id.as_ref().and_then(|v| v.to_str().ok()),
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The start of the hour `at` falls in.
pub(crate) fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = at.timestamp();
    DateTime::from_timestamp(seconds.saturating_sub(seconds.rem_euclid(3600)), 0).unwrap_or(at)
}

/// Prunes now, then every `prune_interval`, until stopped.
async fn prune(store: DynStore, clock: Clock, config: RequestLogConfig, mut stop: watch::Receiver<()>) {
    loop {
        match prune_once(&store, &clock, &config, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned the request log"),
            Err(e) => tracing::warn!(error = %e, "could not prune the request log"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.prune_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Deletes entries older than the retention, then the oldest past the row cap, a small batch at
/// a time (stopping early when `stop` fires), and hourly counts older than the retention.
/// Returns how many entries went.
pub async fn prune_once(
    store: &DynStore,
    clock: &Clock,
    config: &RequestLogConfig,
    stop: &watch::Receiver<()>,
) -> StoreResult<u64> {
    let retention = TimeDelta::from_std(config.retention).unwrap_or(TimeDelta::MAX);
    let cutoff = clock.now().checked_sub_signed(retention);
    let mut deleted = 0;
    if let Some(cutoff) = cutoff {
        deleted += prune_before(store, store::id_bound(cutoff), stop).await?;
        store.prune_request_counts(hour_of(cutoff)).await?;
    }
    if let Some(keep_from) = store.requests_kept_from(config.max_rows).await? {
        deleted += prune_before(store, keep_from, stop).await?;
    }
    Ok(deleted)
}

async fn prune_before(store: &DynStore, before: Uuid, stop: &watch::Receiver<()>) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let n = store.prune_requests(before, PRUNE_BATCH).await?;
        deleted += n;
        // `has_changed` fails once the sender is gone: the replica is stopping.
        if n < u64::from(PRUNE_BATCH) || stop.has_changed().is_err() {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_starts_on_the_hour() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:59:59.999Z").unwrap().with_timezone(&Utc);
        assert_eq!(hour_of(at).to_rfc3339(), "2026-03-01T10:00:00+00:00");
        let at = DateTime::parse_from_rfc3339("2026-03-01T11:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(hour_of(at), at);
    }
}
