//! Figures for the background checks (ignored by default; run by hand):
//!
//! ```text
//! HEXBROKER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres WATCH_BENCH_N=10000 \
//!   cargo test --release --test it watch_bench -- --ignored --nocapture
//! ```
//!
//! It stores `WATCH_BENCH_N` connections (default 10,000), each with its own token in a fake Hex
//! with no rate limits, makes every check due, and times one background round at each
//! concurrency in `WATCH_BENCH_CONCURRENCY` (default `4,16`). Then it measures proxied calls per
//! second on one connection for `WATCH_BENCH_SECONDS` (default 5) alone, and again while a round
//! runs, to show what a round costs the proxy.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{Backend, TestApp};
use fake_hex::RateLimits;
use hexbroker::hex::TokenType;
use hexbroker::store::{Credentials, HexIdentity, NewConnection};
use hexbroker::verify;
use secrecy::SecretString;
use serde_json::json;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Stores `n` connections straight into the database, each with a token the fake accepts.
async fn store_connections(app: &TestApp, n: usize) {
    let store = app.state.store.clone();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let chunk = n.div_ceil(8);
    for part in 0..8 {
        let (state, fake) = (app.state.clone(), app.fake.clone());
        let store = store.clone();
        tasks.spawn(async move {
            for i in (part * chunk)..((part + 1) * chunk).min(n) {
                let token = SecretString::from(fake.add_personal_token("acme", &format!("u{i}@example.com")));
                let id = uuid::Uuid::now_v7();
                let new = NewConnection {
                    id,
                    tenant: "default".into(),
                    end_user_id: format!("u{i}"),
                    end_user_email: None,
                    label: None,
                    metadata: json!({}),
                    credentials: Credentials {
                        subdomain: "acme".into(),
                        hex_url: None,
                        token_type: TokenType::Personal,
                        token_hint: hexbroker::hex::token_hint(&token),
                        token_fingerprint: state.hasher.token_fingerprint("acme", &token),
                        sealed: state.keyring.seal_token(
                            hexbroker::crypto::TokenBinding {
                                connection_id: id,
                                tenant: "default",
                                subdomain: "acme",
                                hex_url: None,
                            },
                            &token,
                        ),
                        identity: HexIdentity::default(),
                    },
                };
                let audit = hexbroker::audit::AuditContext::system(hexbroker::audit::Action::Connect);
                store.insert_connection(&new, &audit).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    eprintln!("stored {n} connections in {:.1}s", started.elapsed().as_secs_f64());
}

/// Proxied calls a second on connection `id`, 32 at a time, for `seconds`.
async fn proxy_rate(app: &TestApp, key: &str, id: &str, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, key, id, done) =
            (app.http.clone(), app.url("/v1/proxy/v1/projects"), key.to_owned(), id.to_owned(), done.clone());
        tasks.spawn(async move {
            while Instant::now() < until {
                let r = http.get(&url).bearer_auth(&key).header("connection-id", &id).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

async fn bench(backend: Backend) {
    let n: usize = setting("WATCH_BENCH_N", "10000").parse().unwrap();
    let seconds: u64 = setting("WATCH_BENCH_SECONDS", "5").parse().unwrap();
    let concurrencies: Vec<String> =
        setting("WATCH_BENCH_CONCURRENCY", "4,16").split(',').map(str::to_owned).collect();
    // The harness's own watchers stay quiet: every round here is the benchmark's.
    let settings = [("HEXBROKER_VERIFY_INTERVAL", "1h"), ("HEXBROKER_WATCH_POLL", "1h")];
    let Some(app) = TestApp::start_with(backend, &settings).await else {
        return;
    };
    app.fake.set_rate_limits(RateLimits::unlimited());
    store_connections(&app, n).await;
    let (probe, _) = app.connected(&app.key("connect").await).await;
    let proxy = app.key("proxy").await;
    let scheduled = verify::check_round(&app.state).await.unwrap().scheduled;
    assert_eq!(scheduled, n + 1);

    for concurrency in &concurrencies {
        let state = app.state_with(&[("HEXBROKER_VERIFY_CONCURRENCY", concurrency)]).await.unwrap();
        app.state.clock.advance(TimeDelta::hours(2));
        state.clock.set(app.state.clock.now());
        let started = Instant::now();
        let report = verify::check_round(&state).await.unwrap();
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "{backend:?}: round over {} connections at concurrency {concurrency}: {took:.1}s ({:.0} checks/s; \
             100,000 would take {:.0}s at this rate)",
            report.checked,
            report.checked as f64 / took,
            100_000.0 * took / report.checked.max(1) as f64
        );
    }

    let alone = proxy_rate(&app, &proxy, &probe, seconds).await;
    app.state.clock.advance(TimeDelta::hours(2));
    let state = app.state.clone();
    let round = tokio::spawn(async move {
        let started = Instant::now();
        let report = verify::check_round(&state).await.unwrap();
        (report, started.elapsed())
    });
    let during = proxy_rate(&app, &proxy, &probe, seconds).await;
    let (report, took) = round.await.unwrap();
    eprintln!(
        "{backend:?}: proxy alone {alone:.0} calls/s; during a round (concurrency {}, {} checks, {:.1}s) {during:.0} calls/s ({:+.1}%)",
        app.state.config.verify_concurrency,
        report.checked,
        took.as_secs_f64(),
        (during / alone - 1.0) * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand for the figures"]
async fn background_round_figures_on_postgres() {
    bench(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand for the figures"]
async fn background_round_figures_on_sqlite() {
    bench(Backend::Sqlite).await;
}
