//! The watchers (§7's 401 rule, §8): expiry warnings and expiry on a clock the test moves,
//! background checks claimed once per round across replicas, the re-check after a Hex 401, and
//! `last_used_at` written from memory in batches.

use crate::common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{Backend, TestApp};
use hexbroker::proxy::Unauthorized;
use hexbroker::verify::{self, CheckReport, ExpiryReport};
use serde_json::{json, Value};

/// Starts hexbroker with `extra`, its own watchers quiet (every round here is the test's).
async fn start(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut settings = vec![("HEXBROKER_WATCH_POLL", "1h")];
    settings.extend_from_slice(extra);
    TestApp::start_with(backend, &settings).await
}

/// `GET /v1/connections/{id}`.
async fn connection(app: &TestApp, id: &str) -> Value {
    let key = app.key("connections:read").await;
    let response =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A proxied `GET /v1/projects` on connection `id`.
async fn proxied(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(key)
        .header("connection-id", id)
        .send()
        .await
        .unwrap()
}

/// Connects a fresh personal token of `acme` for `end_user`; returns the id and the token.
async fn connect_for(app: &TestApp, key: &str, end_user: &str) -> (String, String) {
    app.fake.add_workspace("acme");
    let token = app.fake.add_personal_token("acme", &format!("{end_user}@example.com"));
    let response =
        app.connect(key, json!({"subdomain": "acme", "token": token, "end_user_id": end_user})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), token)
}

/// The types of connection `id`'s events in the outbox, oldest first.
async fn events(app: &TestApp, id: &str) -> Vec<String> {
    let key = app.key("admin").await;
    let url = app.url(&format!("/v1/events?connection_id={id}&limit=200"));
    let page: Value = app.http.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap();
    let data = page["data"].as_array().expect("a page of events");
    data.iter().rev().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// The actors of connection `id`'s `status.change` audit entries.
async fn status_changes_by(app: &TestApp, id: &str) -> Vec<String> {
    let key = app.key("admin").await;
    let url = app.url(&format!("/v1/audit-events?connection_id={id}&action=status.change"));
    let page: Value = app.http.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap();
    page["data"].as_array().unwrap().iter().map(|e| e["actor_id"].as_str().unwrap().to_owned()).collect()
}

/// How many `users/me` requests the fake has seen.
fn users_me(app: &TestApp) -> usize {
    app.fake.requests().iter().filter(|r| r.path.ends_with("/api/v1/users/me")).count()
}

/// Polls `check` every 20 ms for up to two seconds (for work spawned beside a response).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within two seconds");
}

async fn a_token_is_warned_about_once_then_expires_on_time(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_EXPIRY_WARNING", "3d")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let expires = connection(&app, &id).await["token_expires_at"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = expires.parse().unwrap();

    assert_eq!(verify::expiry_round(&app.state).await.unwrap(), ExpiryReport::default(), "30 days out");
    app.state.clock.set(expires - TimeDelta::days(3) + TimeDelta::minutes(1));
    assert_eq!(verify::expiry_round(&app.state).await.unwrap(), ExpiryReport { warned: 1, expired: 0 });
    assert_eq!(verify::expiry_round(&app.state).await.unwrap(), ExpiryReport::default(), "warned once");
    assert_eq!(connection(&app, &id).await["status"], "active");

    app.state.clock.set(expires + TimeDelta::seconds(1));
    // Shown expired at once (derived), stored expired by the round, once.
    assert_eq!(connection(&app, &id).await["status"], "expired");
    assert_eq!(verify::expiry_round(&app.state).await.unwrap(), ExpiryReport { warned: 0, expired: 1 });
    assert_eq!(verify::expiry_round(&app.state).await.unwrap(), ExpiryReport::default(), "expired once");
    let shown = connection(&app, &id).await;
    assert_eq!(shown["status"], "expired");
    assert!(shown["status_reason"].as_str().unwrap().contains("expiry"));

    let proxy = app.key("proxy").await;
    app.fake.clear_requests();
    let (status, code) = common::error_code(proxied(&app, &proxy, &id).await).await;
    assert_eq!((status, code.as_str()), (424, "connection_expired"));
    assert!(app.fake.requests().is_empty(), "Hex is not asked about an expired token");

    assert_eq!(events(&app, &id).await, ["connection.created", "connection.expiring", "connection.expired"]);
    assert_eq!(status_changes_by(&app, &id).await, ["system", "system"], "audited as the system's");
}

async fn a_reconnect_with_a_new_token_is_warned_about_again(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_EXPIRY_WARNING", "3d")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    app.state.clock.advance(TimeDelta::days(28));
    assert_eq!(verify::expiry_round(&app.state).await.unwrap().warned, 1);
    // A second replica on the same database finds nothing left to warn about.
    let other = app.state_with(&[]).await.unwrap();
    other.clock.set(app.state.clock.now());
    assert_eq!(verify::expiry_round(&other).await.unwrap(), ExpiryReport::default());

    let connect = app.key("connect").await;
    let session: Value = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&connect)
        .json(&json!({"end_user_id": "u1", "connection_id": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The fake's new token expires 30 days from the real now, within the warning of the moved clock.
    let token = app.fake.add_personal_token("acme", "ada@example.com");
    let replaced = app
        .http
        .post(app.url("/v1/connect"))
        .bearer_auth(session["token"].as_str().unwrap())
        .json(&json!({"subdomain": "acme", "token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    assert_eq!(verify::expiry_round(&app.state).await.unwrap().warned, 1, "the new token is warned about");
    assert_eq!(verify::expiry_round(&app.state).await.unwrap().warned, 0);
    let kinds = events(&app, &id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "connection.expiring").count(), 2, "{kinds:?}");
}

async fn a_background_check_invalidates_a_revoked_token_and_reactivates_it_when_good_again(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_VERIFY_INTERVAL", "1h")]).await else {
        return;
    };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let first = verify::check_round(&app.state).await.unwrap();
    assert_eq!((first.scheduled, first.checked), (1, 0), "a new connection is checked an interval on");
    let next: chrono::DateTime<chrono::Utc> =
        connection(&app, &id).await["next_verify_at"].as_str().unwrap().parse().unwrap();
    let ahead = next - app.state.clock.now();
    assert!(ahead > TimeDelta::minutes(50) && ahead < TimeDelta::minutes(70), "{ahead}");

    app.fake.revoke_token(&token);
    app.state.clock.advance(TimeDelta::hours(2));
    let round = verify::check_round(&app.state).await.unwrap();
    assert_eq!((round.checked, round.invalidated), (1, 1), "{round:?}");
    assert_eq!(connection(&app, &id).await["status"], "invalid");
    let proxy = app.key("proxy").await;
    assert_eq!(common::error_code(proxied(&app, &proxy, &id).await).await.1, "connection_invalid");
    assert_eq!(verify::check_round(&app.state).await.unwrap(), CheckReport::default(), "not due again yet");

    app.state.clock.advance(TimeDelta::hours(2));
    let again = verify::check_round(&app.state).await.unwrap();
    assert_eq!((again.checked, again.invalidated), (1, 0), "still refused: no second event");

    app.fake.reinstate_token(&token);
    app.state.clock.advance(TimeDelta::hours(2));
    let back = verify::check_round(&app.state).await.unwrap();
    assert_eq!((back.checked, back.reactivated), (1, 1), "{back:?}");
    let shown = connection(&app, &id).await;
    assert_eq!(shown["status"], "active");
    assert!(shown["status_reason"].is_null());
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);

    assert_eq!(
        events(&app, &id).await,
        ["connection.created", "connection.invalidated", "connection.reactivated"],
        "one event for each change, none for a check that changed nothing"
    );
    assert_eq!(status_changes_by(&app, &id).await, ["system", "system"]);

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"hexbroker_watch_total{kind="checked"} 3"#,
        r#"hexbroker_watch_total{kind="invalidated"} 1"#,
        r#"hexbroker_watch_total{kind="reactivated"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}

async fn two_replicas_check_each_connection_once_per_round(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_VERIFY_INTERVAL", "1h")]).await else {
        return;
    };
    let key = app.key("connect").await;
    const N: usize = 24;
    for i in 0..N {
        connect_for(&app, &key, &format!("user{i}")).await;
    }
    let other = app.state_with(&[("HEXBROKER_VERIFY_CONCURRENCY", "3")]).await.unwrap();
    assert_eq!(verify::check_round(&app.state).await.unwrap().scheduled, N);
    for round in 0..2 {
        app.state.clock.advance(TimeDelta::hours(2));
        other.clock.advance(TimeDelta::hours(2));
        app.fake.clear_requests();
        let (a, b) = tokio::join!(verify::check_round(&app.state), verify::check_round(&other));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.checked + b.checked, N, "round {round}: {a:?} {b:?}");
        assert_eq!(users_me(&app), N, "round {round}: each connection once");
    }
}

async fn a_busy_connection_has_its_check_pushed_back_not_into_a_429(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_VERIFY_INTERVAL", "1h")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    verify::check_round(&app.state).await.unwrap();
    app.state.clock.advance(TimeDelta::hours(2));
    let proxy = app.key("proxy").await;
    for _ in 0..20 {
        assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    }
    app.fake.clear_requests();
    let round = verify::check_round(&app.state).await.unwrap();
    assert_eq!((round.checked, round.deferred), (0, 1), "{round:?}");
    assert_eq!(users_me(&app), 0, "Hex was not asked");
    let next: chrono::DateTime<chrono::Utc> =
        connection(&app, &id).await["next_verify_at"].as_str().unwrap().parse().unwrap();
    assert!(next > app.state.clock.now() + TimeDelta::minutes(4), "pushed back by minutes");
}

async fn passing_trouble_changes_nothing_and_retries_sooner(backend: Backend) {
    let Some(app) = start(backend, &[("HEXBROKER_VERIFY_INTERVAL", "24h")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    verify::check_round(&app.state).await.unwrap();
    app.state.clock.advance(TimeDelta::hours(30));
    // users/me and the projects check it falls back to both answer 503.
    app.fake.fail_next(2, 503, None);
    let round = verify::check_round(&app.state).await.unwrap();
    assert_eq!((round.checked, round.trouble), (1, 1), "{round:?}");
    let shown = connection(&app, &id).await;
    assert_eq!(shown["status"], "active");
    let next: chrono::DateTime<chrono::Utc> = shown["next_verify_at"].as_str().unwrap().parse().unwrap();
    assert!(next < app.state.clock.now() + TimeDelta::hours(1), "sooner than the interval: {next}");
}

async fn a_401_from_one_path_leaves_a_connection_hex_still_accepts_active(backend: Backend) {
    let Some(app) = start(backend, &[]).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let proxy = app.key("proxy").await;
    app.fake.clear_requests();
    app.fake.fail_next(1, 401, None);
    let answer = proxied(&app, &proxy, &id).await;
    assert_eq!(answer.status(), 401, "the caller gets Hex's answer");
    assert_eq!(answer.headers()["hexbroker-upstream"], "hex");
    eventually("the re-check", || async { users_me(&app) == 1 }).await;
    assert_eq!(connection(&app, &id).await["status"], "active");
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);

    // Within the minute, another 401 does not ask Hex again. The decision is counted before the
    // response goes back, so the count is read at once, with no spawned work to wait for.
    let rechecks = || async {
        let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(r#"hexbroker_watch_total{kind="recheck"} "#))
            .map(|n| n.parse::<u64>().unwrap())
    };
    assert_eq!(rechecks().await, Some(1), "the first 401 started a re-check");
    app.fake.fail_next(1, 401, None);
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 401);
    assert_eq!(rechecks().await, Some(1), "at most one re-check a minute");
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    assert_eq!(users_me(&app), 1, "at most one re-check a minute");
    assert_eq!(events(&app, &id).await, ["connection.created"]);
}

async fn a_token_hex_refuses_through_the_proxy_invalidates_its_connection(backend: Backend) {
    let Some(app) = start(backend, &[]).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let proxy = app.key("proxy").await;
    app.fake.revoke_token(&token);
    let answer = proxied(&app, &proxy, &id).await;
    assert_eq!(answer.status(), 401, "the caller gets Hex's answer, not a 500");
    eventually("the invalidation", || async { connection(&app, &id).await["status"] == "invalid" }).await;
    assert_eq!(common::error_code(proxied(&app, &proxy, &id).await).await.1, "connection_invalid");
    assert_eq!(events(&app, &id).await, ["connection.created", "connection.invalidated"]);
    assert_eq!(status_changes_by(&app, &id).await, ["system"]);
}

async fn a_token_replaced_while_a_call_with_the_old_one_was_in_flight_stays_active(backend: Backend) {
    let Some(app) = start(backend, &[]).await else { return };
    let (id, old_token) = app.connected(&app.key("connect").await).await;
    let uuid = id.parse().unwrap();
    // What the in-flight call read: the row with the old token.
    let row = app.state.store.connection_with_token("default", uuid).await.unwrap().unwrap();
    let old_nonce = row.1.nonce.clone();

    // Meanwhile the person reconnects with a new token, and the old one is revoked.
    let connect = app.key("connect").await;
    let session: Value = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&connect)
        .json(&json!({"end_user_id": "u1", "connection_id": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = app.fake.add_personal_token("acme", "ada@example.com");
    let replaced = app
        .http
        .post(app.url("/v1/connect"))
        .bearer_auth(session["token"].as_str().unwrap())
        .json(&json!({"subdomain": "acme", "token": new_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    app.fake.revoke_token(&old_token);

    // The old call's 401 comes back now: Hex refuses the old token, but it is no longer stored.
    let call = |nonce: Vec<u8>, token: &str| Unauthorized {
        tenant: "default".into(),
        id: uuid,
        subdomain: "acme".into(),
        hex_url: None,
        nonce,
        token: token.to_owned().into(),
    };
    let invalidated =
        hexbroker::proxy::recheck_after_unauthorized(&app.state.proxy, call(old_nonce, &old_token)).await;
    assert!(!invalidated.unwrap());
    assert_eq!(connection(&app, &id).await["status"], "active");

    // The same failure on the token it holds now does invalidate.
    app.fake.revoke_token(&new_token);
    let current = app.state.store.connection_with_token("default", uuid).await.unwrap().unwrap();
    let invalidated = hexbroker::proxy::recheck_after_unauthorized(
        &app.state.proxy,
        call(current.1.nonce.clone(), &new_token),
    )
    .await;
    assert!(invalidated.unwrap());
    assert_eq!(connection(&app, &id).await["status"], "invalid");
    let kinds = events(&app, &id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "connection.invalidated").count(), 1, "{kinds:?}");
}

async fn last_used_at_appears_after_a_proxied_call_and_a_flush_kept_to_the_minute(backend: Backend) {
    let Some(app) = start(backend, &[]).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    assert!(connection(&app, &id).await["last_used_at"].is_null());
    let proxy = app.key("proxy").await;
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    let called = app.state.clock.now();
    assert!(connection(&app, &id).await["last_used_at"].is_null(), "not written on the hot path");
    assert_eq!(verify::flush_last_used(&app.state).await.unwrap(), 1);
    let used: chrono::DateTime<chrono::Utc> =
        connection(&app, &id).await["last_used_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(used.timestamp() % 60, 0, "kept to the minute: {used}");
    assert!(used <= called && called - used < TimeDelta::minutes(1), "{used} vs {called}");
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    assert!(verify::flush_last_used(&app.state).await.unwrap() <= 1, "one write a minute at most");
    app.state.clock.advance(TimeDelta::minutes(5));
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    assert_eq!(verify::flush_last_used(&app.state).await.unwrap(), 1);
    let later: chrono::DateTime<chrono::Utc> =
        connection(&app, &id).await["last_used_at"].as_str().unwrap().parse().unwrap();
    assert!(later - used >= TimeDelta::minutes(4), "{later} after {used}");
}

async fn the_watchers_run_on_their_own_and_stop_on_shutdown(backend: Backend) {
    // The replica's own background work (as `hexbroker serve` starts it), polling quickly.
    let Some(mut app) = start(backend, &[("HEXBROKER_WATCH_POLL", "50ms")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let proxy = app.key("proxy").await;
    assert_eq!(proxied(&app, &proxy, &id).await.status(), 200);
    eventually("the background flush and schedule", || async {
        let shown = connection(&app, &id).await;
        !shown["last_used_at"].is_null() && !shown["next_verify_at"].is_null()
    })
    .await;
    let background = app.background.take().expect("the harness starts the background work");
    tokio::time::timeout(Duration::from_secs(2), background.stop()).await.expect("the watchers stop");
}

on_both_backends!(
    a_token_is_warned_about_once_then_expires_on_time,
    a_reconnect_with_a_new_token_is_warned_about_again,
    a_background_check_invalidates_a_revoked_token_and_reactivates_it_when_good_again,
    two_replicas_check_each_connection_once_per_round,
    a_busy_connection_has_its_check_pushed_back_not_into_a_429,
    passing_trouble_changes_nothing_and_retries_sooner,
    a_401_from_one_path_leaves_a_connection_hex_still_accepts_active,
    a_token_hex_refuses_through_the_proxy_invalidates_its_connection,
    a_token_replaced_while_a_call_with_the_old_one_was_in_flight_stays_active,
    last_used_at_appears_after_a_proxied_call_and_a_flush_kept_to_the_minute,
    the_watchers_run_on_their_own_and_stop_on_shutdown,
);
