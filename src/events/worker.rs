//! The delivery worker: one per replica, off the request path. It claims due events (each
//! claimed by one replica until its lease ends, so a crashed replica's claim lapses and another
//! picks the event up), POSTs them signed, and records the outcome: delivered, retried with
//! exponential backoff and jitter, or `dead` once `HEXBROKER_WEBHOOK_RETRY_FOR` has passed since
//! the event was queued. A commit that records an event wakes it at once (in-process, and on
//! Postgres through `LISTEN` on every replica); a poll is the safety net. At most
//! `HEXBROKER_WEBHOOK_CONCURRENCY` deliveries are in flight, so a slow receiver holds only those.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::sync::{watch, Notify, Semaphore};

use super::{body, signature, Delivery};
use crate::config::Config;
use crate::hex::{HexClient, Subdomain, Workspace};
use crate::store::{self, DynStore};

/// How long a claim holds beyond the delivery timeout before another replica may retry it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Everything a delivery needs.
struct Deliverer {
    store: DynStore,
    client: reqwest::Client,
    url: url::Url,
    secrets: Vec<Vec<u8>>,
    hex: HexClient,
    backoff: Duration,
    backoff_max: Duration,
    retry_for: Duration,
}

/// Starts the worker when `HEXBROKER_WEBHOOK_URL` is set; it stops when `stop`'s sender goes.
pub fn spawn(
    store: DynStore,
    hex: HexClient,
    config: &Config,
    stop: watch::Receiver<()>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(url) = config.webhook_url.clone() else {
        tracing::info!("HEXBROKER_WEBHOOK_URL is unset: events are recorded and listed, not sent");
        return Ok(None);
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.webhook_timeout)
        .connect_timeout(config.webhook_timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let deliverer = Arc::new(Deliverer {
        store,
        client,
        url,
        secrets: config.webhook_secrets.iter().map(|s| s.expose_secret().as_bytes().to_vec()).collect(),
        hex,
        backoff: config.webhook_backoff,
        backoff_max: config.webhook_backoff_max,
        retry_for: config.webhook_retry_for,
    });
    let lease = config.webhook_timeout + LEASE_MARGIN;
    let concurrency = config.webhook_concurrency;
    let poll = config.webhook_poll;
    Ok(Some(tokio::spawn(run(deliverer, lease, concurrency, poll, stop))))
}

/// Claims and delivers until `stop`, then waits for the deliveries in flight to be recorded: a
/// shutdown stops between attempts, never in the middle of one (each is bounded by the webhook
/// timeout, and [`crate::app::Background::stop`] bounds the wait as a whole).
async fn run(
    deliverer: Arc<Deliverer>,
    lease: Duration,
    concurrency: usize,
    poll: Duration,
    mut stop: watch::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    deliver_until_stopped(&deliverer, lease, concurrency, &slots, poll, &mut stop).await;
    let in_flight = concurrency - slots.available_permits();
    if in_flight > 0 {
        tracing::info!(in_flight, "stopping webhook delivery once the attempts in flight end");
    }
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
}

async fn deliver_until_stopped(
    deliverer: &Arc<Deliverer>,
    lease: Duration,
    concurrency: usize,
    slots: &Arc<Semaphore>,
    poll: Duration,
    stop: &mut watch::Receiver<()>,
) {
    let signal = loop {
        match deliverer.store.event_signal().await {
            Ok(signal) => break signal,
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for events; retrying");
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let refill = concurrency.div_ceil(2);
    let finished = Arc::new(Notify::new());
    loop {
        let free = slots.available_permits();
        let mut claimed_all = false;
        if free > 0 {
            let lease_until =
                store::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
            match deliverer.store.claim_events(lease_until, free as u32).await {
                Ok(batch) => {
                    claimed_all = batch.len() == free;
                    for delivery in batch {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let (deliverer, finished) = (deliverer.clone(), finished.clone());
                        tokio::spawn(async move {
                            deliverer.deliver(delivery).await;
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim events"),
            }
        }
        if claimed_all {
            // There may be more due: wait for half the slots to free up, so that one claim
            // fetches a batch rather than one event per finished delivery.
            while slots.available_permits() < refill {
                tokio::select! {
                    () = finished.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            continue;
        }
        let wait = match deliverer.store.next_event_due().await {
            Ok(Some(due)) => (due - store::now()).to_std().unwrap_or(Duration::ZERO).min(poll),
            _ => poll,
        };
        tokio::select! {
            () = signal.notified() => {}
            () = finished.notified() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Deliverer {
    /// One attempt, and its outcome recorded.
    async fn deliver(&self, delivery: Delivery) {
        // A connection on its own Hex origin carries it in the payload; otherwise the template's.
        let own_origin = delivery.payload.get("hex_url").is_some_and(serde_json::Value::is_string);
        let hex_url = delivery
            .payload
            .get("subdomain")
            .and_then(|s| s.as_str())
            .filter(|_| !own_origin)
            .and_then(|s| Subdomain::from_stored(s).ok())
            .map(|s| self.hex.origin(&Workspace::Template(s)));
        let body = body(&delivery, hex_url);
        let unix = Utc::now().timestamp();
        let signed = signature(unix, &body, self.secrets.iter().map(Vec::as_slice));
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("hexbroker-event-id", delivery.id.to_string())
            .header("hexbroker-signature", signed)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the receiver answered {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Some("the receiver did not answer in time".to_owned()),
            Err(_) => Some("could not reach the receiver".to_owned()),
        };
        let recorded = match &failure {
            None => self.store.event_delivered(delivery.id).await,
            Some(error) => {
                let retry_at = self.retry_at(&delivery, store::now());
                tracing::info!(event_id = %delivery.id, attempts = delivery.attempts, error, dead = retry_at.is_none(), "event delivery failed");
                self.store.event_failed(delivery.id, error, retry_at).await
            }
        };
        if let Err(e) = recorded {
            // The lease lapses and the event is tried again: at least once, never lost.
            tracing::warn!(event_id = %delivery.id, error = %e, "could not record a delivery's outcome");
        }
    }

    /// When to try again after the `delivery.attempts`th failure, or `None` when retries are over.
    fn retry_at(&self, delivery: &Delivery, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let wait = backoff(self.backoff, self.backoff_max, delivery.attempts, jitter());
        let at = now + chrono::Duration::from_std(wait).ok()?;
        let give_up = delivery.queued_at + chrono::Duration::from_std(self.retry_for).ok()?;
        (at <= give_up).then_some(at)
    }
}

/// `base × 2^(attempts−1)`, at most `max`, scaled by `jitter` (from 0.5 to 1), saturating.
pub fn backoff(base: Duration, max: Duration, attempts: i32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 40) as u32;
    let wait = base.saturating_mul(1u32 << doublings.min(31)).min(max);
    wait.mul_f64(jitter.clamp(0.5, 1.0))
}

/// A random factor from 0.5 to 1, so that replicas and events spread out.
fn jitter() -> f64 {
    let bytes = crate::crypto::random_bytes::<4>();
    0.5 + f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_shortens() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(3600));
        let cases = [(1, 10), (2, 20), (3, 40), (8, 1280), (9, 2560), (10, 3600), (1000, 3600), (-5, 10)];
        for (attempts, secs) in cases {
            assert_eq!(backoff(base, max, attempts, 1.0), Duration::from_secs(secs), "{attempts}");
        }
        assert_eq!(backoff(base, max, 2, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(base, max, 2, 7.0), Duration::from_secs(20), "jitter is clamped");
        let j = jitter();
        assert!((0.5..=1.0).contains(&j));
    }
}
