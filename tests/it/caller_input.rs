//! Caller strings (§5): control characters in any of them are refused with 422 before anything
//! else happens (no call to Hex, no session used up, nothing written), on both backends; no
//! string in any field yields a 5xx (a property over every field); and a caller's `X-Request-Id`
//! is kept beside hexbroker's own id only when it has the contract's shape.

use crate::common;

use common::{error_code, Backend, TestApp};
use fake_hex::RateLimits;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// Every caller string field, and how a request carries it.
const FIELDS: &[&str] = &[
    "sessions.end_user_id",
    "sessions.end_user_email",
    "connect.end_user_id",
    "connect.end_user_email",
    "connect.label",
    "connect.metadata_key",
    "connect.metadata_value",
    "connect.subdomain",
    "connect.token",
    "session_connect.label",
    "session_connect.metadata_key",
    "session_connect.metadata_value",
    "patch.label",
    "patch.metadata_key",
    "patch.metadata_value",
    "keys.name",
    "list.end_user_id",
    "audit.actor",
    "events.type",
];

/// A running app with what every field needs: keys, a good Hex token, a connection to patch.
struct Probe {
    app: TestApp,
    key: String,
    token: String,
    connection: String,
}

impl Probe {
    async fn start(backend: Backend) -> Option<Self> {
        let app = TestApp::start(backend).await?;
        // Hundreds of connects: Hex's own per-token limits are not what is tested here.
        app.fake.set_rate_limits(RateLimits::unlimited());
        let key = app.key("admin").await;
        let (connection, token) = app.connected(&key).await;
        Some(Self { app, key, token, connection })
    }

    /// A fresh connect session for end user `u-session`; its token.
    async fn session(&self) -> String {
        let response = self
            .app
            .http
            .post(self.app.url("/v1/connect/sessions"))
            .bearer_auth(&self.key)
            .json(&json!({"end_user_id": "u-session"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Whether the session whose token is `token` can still be used.
    async fn usable(&self, token: &str) -> bool {
        let current: Value = self
            .app
            .http
            .get(self.app.url("/v1/connect/sessions/current"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        current["state"] == "usable"
    }

    /// Sends `text` in `field`; returns the answer and the session used, if one was.
    async fn send(&self, field: &str, text: &str) -> (reqwest::Response, Option<String>) {
        let app = &self.app;
        let post = |path: &str, bearer: &str, body: Value| {
            app.http.post(app.url(path)).bearer_auth(bearer).json(&body).send()
        };
        let get = |path: &str, query: (&str, &str)| {
            app.http.get(app.url(path)).bearer_auth(&self.key).query(&[query]).send()
        };
        let connect = |extra: Value| {
            let mut body = json!({"subdomain": "acme", "token": self.token, "end_user_id": "u-key"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            post("/v1/connect", &self.key, body)
        };
        let patch = |body: Value| {
            app.http
                .patch(app.url(&format!("/v1/connections/{}", self.connection)))
                .bearer_auth(&self.key)
                .json(&body)
                .send()
        };
        let response = match field {
            "sessions.end_user_id" => {
                post("/v1/connect/sessions", &self.key, json!({"end_user_id": text})).await
            }
            "sessions.end_user_email" => {
                post("/v1/connect/sessions", &self.key, json!({"end_user_id": "u", "end_user_email": text}))
                    .await
            }
            "connect.end_user_id" => connect(json!({"end_user_id": text})).await,
            "connect.end_user_email" => connect(json!({"end_user_email": text})).await,
            "connect.label" => connect(json!({"label": text})).await,
            "connect.metadata_key" => connect(json!({"metadata": {text: "v"}})).await,
            "connect.metadata_value" => connect(json!({"metadata": {"k": [text]}})).await,
            "connect.subdomain" => connect(json!({"subdomain": text})).await,
            "connect.token" => connect(json!({"token": text})).await,
            "session_connect.label" | "session_connect.metadata_key" | "session_connect.metadata_value" => {
                let session = self.session().await;
                let extra = match field {
                    "session_connect.label" => json!({"label": text}),
                    "session_connect.metadata_key" => json!({"metadata": {text: 1}}),
                    _ => json!({"metadata": {"nested": {"k": text}}}),
                };
                let mut body = json!({"subdomain": "acme", "token": self.token});
                body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                return (post("/v1/connect", &session, body).await.unwrap(), Some(session));
            }
            "patch.label" => patch(json!({"label": text})).await,
            "patch.metadata_key" => patch(json!({"metadata": {text: true}})).await,
            "patch.metadata_value" => patch(json!({"metadata": {"k": text}})).await,
            "keys.name" => {
                let path = format!("/v1/connections/{}/keys", self.connection);
                post(&path, &self.key, json!({"scopes": ["proxy"], "name": text})).await
            }
            "list.end_user_id" => get("/v1/connections", ("end_user_id", text)).await,
            "audit.actor" => get("/v1/audit-events", ("actor", text)).await,
            "events.type" => get("/v1/events", ("type", text)).await,
            other => panic!("no field {other}"),
        };
        (response.unwrap(), None)
    }

    /// Stored rows that a request could have added: connections, sessions, keys, audit entries.
    async fn rows(&self) -> i64 {
        let sql = "select (select count(*) from connection) + (select count(*) from connect_session) \
                   + (select count(*) from api_key) + (select count(*) from audit_event)";
        self.app.db.count(sql).await
    }

    /// Sends `text` in `field` and checks the rule: never a 5xx; with a control character, 422
    /// before anything else happens. Returns a description of what broke it, if anything did.
    async fn check(&self, field: &str, text: &str) -> Result<(), String> {
        // A subdomain and a token are trimmed of surrounding whitespace first (§6 steps 1 and 2:
        // a pasted token often ends in a newline); what is left is judged.
        let judged = if matches!(field, "connect.subdomain" | "connect.token") { text.trim() } else { text };
        let control = judged.chars().any(|c| c < ' ' || c == '\u{7f}');
        let (hex_before, rows_before) = (self.app.fake.requests().len(), self.rows().await);
        let (response, session) = self.send(field, text).await;
        let status = response.status().as_u16();
        if status >= 500 {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{field} {text:?}: {status} {body}"));
        }
        if !control {
            return Ok(());
        }
        if status != 422 {
            return Err(format!("{field} {text:?}: {status}, not 422"));
        }
        let (status, code) = error_code(response).await;
        if !code.starts_with("invalid_") {
            return Err(format!("{field} {text:?}: {status} {code}, not 422"));
        }
        let hex_after = self.app.fake.requests().len();
        if hex_after != hex_before {
            return Err(format!("{field} {text:?}: {} calls reached Hex", hex_after - hex_before));
        }
        // A session made for this case is the one row it may add.
        let rows_after = self.rows().await;
        let made = i64::from(session.is_some()) * 2;
        if rows_after != rows_before + made {
            return Err(format!("{field} {text:?}: rows went from {rows_before} to {rows_after}"));
        }
        if let Some(session) = session {
            if !self.usable(&session).await {
                return Err(format!("{field} {text:?}: the session was used up"));
            }
        }
        Ok(())
    }
}

async fn control_characters_in_any_caller_string_are_refused_before_anything_happens(backend: Backend) {
    let Some(probe) = Probe::start(backend).await else { return };
    let mut refused = 0;
    for field in FIELDS {
        for text in ["x\u{0}", "\u{1f}", "a\u{7f}b", "line\nbreak", "\ttab", "ok\u{0}hxtp_SECRET"] {
            if let Err(broken) = probe.check(field, text).await {
                panic!("{broken}");
            }
            refused += 1;
        }
    }
    assert_eq!(refused, FIELDS.len() * 6);
    // The session whose submission was refused is still good: the person fixes the field.
    let session = probe.session().await;
    let body = json!({"subdomain": "acme", "token": probe.token, "label": "x\u{0}"});
    let refused = probe
        .app
        .http
        .post(probe.app.url("/v1/connect"))
        .bearer_auth(&session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body = json!({"subdomain": "acme", "token": probe.token, "label": "fine"});
    let done = probe
        .app
        .http
        .post(probe.app.url("/v1/connect"))
        .bearer_auth(&session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201);
    // And the refusal never quotes the value.
    let (response, _) = probe.send("connect.label", "ok\u{0}hxtp_SECRET").await;
    assert!(!response.text().await.unwrap().contains("SECRET"));
}

/// Strings a caller might send: anything at all, control characters alone or inside text,
/// printable text of any script, and long strings.
fn caller_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{1,3}",
        ("[a-z]{0,8}", "[\\x00-\\x1f\\x7f]", "\\PC{0,8}").prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        "[a-zA-Z0-9 @._:+-]{0,40}",
        "\\PC{0,400}",
    ]
}

async fn no_string_in_any_caller_field_gives_a_5xx(backend: Backend) {
    let Some(probe) = Probe::start(backend).await else { return };
    let handle = tokio::runtime::Handle::current();
    let config = ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (0..FIELDS.len(), caller_text());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(field, text)| {
            handle.block_on(probe.check(FIELDS[field], &text)).map_err(TestCaseError::fail)
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// The audit entries of the default tenant, newest first.
async fn audit(app: &TestApp, admin: &str) -> Vec<Value> {
    let page: Value = app
        .http
        .get(app.url("/v1/audit-events?limit=200"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

async fn create_session(app: &TestApp, key: &str, request_id: &str) -> String {
    let response = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(key)
        .header("x-request-id", request_id)
        .json(&json!({"end_user_id": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let ours = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(ours, request_id, "hexbroker's own id, always");
    assert!(ours.len() <= 128 && crate_shape(&ours), "{ours}");
    ours
}

fn crate_shape(id: &str) -> bool {
    id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn a_callers_request_id_is_kept_beside_hexbrokers_own_when_it_fits(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let admin = app.key("admin").await;

    // A well-formed id, sent twice: two requests, two ids of hexbroker's, the caller's beside each.
    let first = create_session(&app, &admin, "checkout-42.a_b").await;
    let second = create_session(&app, &admin, "checkout-42.a_b").await;
    assert_ne!(first, second);
    let entries = audit(&app, &admin).await;
    for ours in [&first, &second] {
        let entry = entries.iter().find(|e| e["request_id"] == **ours).expect("audited under our id");
        assert_eq!(entry["caller_request_id"], "checkout-42.a_b");
    }

    // A 60,000-byte id and ill-shaped ones are neither echoed nor stored.
    let huge = "A".repeat(60_000);
    let mut ignored = Vec::new();
    for id in [huge.as_str(), "has space", "semi;colon", &"b".repeat(129)] {
        ignored.push(create_session(&app, &admin, id).await);
    }
    let response =
        app.http.get(app.url("/v1/audit-events?limit=200")).bearer_auth(&admin).send().await.unwrap();
    assert!(response.headers()["x-request-id"].len() <= 128);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&"A".repeat(200)), "the huge id is not stored");
    let entries = audit(&app, &admin).await;
    for ours in &ignored {
        let entry = entries.iter().find(|e| e["request_id"] == **ours).expect("audited under our id");
        assert!(entry["caller_request_id"].is_null(), "{entry}");
    }

    // Through the proxy, Hex sees hexbroker's id, not the caller's.
    let (id, _) = app.connected(&app.key("connect").await).await;
    let proxy = app.key("proxy").await;
    app.fake.clear_requests();
    let response = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&proxy)
        .header("connection-id", &id)
        .header("x-request-id", "caller-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ours = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen = app.fake.requests();
    assert_eq!(seen[0].header("x-request-id"), Some(ours.as_str()));
}

on_both_backends!(
    control_characters_in_any_caller_string_are_refused_before_anything_happens,
    no_string_in_any_caller_field_gives_a_5xx,
    a_callers_request_id_is_kept_beside_hexbrokers_own_when_it_fits,
);
