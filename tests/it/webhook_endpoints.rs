//! Webhook endpoints per tenant (§13), on both backends, against receivers inside the test on
//! loopback addresses (allow-listed): tenant isolation, type filters, disabled endpoints, retries
//! that keep `webhook-id`, a failing endpoint that delays no other, rotation, test events,
//! history, audit, restarts, two replicas, and refused URLs. Signatures are verified by the
//! Standard Webhooks reference library (PyPI `standardwebhooks`), not only by our own code.

use crate::common;

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use common::{error_code, Backend, TestApp};
use serde_json::{json, Value};

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn webhook_id(&self) -> String {
        self.header("webhook-id").to_owned()
    }
}

/// A receiver on 127.0.0.1: answers `status` (after `delay_ms`), and keeps every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    got: Arc<Mutex<Vec<Got>>>,
    requests: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Self {
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let handler = {
            let (status, delay_ms, got, requests) =
                (status.clone(), delay_ms.clone(), got.clone(), requests.clone());
            move |headers: HeaderMap, body: String| {
                let (status, delay_ms, got, requests) =
                    (status.clone(), delay_ms.clone(), got.clone(), requests.clone());
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
                    let code = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    got.lock().unwrap().push(Got { headers, body });
                    (code, "receiver says\u{7} no, and a long tail that goes on".repeat(20))
                }
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, status, delay_ms, got, requests }
    }

    /// Every request so far, whatever it was answered.
    fn received(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

const SETTINGS: [(&str, &str); 5] = [
    ("HEXBROKER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
    ("HEXBROKER_WEBHOOK_BACKOFF", "40ms"),
    ("HEXBROKER_WEBHOOK_BACKOFF_MAX", "100ms"),
    ("HEXBROKER_WEBHOOK_POLL", "200ms"),
    ("HEXBROKER_WEBHOOK_TIMEOUT", "2s"),
];

async fn start(backend: Backend) -> Option<TestApp> {
    TestApp::start_with(backend, &SETTINGS).await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 15 s");
}

async fn call(app: &TestApp, key: &str, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.http.request(method.parse().unwrap(), app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Registers an endpoint; returns its id and secret.
async fn register(app: &TestApp, key: &str, url: &str, types: Value) -> (String, String) {
    let body = json!({"url": url, "description": "test receiver", "event_types": types});
    let created = ok_json(call(app, key, "POST", "/v1/webhook-endpoints", Some(body)).await, 201).await;
    assert_eq!(created["enabled"], true);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Connects a fresh token for `end_user` with `key` (which holds `connect`); returns its id.
async fn connect(app: &TestApp, key: &str, end_user: &str) -> String {
    app.fake.add_workspace("acme");
    let token = app.fake.add_personal_token("acme", &format!("{end_user}@example.com"));
    let response =
        app.connect(key, json!({"subdomain": "acme", "token": token, "end_user_id": end_user})).await;
    ok_json(response, 201).await["id"].as_str().unwrap().to_owned()
}

/// Verifies each (secret, delivery) with the Standard Webhooks reference library; false when it
/// is not available here (after saying so, or failing under CI=true).
fn verified_by_reference_library(items: &[(&str, &Got)]) -> bool {
    use std::io::Write as _;
    let how = "set HEXBROKER_TEST_PYTHON to a Python with `standardwebhooks` installed (.ci/run does)";
    let Ok(python) = std::env::var("HEXBROKER_TEST_PYTHON") else {
        common::skip("the Standard Webhooks reference library", how);
        return false;
    };
    let input: Vec<Value> = items
        .iter()
        .map(|(secret, got)| {
            let headers: serde_json::Map<String, Value> =
                got.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            json!({"secret": secret, "headers": headers, "body": got.body})
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/verify_standard_webhook.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run HEXBROKER_TEST_PYTHON");
    child.stdin.take().unwrap().write_all(serde_json::to_string(&input).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        common::skip("the Standard Webhooks reference library", how);
        return false;
    }
    assert!(output.status.success(), "the reference library refused a signature: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), items.len());
    true
}

/// Verifies a signature with our own reading of the specification (what the library does).
fn signed_with(secret: &str, got: &Got) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!("{}.{}.{}", got.header("webhook-id"), got.header("webhook-timestamp"), got.body).as_bytes(),
    );
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    got.header("webhook-signature").split(' ').any(|s| s == expected)
}

async fn events_reach_their_tenants_endpoints_only_signed_the_standard_way(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let key_a = app.key_in("tenant-a", "connect,admin").await;
    let key_b = app.key_in("tenant-b", "connect,admin").await;
    let (endpoint_a, secret_a) = register(&app, &key_a, &a.url, json!([])).await;
    let (endpoint_b, _) = register(&app, &key_b, &b.url, json!(null)).await;

    let connection = connect(&app, &key_a, "u1").await;
    eventually("tenant a's endpoint gets its event", || async { !a.received().is_empty() }).await;
    let got = a.received()[0].clone();
    let body = got.json();
    assert_eq!(body["type"], "connection.created");
    assert_eq!(body["data"]["connection"]["id"], connection.as_str());
    assert_eq!(got.webhook_id(), body["id"].as_str().unwrap(), "webhook-id is the event id");
    let age = chrono::Utc::now().timestamp() - got.header("webhook-timestamp").parse::<i64>().unwrap();
    assert!((0..30).contains(&age));
    assert!(got.header("hexbroker-signature").is_empty(), "endpoints get the standard headers");
    assert!(signed_with(&secret_a, &got));
    verified_by_reference_library(&[(&secret_a, &got)]);

    // Tenant b's endpoint hears nothing of tenant a (its own event comes through, so it listens).
    connect(&app, &key_b, "u2").await;
    eventually("tenant b's endpoint gets its own event", || async { !b.received().is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.received().len(), 1);
    assert_eq!(a.received().len(), 1);
    assert_ne!(b.received()[0].json()["data"]["connection"]["id"], connection.as_str());

    // Each tenant sees only its own endpoints; the other's answer 404 on every route.
    let listed = ok_json(call(&app, &key_b, "GET", "/v1/webhook-endpoints", None).await, 200).await;
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [endpoint_b.as_str()]);
    assert!(listed["data"][0].get("secret").is_none(), "a listed endpoint shows no secret");
    for (method, path, body) in [
        ("GET", format!("/v1/webhook-endpoints/{endpoint_a}"), None),
        ("PATCH", format!("/v1/webhook-endpoints/{endpoint_a}"), Some(json!({"enabled": false}))),
        ("DELETE", format!("/v1/webhook-endpoints/{endpoint_a}"), None),
        ("POST", format!("/v1/webhook-endpoints/{endpoint_a}/rotate-secret"), None),
        ("POST", format!("/v1/webhook-endpoints/{endpoint_a}/test"), None),
        ("GET", format!("/v1/webhook-endpoints/{endpoint_a}/deliveries"), None),
        ("GET", "/v1/webhook-endpoints/not-an-id".to_owned(), None),
    ] {
        let (status, code) = error_code(call(&app, &key_b, method, &path, body).await).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{method} {path}");
    }
    let connect_only = app.key_in("tenant-a", "connect").await;
    let (status, _) = error_code(call(&app, &connect_only, "GET", "/v1/webhook-endpoints", None).await).await;
    assert_eq!(status, 403, "admin scope");

    // The event's summary is delivered once every destination is (no deployment URL here: its
    // delivery waits, as events did without one, so the state stays pending).
    let events = ok_json(call(&app, &key_a, "GET", "/v1/events", None).await, 200).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
}

async fn type_filters_and_disabled_endpoints_choose_what_is_sent(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let key = app.key("connect,connections:write,admin").await;
    let (all, deleted_only, disabled) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    register(&app, &key, &all.url, json!([])).await;
    let (filtered, _) = register(&app, &key, &deleted_only.url, json!(["connection.deleted"])).await;
    let (off, _) = register(&app, &key, &disabled.url, json!([])).await;
    let patched = ok_json(
        call(&app, &key, "PATCH", &format!("/v1/webhook-endpoints/{off}"), Some(json!({"enabled": false})))
            .await,
        200,
    )
    .await;
    assert_eq!(patched["enabled"], false);
    let shown =
        ok_json(call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{filtered}"), None).await, 200).await;
    assert_eq!(shown["event_types"], json!(["connection.deleted"]));

    let connection = connect(&app, &key, "u1").await;
    let deleted = call(&app, &key, "DELETE", &format!("/v1/connections/{connection}"), None).await;
    assert_eq!(deleted.status(), 204);
    eventually("both events reach the endpoint of all types", || async { all.received().len() == 2 }).await;
    eventually("the deletion reaches the filtered endpoint", || async {
        !deleted_only.received().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let types = |r: &Receiver| {
        r.received().iter().map(|g| g.json()["type"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let mut seen = types(&all);
    seen.sort();
    assert_eq!(seen, ["connection.created", "connection.deleted"]);
    assert_eq!(types(&deleted_only), ["connection.deleted"]);
    assert!(disabled.received().is_empty(), "a disabled endpoint gets nothing");
    assert_eq!(disabled.requests.load(Ordering::SeqCst), 0);

    // Bad event types and descriptions are refused.
    for body in [
        json!({"url": all.url, "event_types": ["connection.nope"]}),
        json!({"url": all.url, "description": "bell\u{7}"}),
        json!({"url": all.url, "secret": "mine"}),
    ] {
        let (status, _) =
            error_code(call(&app, &key, "POST", "/v1/webhook-endpoints", Some(body.clone())).await).await;
        assert_eq!(status, 422, "{body}");
    }
}

async fn a_failing_endpoint_retries_with_the_same_webhook_id_and_delays_no_other(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let key = app.key("connect,admin").await;
    let (failing, healthy) = (Receiver::start().await, Receiver::start().await);
    // The failing endpoint hangs past the delivery timeout (2 s) on every attempt.
    failing.delay_ms.store(5_000, Ordering::SeqCst);
    let (failing_id, _) = register(&app, &key, &failing.url, json!([])).await;
    register(&app, &key, &healthy.url, json!([])).await;

    let started = Instant::now();
    for user in ["u1", "u2", "u3"] {
        connect(&app, &key, user).await;
    }
    eventually("the healthy endpoint gets all three", || async { healthy.received().len() == 3 }).await;
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "the healthy endpoint did not wait for the hanging one ({:?})",
        started.elapsed()
    );

    // The failing endpoint recovers and answers 500 a while, then 200: each event arrives, every
    // attempt of it under one webhook-id.
    failing.delay_ms.store(0, Ordering::SeqCst);
    failing.set_status(500);
    let ids: Vec<String> = healthy.received().iter().map(Got::webhook_id).collect();
    // Every event answered 500 at least twice under its own webhook-id (a count over all events
    // could be met by one event's retries while another's wait out their backoff).
    let attempts_of = |id: &str| failing.received().iter().filter(|g| g.webhook_id() == id).count();
    eventually("each event is tried again under its webhook-id", || async {
        ids.iter().all(|id| attempts_of(id) >= 2)
    })
    .await;
    failing.set_status(200);
    eventually("every event reaches the recovered endpoint", || async {
        let history = ok_json(
            call(
                &app,
                &key,
                "GET",
                &format!("/v1/webhook-endpoints/{failing_id}/deliveries?limit=200"),
                None,
            )
            .await,
            200,
        )
        .await;
        history["data"].as_array().unwrap().iter().filter(|a| a["status_code"] == 200).count() == 3
    })
    .await;
    for id in &ids {
        let attempts: Vec<Got> = failing.received().into_iter().filter(|g| g.webhook_id() == *id).collect();
        assert!(attempts.len() >= 2, "retried under the same webhook-id");
        let bodies: std::collections::BTreeSet<String> = attempts.iter().map(|g| g.body.clone()).collect();
        assert_eq!(bodies.len(), 1, "the same body on every attempt");
    }

    let history = ok_json(
        call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{failing_id}/deliveries?limit=200"), None)
            .await,
        200,
    )
    .await;
    let rows = history["data"].as_array().unwrap();
    let ats: Vec<chrono::DateTime<chrono::FixedOffset>> = rows
        .iter()
        .map(|r| chrono::DateTime::parse_from_rfc3339(r["at"].as_str().unwrap()).unwrap())
        .collect();
    let mut sorted = ats.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted, "newest first");
    let timed_out =
        rows.iter().find(|r| r["error"] == "the receiver did not answer in time").expect("a timeout");
    assert_eq!(timed_out["status_code"], Value::Null);
    let refused = rows.iter().find(|r| r["status_code"] == 500).expect("a 500");
    let error = refused["error"].as_str().unwrap();
    assert!(error.starts_with("the receiver answered 500: receiver says no"), "{error}");
    assert!(error.chars().count() < 260 && !error.contains('\u{7}'), "a short excerpt: {error}");
    let first = rows.last().unwrap();
    assert_eq!(first["attempt"], 1);
    assert!(first["duration_ms"].as_i64().unwrap() >= 1900, "{first}");
    for row in rows {
        assert!(ids.contains(&row["event_id"].as_str().unwrap().to_owned()));
        assert_eq!(row["event_type"], "connection.created");
    }
}

async fn rotation_signs_with_both_secrets_and_endpoint_changes_are_audited(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let key = app.key("connect,admin").await;
    let receiver = Receiver::start().await;
    let (id, old) = register(&app, &key, &receiver.url, json!([])).await;
    let rotated = ok_json(
        call(&app, &key, "POST", &format!("/v1/webhook-endpoints/{id}/rotate-secret"), None).await,
        200,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);

    let test =
        ok_json(call(&app, &key, "POST", &format!("/v1/webhook-endpoints/{id}/test"), None).await, 202).await;
    eventually("the test event arrives", || async { !receiver.received().is_empty() }).await;
    let got = receiver.received()[0].clone();
    assert_eq!(got.webhook_id(), test["event_id"].as_str().unwrap());
    assert_eq!(got.header("webhook-signature").split(' ').count(), 2, "one entry per secret");
    assert!(signed_with(&old, &got) && signed_with(&new, &got));
    verified_by_reference_library(&[(&old, &got), (&new, &got)]);

    let patched = ok_json(
        call(&app, &key, "PATCH", &format!("/v1/webhook-endpoints/{id}"), Some(json!({"description": null})))
            .await,
        200,
    )
    .await;
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(call(&app, &key, "DELETE", &format!("/v1/webhook-endpoints/{id}"), None).await.status(), 204);
    assert_eq!(call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{id}"), None).await.status(), 404);

    let trail = ok_json(call(&app, &key, "GET", "/v1/audit-events", None).await, 200).await;
    let actions: Vec<&str> = trail["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("webhook_endpoint."))
        .collect();
    assert_eq!(
        actions,
        [
            "webhook_endpoint.delete",
            "webhook_endpoint.update",
            "webhook_endpoint.rotate_secret",
            "webhook_endpoint.create"
        ]
    );
    let text = trail.to_string();
    assert!(text.contains(&format!("webhook endpoint {id}")));
    for secret in [&old, &new] {
        let bare = secret.trim_start_matches("whsec_");
        assert!(!text.contains(bare), "no secret in the audit trail");
    }
    let filtered = ok_json(
        call(&app, &key, "GET", "/v1/audit-events?action=webhook_endpoint.rotate_secret", None).await,
        200,
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
}

async fn test_events_are_sent_to_one_endpoint_and_its_history_pages(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let key = app.key("connect,admin").await;
    let (one, other) = (Receiver::start().await, Receiver::start().await);
    // A test event goes even to an endpoint filtered to other types.
    let (id, secret) = register(&app, &key, &one.url, json!(["connection.deleted"])).await;
    register(&app, &key, &other.url, json!([])).await;
    for _ in 0..3 {
        ok_json(call(&app, &key, "POST", &format!("/v1/webhook-endpoints/{id}/test"), None).await, 202).await;
    }
    eventually("three test events", || async { one.received().len() == 3 }).await;
    let got = one.received()[0].clone();
    assert_eq!(got.json()["type"], "webhook.test");
    assert_eq!(got.json()["data"]["endpoint_id"], id.as_str());
    assert!(signed_with(&secret, &got));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(other.received().is_empty(), "a test event goes to its endpoint alone");
    let events = ok_json(call(&app, &key, "GET", "/v1/events", None).await, 200).await;
    assert!(events["data"].as_array().unwrap().is_empty(), "test events are not connection events");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/webhook-endpoints/{id}/deliveries?limit=2&cursor={c}"),
            None => format!("/v1/webhook-endpoints/{id}/deliveries?limit=2"),
        };
        let page = ok_json(call(&app, &key, "GET", &path, None).await, 200).await;
        for row in page["data"].as_array().unwrap() {
            assert_eq!((row["status_code"].clone(), row["error"].clone()), (json!(200), Value::Null));
            assert_eq!(row["event_type"], "webhook.test");
            seen.push((row["event_id"].as_str().unwrap().to_owned(), row["at"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Every attempt once across the pages (attempts in flight together may start in any order).
    let mut received: Vec<String> = one.received().iter().map(Got::webhook_id).collect();
    received.sort();
    let mut listed: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    listed.sort();
    assert_eq!(listed, received, "every attempt, across pages");
    let starts: Vec<chrono::DateTime<chrono::FixedOffset>> =
        seen.iter().map(|(_, at)| chrono::DateTime::parse_from_rfc3339(at).unwrap()).collect();
    let mut newest_first = starts.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(starts, newest_first, "newest first");
    let (status, code) = error_code(
        call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{id}/deliveries?limit=0"), None).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "invalid_query"));
}

async fn deliveries_pending_at_a_restart_are_delivered_after_it(backend: Backend) {
    let Some(mut app) = start(backend).await else { return };
    let key = app.key("connect,admin").await;
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let (id, secret) = register(&app, &key, &receiver.url, json!([])).await;
    connect(&app, &key, "u1").await;
    eventually("a first attempt fails", || async { !receiver.received().is_empty() }).await;
    app.background.take().unwrap().stop().await;
    let tried = receiver.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests.load(Ordering::SeqCst), tried, "stopped");

    receiver.set_status(200);
    let _restarted = app.second_broker(&SETTINGS).await;
    eventually("the restarted broker delivers it", || async {
        let history = ok_json(
            call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{id}/deliveries"), None).await,
            200,
        )
        .await;
        history["data"][0]["status_code"] == 200
    })
    .await;
    let all = receiver.received();
    assert!(all.len() > tried);
    let last = all.last().unwrap();
    assert_eq!(last.webhook_id(), all[0].webhook_id(), "the same webhook-id after the restart");
    assert!(signed_with(&secret, last));
}

async fn two_replicas_make_each_attempt_once(backend: Backend) {
    let Some(app) = start(backend).await else { return };
    let key = app.key("connect,admin").await;
    let receiver = Receiver::start().await;
    let (id, _) = register(&app, &key, &receiver.url, json!([])).await;
    let _second = app.second_broker(&SETTINGS).await;
    let count = 8;
    for n in 0..count {
        connect(&app, &key, &format!("u{n}")).await;
    }
    eventually("every event arrives", || async { receiver.received().len() >= count }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver.received().iter().map(Got::webhook_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count);
    assert_eq!(receiver.requests.load(Ordering::SeqCst), count, "each attempt made once, by one replica");
    let history = ok_json(
        call(&app, &key, "GET", &format!("/v1/webhook-endpoints/{id}/deliveries?limit=200"), None).await,
        200,
    )
    .await;
    assert_eq!(history["data"].as_array().unwrap().len(), count);
}

async fn refused_urls_at_registration_and_at_send_time(backend: Backend) {
    // This broker lets the receiver's loopback host in, by address and by name.
    let Some(mut app) = TestApp::start_with(
        backend,
        &[("HEXBROKER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1,localhost"), SETTINGS[1], SETTINGS[2], SETTINGS[3]],
    )
    .await
    else {
        return;
    };
    let key = app.key("connect,admin").await;
    let receiver = Receiver::start().await;
    let port = receiver.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let (plain_id, _) = register(&app, &key, &receiver.url, json!([])).await;
    let (address_id, _) = register(&app, &key, &format!("https://127.0.0.1:{port}/hook"), json!([])).await;
    let (name_id, _) = register(&app, &key, &format!("https://localhost:{port}/hook"), json!([])).await;

    // Every class is refused when not allow-listed.
    for url in [
        "http://example.com/hook".to_owned(),
        "ftp://example.com/hook".to_owned(),
        "https://10.0.0.7/hook".to_owned(),
        "https://172.16.0.1/hook".to_owned(),
        "https://192.168.1.1/hook".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://0.0.0.0/hook".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://[fd00:ec2::254]/hook".to_owned(),
        "https://[::ffff:127.0.0.1]/hook".to_owned(),
        "https://127.0.0.2/hook".to_owned(),
        "https://user:pass@example.com/hook".to_owned(),
        "not a url".to_owned(),
        format!("https://example.com/{}", "x".repeat(2100)),
    ] {
        let (status, code) =
            error_code(call(&app, &key, "POST", "/v1/webhook-endpoints", Some(json!({"url": url}))).await)
                .await;
        assert_eq!((status, code.as_str()), (422, "invalid_webhook_url"), "{url}");
    }

    // Another replica on the same database whose allow-list no longer names them refuses them at
    // registration, by address and by name (localhost resolves to loopback)...
    app.background.take().unwrap().stop().await;
    let strict = app
        .second_broker(&[("HEXBROKER_WEBHOOK_ALLOW_HOSTS", ""), SETTINGS[1], SETTINGS[2], SETTINGS[3]])
        .await;
    for url in [
        receiver.url.clone(),
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
    ] {
        let response = app
            .http
            .post(format!("{strict}/v1/webhook-endpoints"))
            .bearer_auth(&key)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), (422, "invalid_webhook_url"), "{url}");
    }
    // ... and at send time: the endpoints registered earlier are not delivered to. The name is
    // refused by the resolver on the addresses it resolves to now (a connection attempt would
    // have failed otherwise as "could not reach the receiver", the receiver speaking no TLS).
    connect(&app, &key, "u1").await;
    let expected = [
        (&plain_id, "refused: url must be https"),
        (&address_id, "refused: the endpoint's address is not a public address"),
        (&name_id, "refused: the endpoint's host resolves only to non-public addresses"),
    ];
    for (id, says) in expected {
        eventually("the attempt is refused", || async {
            let history = app
                .http
                .get(format!("{strict}/v1/webhook-endpoints/{id}/deliveries"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            history["data"][0]["error"].as_str().is_some_and(|e| e.starts_with(says))
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 0, "nothing reached the loopback receiver");
}

async fn the_deployment_url_gets_both_signatures_and_the_same_webhook_id(backend: Backend) {
    use base64::Engine as _;
    let deployment = Receiver::start().await;
    let endpoint = Receiver::start().await;
    let standard = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let secrets = format!("plain-deployment-secret,{standard}");
    let mut settings = SETTINGS.to_vec();
    settings.push(("HEXBROKER_WEBHOOK_URL", &deployment.url));
    settings.push(("HEXBROKER_WEBHOOK_SECRET", &secrets));
    let Some(app) = TestApp::start_with(backend, &settings).await else { return };
    let key = app.key_in("tenant-a", "connect,admin").await;
    let (_, secret) = register(&app, &key, &endpoint.url, json!([])).await;
    connect(&app, &key, "u1").await;
    eventually("both destinations get the event", || async {
        !deployment.received().is_empty() && !endpoint.received().is_empty()
    })
    .await;
    let (to_deployment, to_endpoint) = (deployment.received()[0].clone(), endpoint.received()[0].clone());
    assert_eq!(to_deployment.webhook_id(), to_endpoint.webhook_id(), "one webhook-id across destinations");
    assert_eq!(to_deployment.header("hexbroker-event-id"), to_deployment.webhook_id());
    assert!(to_deployment.header("hexbroker-signature").starts_with("t="), "the earlier header stays");
    assert_eq!(to_deployment.header("webhook-signature").split(' ').count(), 2);
    assert!(signed_with(&standard, &to_deployment), "a whsec_ entry signs with its decoded bytes");
    // A plain entry signs with its own bytes.
    let plain =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode("plain-deployment-secret"));
    assert!(signed_with(&plain, &to_deployment));
    verified_by_reference_library(&[
        (&standard, &to_deployment),
        (&plain, &to_deployment),
        (&secret, &to_endpoint),
    ]);
    eventually("the event is delivered everywhere", || async {
        let events = ok_json(call(&app, &key, "GET", "/v1/events", None).await, 200).await;
        events["data"][0]["state"] == "delivered"
    })
    .await;
}

async fn reencrypt_reseals_endpoint_secrets_and_they_still_sign(backend: Backend) {
    let entry = |id: &str| {
        let generated = hexbroker::crypto::Keyring::generate_entry();
        format!("{id}:{}", generated.split_once(':').unwrap().1)
    };
    let (old, new) = (entry("old"), entry("new"));
    let mut settings = SETTINGS.to_vec();
    settings.push(("HEXBROKER_ENCRYPTION_KEYS", &old));
    let Some(mut app) = TestApp::start_with(backend, &settings).await else { return };
    let key = app.key("admin").await;
    let receiver = Receiver::start().await;
    let (id, first) = register(&app, &key, &receiver.url, json!([])).await;
    let rotated = ok_json(
        call(&app, &key, "POST", &format!("/v1/webhook-endpoints/{id}/rotate-secret"), None).await,
        200,
    )
    .await;
    let second = rotated["secret"].as_str().unwrap().to_owned();
    app.background.take().unwrap().stop().await;

    let both = format!("{new},{old}");
    let rotating = app.state_with(&[("HEXBROKER_ENCRYPTION_KEYS", &both)]).await.unwrap();
    let report = hexbroker::reencrypt::run(&rotating).await.unwrap();
    assert_eq!(report.webhook_secrets, 1);
    assert_eq!(hexbroker::reencrypt::run(&rotating).await.unwrap().webhook_secrets, 0, "nothing left");

    // Only the new key now: both secrets still open and sign.
    let only_new = app.state_with(&[("HEXBROKER_ENCRYPTION_KEYS", &new)]).await.unwrap();
    let base = common::serve_state(only_new).await;
    let queued = app
        .http
        .post(format!("{base}/v1/webhook-endpoints/{id}/test"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    eventually("the test event arrives", || async { !receiver.received().is_empty() }).await;
    let got = receiver.received()[0].clone();
    assert!(signed_with(&first, &got) && signed_with(&second, &got));
}

on_both_backends!(
    events_reach_their_tenants_endpoints_only_signed_the_standard_way,
    type_filters_and_disabled_endpoints_choose_what_is_sent,
    a_failing_endpoint_retries_with_the_same_webhook_id_and_delays_no_other,
    rotation_signs_with_both_secrets_and_endpoint_changes_are_audited,
    test_events_are_sent_to_one_endpoint_and_its_history_pages,
    deliveries_pending_at_a_restart_are_delivered_after_it,
    two_replicas_make_each_attempt_once,
    refused_urls_at_registration_and_at_send_time,
    the_deployment_url_gets_both_signatures_and_the_same_webhook_id,
    reencrypt_reseals_endpoint_secrets_and_they_still_sign,
);
