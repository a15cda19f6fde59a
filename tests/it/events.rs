//! Events and webhooks (§8), the audit trail (§10) and the reconnect rule (§6 step 5), on both
//! backends, against a webhook receiver inside the test that checks every signature itself.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{error_code, Backend, TestApp};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRETS: [&str; 2] = ["whsec-first-secret", "whsec-second-secret"];

/// One delivery the receiver accepted, after checking its signature under both secrets.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
}

/// A webhook receiver on port 0: it answers 503 to the first `failures` deliveries, then 200,
/// and reports every accepted delivery whose signature checked out.
struct Receiver {
    url: String,
    failures: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    /// How long each answer takes, in milliseconds (0 at first).
    delay_ms: Arc<AtomicUsize>,
    accepted: mpsc::UnboundedReceiver<Received>,
    bad_signatures: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let failures = Arc::new(AtomicUsize::new(failures));
        let attempts = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let bad_signatures = Arc::new(Mutex::new(Vec::new()));
        let (tx, accepted) = mpsc::unbounded_channel();
        let handler = {
            let (failures, attempts, bad) = (failures.clone(), attempts.clone(), bad_signatures.clone());
            let delay = delay_ms.clone();
            move |headers: HeaderMap, body: axum::body::Bytes| {
                let (failures, attempts, bad, tx) =
                    (failures.clone(), attempts.clone(), bad.clone(), tx.clone());
                let delay = Duration::from_millis(delay.load(Ordering::SeqCst) as u64);
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if let Err(problem) = check_signature(&headers, &body) {
                        bad.lock().unwrap().push(problem);
                        return StatusCode::BAD_REQUEST;
                    }
                    if failures.load(Ordering::SeqCst) > 0 {
                        failures.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let id = headers["hexbroker-event-id"].to_str().unwrap().to_owned();
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    let _ = tx.send(Received { id, body });
                    StatusCode::OK
                }
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, failures, attempts, delay_ms, accepted, bad_signatures }
    }

    /// The settings that point a broker here, with short retries.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HEXBROKER_WEBHOOK_URL", self.url.clone()),
            ("HEXBROKER_WEBHOOK_SECRET", SECRETS.join(",")),
            ("HEXBROKER_WEBHOOK_BACKOFF", "40ms".into()),
            ("HEXBROKER_WEBHOOK_BACKOFF_MAX", "100ms".into()),
            ("HEXBROKER_WEBHOOK_POLL", "200ms".into()),
        ]
    }

    /// The next accepted delivery, within a few seconds.
    async fn next(&mut self) -> Received {
        let received = tokio::time::timeout(Duration::from_secs(10), self.accepted.recv())
            .await
            .expect("a delivery within 10 s")
            .expect("the receiver runs");
        assert!(self.bad_signatures.lock().unwrap().is_empty(), "{:?}", self.bad_signatures);
        received
    }
}

/// Checks `hexbroker-signature` with the receiver's own HMAC code: a fresh timestamp and one
/// `v1=` that matches under each configured secret.
fn check_signature(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header =
        headers.get("hexbroker-signature").ok_or("no signature")?.to_str().map_err(|e| e.to_string())?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => return Err(format!("unexpected part {part}")),
        }
    }
    let t = t.ok_or("no t=")?;
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().map_err(|e| e.to_string())?;
    if !(0..=30).contains(&age) {
        return Err(format!("stale timestamp ({age} s)"));
    }
    for secret in SECRETS {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        if !v1.contains(&expected) {
            return Err(format!("no v1= for secret {secret}"));
        }
    }
    Ok(())
}

async fn start(backend: Backend, receiver: &Receiver, extra: &[(&'static str, &str)]) -> Option<TestApp> {
    let mut settings: Vec<(&str, String)> = receiver.settings();
    settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::start_with(backend, &settings).await
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Polls `check` every 50 ms until it holds, for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

async fn every_delivery_is_signed_with_each_secret(backend: Backend) {
    let mut receiver = Receiver::start(0).await;
    let Some(app) = start(backend, &receiver, &[]).await else { return };
    let key = app.key("connect,connections:write,admin").await;
    let (id, token) = app.connected(&key).await;
    let created = receiver.next().await;
    assert_eq!(created.body["type"], "connection.created");
    assert_eq!(created.body["id"], created.id.as_str(), "the header names the body's event");
    assert_eq!(created.body["data"]["connection"]["id"], id.as_str());
    assert_eq!(created.body["data"]["connection"]["status"], "active");
    assert!(created.body["data"]["connection"]["hex_url"].as_str().is_some_and(|u| u.contains("acme")));
    assert!(!created.body.to_string().contains(&token), "never the token");

    let patched = app
        .http
        .patch(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(&key)
        .json(&json!({"label": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let deleted =
        app.http.delete(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = receiver.next().await;
    assert_eq!(gone.body["type"], "connection.deleted", "a PATCH emits no event");
    assert_eq!(gone.body["data"]["connection"]["label"], "renamed");

    let listed = get(&app, &key, &format!("/v1/events?connection_id={id}")).await;
    let types: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["connection.deleted", "connection.created"], "newest first, once each");
    eventually("both delivered", || async {
        let delivered = get(&app, &key, "/v1/events?state=delivered").await;
        delivered["data"].as_array().unwrap().len() == 2
    })
    .await;
}

async fn a_receiver_that_fails_several_times_then_succeeds_gets_the_event(backend: Backend) {
    let mut receiver = Receiver::start(3).await;
    let Some(app) = start(backend, &receiver, &[]).await else { return };
    let key = app.key("connect,admin").await;
    let (id, _) = app.connected(&key).await;
    let received = receiver.next().await;
    assert_eq!(received.body["data"]["connection"]["id"], id.as_str());
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 4, "three refusals, then the delivery");
    eventually("listed as delivered after four attempts", || async {
        let events = get(&app, &key, "/v1/events").await;
        let event = &events["data"][0];
        event["state"] == "delivered" && event["attempts"] == 4 && event["last_error"].is_null()
    })
    .await;
}

async fn a_broker_restarted_between_attempts_loses_nothing(backend: Backend) {
    let mut receiver = Receiver::start(usize::MAX).await;
    let Some(mut app) = start(backend, &receiver, &[]).await else { return };
    let key = app.key("connect,admin").await;
    let (id, _) = app.connected(&key).await;
    eventually("a first attempt failed", || async { receiver.attempts.load(Ordering::SeqCst) >= 1 }).await;
    // The first broker stops (as a crash would, its work is in the database); a new one starts.
    app.background.take().unwrap().stop().await;
    receiver.failures.store(0, Ordering::SeqCst);
    let _second = app.second_broker(&[]).await;
    let received = receiver.next().await;
    assert_eq!(received.body["type"], "connection.created");
    assert_eq!(received.body["data"]["connection"]["id"], id.as_str());
}

async fn a_stop_waits_for_the_delivery_in_flight_and_records_it(backend: Backend) {
    let mut receiver = Receiver::start(0).await;
    receiver.delay_ms.store(800, Ordering::SeqCst);
    let Some(mut app) = start(backend, &receiver, &[]).await else { return };
    let key = app.key("connect,admin").await;
    let (id, _) = app.connected(&key).await;
    eventually("the delivery is in flight", || async { receiver.attempts.load(Ordering::SeqCst) >= 1 }).await;
    app.background.take().unwrap().stop().await;
    // Recorded before the stop returned: no waiting here.
    let events = get(&app, &key, "/v1/events").await;
    let event = &events["data"][0];
    assert_eq!(event["state"], "delivered", "{event}");
    assert_eq!(event["attempts"], 1, "{event}");
    let received = receiver.accepted.try_recv().expect("the receiver got it");
    assert_eq!(received.body["data"]["connection"]["id"], id.as_str());
}

/// Postgres only: SQLite is one process's embedded database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_postgres_deliver_each_event_once() {
    let mut receiver = Receiver::start(0).await;
    let Some(app) = start(Backend::Postgres, &receiver, &[]).await else { return };
    let second = app.second_broker(&[]).await;
    let key = app.key("connect,admin").await;
    app.fake.add_workspace("acme");
    let mut ids = Vec::new();
    for i in 0..30 {
        let token = app.fake.add_personal_token("acme", "ada@example.com");
        let base = if i % 2 == 0 { app.base.clone() } else { second.clone() };
        let response = app
            .http
            .post(format!("{base}/v1/connect"))
            .bearer_auth(&key)
            .json(&json!({"subdomain": "acme", "token": token, "end_user_id": format!("u{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..ids.len() {
        *seen.entry(receiver.next().await.id).or_default() += 1;
    }
    // A delivery's attempt is counted when a broker claims it, so once the outbox says every
    // event was delivered after exactly one claim, no second delivery can still be on its way.
    eventually("every event is recorded as delivered", || async {
        get(&app, &key, "/v1/events?state=delivered&limit=100").await["data"].as_array().unwrap().len()
            == ids.len()
    })
    .await;
    let delivered = get(&app, &key, "/v1/events?state=delivered&limit=100").await;
    for event in delivered["data"].as_array().unwrap() {
        assert_eq!(event["attempts"], 1, "claimed once: {event}");
    }
    while let Ok(extra) = receiver.accepted.try_recv() {
        *seen.entry(extra.id).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "every event delivered");
    assert!(seen.values().all(|n| *n == 1), "each exactly once: {seen:?}");
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), ids.len(), "one attempt each");
}

async fn an_event_past_its_last_attempt_is_dead_and_can_be_redelivered(backend: Backend) {
    let mut receiver = Receiver::start(usize::MAX).await;
    let Some(app) = start(backend, &receiver, &[("HEXBROKER_WEBHOOK_RETRY_FOR", "300ms")]).await else {
        return;
    };
    let key = app.key("connect,admin").await;
    app.connected(&key).await;
    eventually("the event is dead", || async {
        !get(&app, &key, "/v1/events?state=dead").await["data"][0].is_null()
    })
    .await;
    let event = get(&app, &key, "/v1/events?state=dead").await["data"][0].clone();
    assert!(event["attempts"].as_i64().unwrap() >= 2, "retried before giving up: {event}");
    assert_eq!(event["last_error"], "the receiver answered 503");

    receiver.failures.store(0, Ordering::SeqCst);
    let id = event["id"].as_str().unwrap();
    let redeliver =
        |id: String| app.http.post(app.url(&format!("/v1/events/{id}/redeliver"))).bearer_auth(&key).send();
    assert_eq!(redeliver(id.to_owned()).await.unwrap().status(), 202);
    assert_eq!(receiver.next().await.id, id);
    let unknown = redeliver(uuid::Uuid::now_v7().to_string()).await.unwrap();
    assert_eq!(error_code(unknown).await, (404, "not_found".into()));
    let reader = app.key("connections:read").await;
    let refused = app.http.get(app.url("/v1/events")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(error_code(refused).await, (403, "insufficient_scope".into()));
    let audit = get(&app, &key, "/v1/audit-events?action=event.redeliver").await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1);
}

async fn a_receiver_that_hangs_never_holds_up_the_api(backend: Backend) {
    // A receiver that holds every delivery until the test lets go.
    let (release, gate) = tokio::sync::watch::channel(false);
    let held = Arc::new(AtomicUsize::new(0));
    let handler = {
        let held = held.clone();
        move || {
            let (mut gate, held) = (gate.clone(), held.clone());
            async move {
                held.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                StatusCode::OK
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let settings = [
        ("HEXBROKER_WEBHOOK_URL", url.as_str()),
        ("HEXBROKER_WEBHOOK_SECRET", "s"),
        ("HEXBROKER_WEBHOOK_CONCURRENCY", "2"),
        ("HEXBROKER_WEBHOOK_TIMEOUT", "60s"),
    ];
    let Some(app) = TestApp::start_with(backend, &settings).await else { return };
    let key = app.key("connect,admin").await;
    app.fake.add_workspace("acme");
    for i in 0..6 {
        let token = app.fake.add_personal_token("acme", "ada@example.com");
        let body = json!({"subdomain": "acme", "token": token, "end_user_id": format!("u{i}")});
        assert_eq!(app.connect(&key, body).await.status(), 201, "the API answers while deliveries hang");
    }
    eventually("two deliveries are held", || async { held.load(Ordering::SeqCst) == 2 }).await;
    let pending = get(&app, &key, "/v1/events?state=pending").await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 6, "held and queued events wait their turn");
    release.send(true).unwrap();
    eventually("all six delivered", || async {
        get(&app, &key, "/v1/events?state=delivered").await["data"].as_array().unwrap().len() == 6
    })
    .await;
}

async fn session(app: &TestApp, key: &str, body: Value) -> Value {
    let response =
        app.http.post(app.url("/v1/connect/sessions")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn submit(app: &TestApp, session_token: &str, subdomain: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/connect"))
        .bearer_auth(session_token)
        .json(&json!({"subdomain": subdomain, "token": token}))
        .send()
        .await
        .unwrap()
}

async fn reconnect_to_another_workspace_is_refused_and_nothing_changes(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let key = app.key("connect,connections:read,proxy,admin").await;
    let (id, _) = app.connected(&key).await;
    let before = get(&app, &key, &format!("/v1/connections/{id}")).await;
    let reconnect = session(&app, &key, json!({"end_user_id": "u1", "connection_id": id})).await;
    let session_token = reconnect["token"].as_str().unwrap();

    app.fake.add_workspace("globex");
    let elsewhere = app.fake.add_personal_token("globex", "ada@example.com");
    let refused = submit(&app, session_token, "globex", &elsewhere).await;
    assert_eq!(error_code(refused).await, (422, "hex_workspace_mismatch".into()));
    let after = get(&app, &key, &format!("/v1/connections/{id}")).await;
    assert_eq!(after, before, "nothing about the connection changed");
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "the old token still serves");

    // The session was not used up: the person pastes a token of the right workspace.
    let fresh = app.fake.add_personal_token("acme", "ada@example.com");
    assert_eq!(submit(&app, session_token, "acme", &fresh).await.status(), 200);
    let replaced = get(&app, &key, &format!("/v1/connections/{id}")).await;
    assert_ne!(replaced["token_hint"], before["token_hint"]);
    let events = get(&app, &key, &format!("/v1/events?connection_id={id}")).await;
    let types: Vec<&str> =
        events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["connection.credentials_replaced", "connection.created"]);
    let audit = get(&app, &key, &format!("/v1/audit-events?connection_id={id}&action=reconnect")).await;
    let outcomes: Vec<&str> =
        audit["data"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["ok", "hex_workspace_mismatch"]);
}

async fn the_audit_trail_records_each_action_and_holds_no_secret(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let admin = app.key("admin").await;
    let admin_id =
        app.state.store.api_key_by_hash(&app.state.hasher.secret_hash(&admin)).await.unwrap().unwrap().id;
    let (id, hex_token) = app.connected(&admin).await;
    let mut secrets = vec![admin.clone(), hex_token.clone()];

    let created = session(&app, &admin, json!({"end_user_id": "u1", "connection_id": id})).await;
    let session_token = created["token"].as_str().unwrap().to_owned();
    let new_hex_token = app.fake.add_personal_token("acme", "ada@example.com");
    assert_eq!(submit(&app, &session_token, "acme", &new_hex_token).await.status(), 200);
    secrets.extend([session_token, new_hex_token.clone()]);

    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = app.http.request(method, app.url(&path)).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let patched =
        send(reqwest::Method::PATCH, format!("/v1/connections/{id}"), Some(json!({"label": "x"}))).await;
    assert_eq!(patched.unwrap().status(), 200);
    let verified = send(reqwest::Method::POST, format!("/v1/connections/{id}/verify"), None).await;
    assert_eq!(verified.unwrap().status(), 200);
    let minted: Value =
        send(reqwest::Method::POST, format!("/v1/connections/{id}/keys"), Some(json!({"scopes": ["proxy"]})))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let key_id = minted["id"].as_str().unwrap();
    secrets.push(minted["key"].as_str().unwrap().to_owned());
    let revoked = send(reqwest::Method::DELETE, format!("/v1/connections/{id}/keys/{key_id}"), None).await;
    assert_eq!(revoked.unwrap().status(), 204);
    // Hex revokes the token; the proxy's 401 makes hexbroker's own status change.
    app.fake.revoke_token(&new_hex_token);
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&admin)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 401);
    // The token is re-checked beside the response (§7): wait for the invalidation.
    eventually("the 401's invalidation", || async {
        get(&app, &admin, &format!("/v1/connections/{id}")).await["status"] == "invalid"
    })
    .await;
    let deleted = send(reqwest::Method::DELETE, format!("/v1/connections/{id}"), None).await;
    assert_eq!(deleted.unwrap().status(), 204);

    let trail = get(&app, &admin, &format!("/v1/audit-events?connection_id={id}&limit=200")).await;
    let entries = trail["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    for action in
        ["connect", "session.create", "reconnect", "update", "verify", "key.create", "key.revoke", "delete"]
    {
        assert!(actions.contains(&action), "{action} is recorded: {actions:?}");
    }
    let by_key = entries.iter().find(|e| e["action"] == "update").unwrap();
    assert_eq!(by_key["actor_type"], "key");
    assert_eq!(by_key["actor_id"], admin_id.to_string());
    assert_eq!(by_key["actor_name"], "test");
    assert_eq!(by_key["outcome"], "ok");
    assert!(by_key["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(by_key["client_addr"], "127.0.0.1");
    let by_session = entries.iter().find(|e| e["action"] == "reconnect").unwrap();
    assert_eq!(
        (by_session["actor_type"].as_str(), by_session["actor_id"].as_str()),
        (Some("session"), created["id"].as_str())
    );
    let by_system = entries.iter().find(|e| e["action"] == "status.change").expect("the 401's invalidation");
    assert_eq!(
        (by_system["actor_id"].as_str(), by_system["detail"].as_str()),
        (Some("system"), Some("active -> invalid"))
    );
    let only_system = get(&app, &admin, "/v1/audit-events?actor=system").await;
    assert!(only_system["data"].as_array().unwrap().iter().all(|e| e["actor_id"] == "system"));

    // Every row of both tables, read raw, holds none of the secrets this test used.
    let raw = raw_rows(&app).await;
    for secret in &secrets {
        assert!(!trail.to_string().contains(secret.as_str()), "the trail holds a secret");
        assert!(!raw.contains(secret.as_str()), "a stored row holds a secret");
    }
}

/// Every audit and event row as text.
async fn raw_rows(app: &TestApp) -> String {
    let query = "select coalesce(actor_id, '') || ' ' || coalesce(actor_name, '') || ' ' || action || ' ' || outcome \
                 || ' ' || coalesce(detail, '') || ' ' || coalesce(request_id, '') || ' ' || coalesce(client_addr, '') \
                 from audit_event";
    let events = "select cast(payload as text) || ' ' || coalesce(last_error, '') from event";
    let mut rows: Vec<String> = Vec::new();
    rows.extend(app.db.texts(query).await);
    rows.extend(app.db.texts(events).await);
    assert!(rows.len() > 10, "the tables were read");
    rows.join("\n")
}

on_both_backends!(
    every_delivery_is_signed_with_each_secret,
    a_receiver_that_fails_several_times_then_succeeds_gets_the_event,
    a_broker_restarted_between_attempts_loses_nothing,
    a_stop_waits_for_the_delivery_in_flight_and_records_it,
    an_event_past_its_last_attempt_is_dead_and_can_be_redelivered,
    a_receiver_that_hangs_never_holds_up_the_api,
    reconnect_to_another_workspace_is_refused_and_nothing_changes,
    the_audit_trail_records_each_action_and_holds_no_secret,
);
