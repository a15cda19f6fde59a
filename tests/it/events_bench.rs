//! The webhook figures for the issue's note, on Postgres (ignored by default: it takes a minute):
//! events delivered per second from a burst of 10,000 changes, and the time from a change's
//! commit to its delivery (p50/p99) with a healthy receiver at a steady 100 changes a second.
//!
//! ```sh
//! HEXBROKER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo test --test it events_bench -- --ignored --nocapture
//! ```

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use hexbroker::audit::{Action, AuditContext};
use hexbroker::crypto::Keyring;
use hexbroker::hex::TokenType;
use hexbroker::store::{Credentials, HexIdentity, NewConnection};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::sync::Notify;
use uuid::Uuid;

/// Arrival times by connection id.
type Arrivals = Arc<Mutex<HashMap<Uuid, Instant>>>;

async fn receiver() -> (String, Arrivals, Arc<Notify>) {
    let arrivals: Arrivals = Arc::default();
    let arrived = Arc::new(Notify::new());
    let (a, n) = (arrivals.clone(), arrived.clone());
    let handler = move |body: axum::body::Bytes| {
        let (a, n) = (a.clone(), n.clone());
        async move {
            let at = Instant::now();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let id = Uuid::parse_str(body["data"]["connection"]["id"].as_str().unwrap()).unwrap();
            a.lock().unwrap().entry(id).or_insert(at);
            n.notify_one();
            axum::http::StatusCode::OK
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, arrivals, arrived)
}

fn new_connection(keyring: &Keyring, n: u64) -> NewConnection {
    let id = Uuid::now_v7();
    NewConnection {
        id,
        tenant: "default".into(),
        end_user_id: format!("u{n}"),
        end_user_email: None,
        label: None,
        metadata: json!({}),
        credentials: Credentials {
            subdomain: "acme".into(),
            hex_url: None,
            token_type: TokenType::Personal,
            token_hint: "hxtp_…abcd".into(),
            token_fingerprint: n.to_le_bytes().repeat(4),
            sealed: keyring.seal_token(
                hexbroker::crypto::TokenBinding {
                    connection_id: id,
                    tenant: "default",
                    subdomain: "acme",
                    hex_url: None,
                },
                &SecretString::from(format!("hxtp_bench_{n}")),
            ),
            identity: HexIdentity::default(),
        },
    }
}

async fn wait_for(arrivals: &Arrivals, arrived: &Notify, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "not every event arrived");
        let _ = tokio::time::timeout(Duration::from_millis(200), arrived.notified()).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by hand for the figures"]
async fn webhook_throughput_and_commit_to_delivery_latency_on_postgres() {
    let (url, arrivals, arrived) = receiver().await;
    let settings = [("HEXBROKER_WEBHOOK_URL", url.as_str()), ("HEXBROKER_WEBHOOK_SECRET", "bench")];
    let Some(app) = TestApp::start_with(Backend::Postgres, &settings).await else {
        panic!("set HEXBROKER_TEST_POSTGRES_URL: this benchmark is for Postgres")
    };
    let keyring = Arc::new(Keyring::parse(&app.env["HEXBROKER_ENCRYPTION_KEYS"]).unwrap());
    let audit = AuditContext::system(Action::Connect);

    // 1. A burst: 10,000 changes committed as fast as 16 writers can, then drained.
    const BURST: u64 = 10_000;
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..16u64 {
        let (store, keyring, audit) = (app.state.store.clone(), keyring.clone(), audit.clone());
        writers.push(tokio::spawn(async move {
            for n in (w..BURST).step_by(16) {
                store.insert_connection(&new_connection(&keyring, n), &audit).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let committed = started.elapsed();
    wait_for(&arrivals, &arrived, BURST as usize).await;
    let drained = started.elapsed();
    println!(
        "burst: {BURST} changes committed in {:.2} s ({:.0}/s); all delivered {:.2} s after the first \
         commit: {:.0} events/s",
        committed.as_secs_f64(),
        BURST as f64 / committed.as_secs_f64(),
        drained.as_secs_f64(),
        BURST as f64 / drained.as_secs_f64()
    );

    // 2. Steady: 1,000 changes at 100 a second, each timed from its commit to its arrival.
    arrivals.lock().unwrap().clear();
    let mut commits = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for n in 0..1_000u64 {
        tick.tick().await;
        let new = new_connection(&keyring, BURST + n);
        app.state.store.insert_connection(&new, &audit).await.unwrap();
        commits.insert(new.id, Instant::now());
    }
    wait_for(&arrivals, &arrived, commits.len()).await;
    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> =
        commits.iter().map(|(id, at)| arrivals[id].saturating_duration_since(*at)).collect();
    latencies.sort();
    println!(
        "steady 100/s: commit to delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
}
