//! The delivery worker: one per replica, off the request path. It claims due deliveries (each
//! claimed by one replica until its lease ends, so a crashed replica's claim lapses and another
//! picks it up), POSTs them signed, and records the outcome: delivered, retried with exponential
//! backoff and jitter, or `dead` once `HEXBROKER_WEBHOOK_RETRY_FOR` has passed since the delivery
//! was queued. A commit that records an event wakes it at once (in-process, and on Postgres
//! through `LISTEN` on every replica); a poll is the safety net. At most
//! `HEXBROKER_WEBHOOK_CONCURRENCY` deliveries are in flight, and at most a quarter of them to any
//! one tenant endpoint, so a slow receiver holds only its own; a failing endpoint's other due
//! deliveries wait out its backoff with it (see `WebhookStore::record_attempt`).
//!
//! Every delivery carries the Standard Webhooks headers (`webhook-id`, the event id, the same on
//! every attempt and destination; `webhook-timestamp`; `webhook-signature`); deliveries to the
//! deployment-wide URL also keep `hexbroker-event-id` and `hexbroker-signature` (§8). Tenants'
//! endpoints are reached through [`super::guard`]'s client, which never connects to a non-public
//! address unless the host is allow-listed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::sync::{watch, Notify, Semaphore};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::endpoints::{key_bytes, AttemptOutcome};
use super::guard::{self, AllowHosts};
use super::{body, signature, standard_signature, Delivery};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::hex::{HexClient, Subdomain, Workspace};
use crate::store::{self, DynStore};

/// How long a claim holds beyond the delivery timeout before another replica may retry it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How much of a refusing receiver's body the history keeps, at most (bytes read, then chars).
const EXCERPT_BYTES: usize = 512;
const EXCERPT_CHARS: usize = 200;

/// How long a delivery to an endpoint already at its in-flight share waits before it is due again.
const BUSY_ENDPOINT_WAIT: chrono::Duration = chrono::Duration::milliseconds(500);

/// The deployment-wide destination, `HEXBROKER_WEBHOOK_URL`.
struct Deployment {
    client: reqwest::Client,
    url: url::Url,
    /// `HEXBROKER_WEBHOOK_SECRET`'s entries as written (for `hexbroker-signature`).
    secrets: Vec<Zeroizing<Vec<u8>>>,
}

/// Everything a delivery needs.
struct Deliverer {
    store: DynStore,
    deployment: Option<Deployment>,
    endpoints: reqwest::Client,
    allow: AllowHosts,
    keyring: Arc<Keyring>,
    hex: HexClient,
    backoff: Duration,
    backoff_max: Duration,
    retry_for: Duration,
    /// Attempts in flight on this replica, per endpoint.
    busy: Mutex<HashMap<Uuid, usize>>,
    /// The most attempts in flight to one endpoint.
    per_endpoint: usize,
}

/// Starts the worker; it stops when `stop`'s sender goes. Without `HEXBROKER_WEBHOOK_URL` it
/// delivers to tenants' endpoints alone (the deployment-wide deliveries wait, as events did).
pub fn spawn(
    store: DynStore,
    hex: HexClient,
    keyring: Arc<Keyring>,
    config: &Config,
    stop: watch::Receiver<()>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let deployment = match config.webhook_url.clone() {
        None => {
            tracing::info!("HEXBROKER_WEBHOOK_URL is unset: events go to tenants' endpoints only");
            None
        }
        Some(url) => Some(Deployment {
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(config.webhook_timeout)
                .connect_timeout(config.webhook_timeout.min(Duration::from_secs(5)))
                .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
                .build()?,
            url,
            secrets: config
                .webhook_secrets
                .iter()
                .map(|s| Zeroizing::new(s.expose_secret().as_bytes().to_vec()))
                .collect(),
        }),
    };
    let allow = AllowHosts::new(&config.webhook_allow_hosts);
    let endpoints = guard::endpoint_client(allow.clone(), guard::system_lookup(), config.webhook_timeout)?;
    let concurrency = config.webhook_concurrency;
    let deliverer = Arc::new(Deliverer {
        store,
        deployment,
        endpoints,
        allow,
        keyring,
        hex,
        backoff: config.webhook_backoff,
        backoff_max: config.webhook_backoff_max,
        retry_for: config.webhook_retry_for,
        busy: Mutex::default(),
        per_endpoint: (concurrency / 4).max(1),
    });
    let lease = config.webhook_timeout + LEASE_MARGIN;
    let poll = config.webhook_poll;
    Ok(Some(tokio::spawn(run(deliverer, lease, concurrency, poll, stop))))
}

/// Claims and delivers until `stop`, then waits for the deliveries in flight to be recorded: a
/// shutdown stops between attempts, never in the middle of one (each is bounded by the webhook
/// timeout, and [`crate::background::Background::stop`] bounds the wait as a whole).
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
    let deployment = deliverer.deployment.is_some();
    loop {
        let free = slots.available_permits();
        let mut claimed_all = false;
        if free > 0 {
            let lease_until =
                store::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
            match deliverer.store.claim_deliveries(lease_until, free as u32, deployment).await {
                Ok(batch) => {
                    claimed_all = batch.len() == free;
                    for delivery in batch {
                        if !deliverer.take_endpoint_share(delivery.endpoint_id) {
                            let at = store::now() + BUSY_ENDPOINT_WAIT;
                            if let Err(e) = deliverer.store.defer_delivery(delivery.id, at).await {
                                tracing::warn!(error = %e, "could not hand a delivery back");
                            }
                            continue;
                        }
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let (deliverer, finished) = (deliverer.clone(), finished.clone());
                        tokio::spawn(async move {
                            let endpoint = delivery.endpoint_id;
                            deliverer.deliver(delivery).await;
                            deliverer.release_endpoint_share(endpoint);
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim deliveries"),
            }
        }
        if claimed_all {
            // There may be more due: wait for half the slots to free up, so that one claim
            // fetches a batch rather than one delivery per finished attempt.
            while slots.available_permits() < refill {
                tokio::select! {
                    () = finished.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            continue;
        }
        let wait = match deliverer.store.next_delivery_due(deployment).await {
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

/// A failure before anything was sent, with the sentence the history shows.
struct NotSent(String);

impl Deliverer {
    /// Counts an attempt to `endpoint` in flight; false when it already has its share.
    fn take_endpoint_share(&self, endpoint: Option<Uuid>) -> bool {
        let Some(id) = endpoint else { return true };
        let Ok(mut busy) = self.busy.lock() else { return true };
        let count = busy.entry(id).or_insert(0);
        if *count >= self.per_endpoint {
            return false;
        }
        *count += 1;
        true
    }

    fn release_endpoint_share(&self, endpoint: Option<Uuid>) {
        let Some(id) = endpoint else { return };
        if let Ok(mut busy) = self.busy.lock() {
            if let Some(count) = busy.get_mut(&id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    busy.remove(&id);
                }
            }
        }
    }

    /// The signed request for one attempt, or why it cannot be sent; `Ok(None)`: nothing to do
    /// (the endpoint is gone, and its deliveries with it).
    async fn request(
        &self,
        delivery: &Delivery,
        body: Vec<u8>,
    ) -> Result<Option<reqwest::RequestBuilder>, NotSent> {
        let unix = Utc::now().timestamp();
        let id = delivery.event_id.to_string();
        let builder = match delivery.endpoint_id {
            None => {
                let Some(deployment) = &self.deployment else {
                    return Err(NotSent("HEXBROKER_WEBHOOK_URL is not set here".into()));
                };
                let keys: Vec<Zeroizing<Vec<u8>>> = deployment.secrets.iter().map(|s| key_bytes(s)).collect();
                deployment
                    .client
                    .post(deployment.url.clone())
                    .header("hexbroker-event-id", &id)
                    .header(
                        "hexbroker-signature",
                        signature(unix, &body, deployment.secrets.iter().map(|s| s.as_slice())),
                    )
                    .header(
                        "webhook-signature",
                        standard_signature(&id, unix, &body, keys.iter().map(|k| k.as_slice())),
                    )
            }
            Some(endpoint_id) => {
                let endpoint = match self.store.endpoint_secrets(endpoint_id).await {
                    Ok(Some(endpoint)) => endpoint,
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read a webhook endpoint");
                        return Err(NotSent("could not read the endpoint".into()));
                    }
                };
                if !endpoint.enabled {
                    return Err(NotSent("the endpoint is disabled".into()));
                }
                let url = url::Url::parse(&endpoint.url)
                    .map_err(|_| NotSent("the endpoint's url is not valid".into()))?;
                guard::check_send(&url, &self.allow)
                    .map_err(|refused| NotSent(format!("refused: {refused}")))?;
                let keys = endpoint.signing_keys(&self.keyring, store::now()).map_err(|e| {
                    tracing::warn!(endpoint_id = %endpoint_id, error = %e, "could not open a webhook endpoint's secret");
                    NotSent("the endpoint's secret could not be opened".into())
                })?;
                self.endpoints.post(url).header(
                    "webhook-signature",
                    standard_signature(&id, unix, &body, keys.iter().map(|k| k.as_slice())),
                )
            }
        };
        Ok(Some(
            builder
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", unix.to_string())
                .body(body),
        ))
    }

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
        let at = store::now();
        let started = Instant::now();
        let (status_code, failure) = match self.request(&delivery, body).await {
            Ok(None) => return,
            Err(NotSent(why)) => (None, Some((why.clone(), why))),
            Ok(Some(request)) => match request.send().await {
                Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = format!("the receiver answered {status}");
                    let detail = match excerpt(response).await {
                        text if text.is_empty() => error.clone(),
                        text => format!("{error}: {text}"),
                    };
                    (Some(status), Some((error, detail)))
                }
                Err(e) if guard::is_forbidden_error(&e) => {
                    let why = format!("refused: {}", guard::ForbiddenAddress);
                    (None, Some((why.clone(), why)))
                }
                Err(e) if e.is_timeout() => {
                    let why = "the receiver did not answer in time".to_owned();
                    (None, Some((why.clone(), why)))
                }
                Err(_) => {
                    let why = "could not reach the receiver".to_owned();
                    (None, Some((why.clone(), why)))
                }
            },
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let retry_at = failure.as_ref().and_then(|_| self.retry_at(&delivery, store::now()));
        if let Some((error, _)) = &failure {
            tracing::info!(
                event_id = %delivery.event_id,
                endpoint_id = ?delivery.endpoint_id,
                attempts = delivery.attempts,
                error,
                dead = retry_at.is_none(),
                "event delivery failed"
            );
        }
        let (error, detail) = match failure {
            Some((error, detail)) => (Some(error), Some(detail)),
            None => (None, None),
        };
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(at.timestamp()).unwrap_or(0),
            at.timestamp_subsec_nanos(),
        ));
        let outcome = AttemptOutcome { id, at, status_code, duration_ms, error, detail, retry_at };
        if let Err(e) = self.store.record_attempt(&delivery, &outcome).await {
            // The lease lapses and the delivery is tried again: at least once, never lost.
            tracing::warn!(event_id = %delivery.event_id, error = %e, "could not record a delivery's outcome");
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

/// The start of a refusing receiver's answer, read up to a bound, as one short line of text.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_CHARS)
        .collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
