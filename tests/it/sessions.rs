//! Connect sessions (§4, §6): short-lived, single-use, bound to a tenant and end user; reconnect
//! sessions replace one connection's token. And CORS for the browser-facing endpoints.

use crate::common;

use common::{error_code, Backend, TestApp};
use serde_json::{json, Value};

async fn new_session(app: &TestApp, body: Value) -> Value {
    let key = app.key("connect").await;
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

async fn list_for(app: &TestApp, tenant: &str, end_user: &str) -> Vec<Value> {
    let key = app.key_in(tenant, "connections:read").await;
    let page: Value = app
        .http
        .get(app.url(&format!("/v1/connections?end_user_id={end_user}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

async fn a_session_connects_once_for_its_end_user(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let session =
        new_session(&app, json!({"end_user_id": "person-1", "end_user_email": "p1@example.com"})).await;
    let token = session["token"].as_str().unwrap();
    assert!(token.starts_with("hxbs_"));
    assert_eq!(session["connect_url"], format!("http://127.0.0.1:0/connect#token={token}"));
    assert!(session["expires_at"].is_string());

    // A refused token leaves the session usable: the person can correct it.
    let rejected = submit(&app, token, "acme", "hxtp_not-a-real-token").await;
    assert_eq!(error_code(rejected).await, (422, "hex_token_rejected".into()));

    let hex_token = app.fake.add_personal_token("acme", "p1@example.com");
    let created = submit(&app, token, "https://acme.hex.tech", &hex_token).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["end_user_id"], "person-1");
    assert_eq!(created["end_user_email"], "p1@example.com");

    let again = submit(&app, token, "acme", &hex_token).await;
    assert_eq!(error_code(again).await, (409, "session_used".into()));
    assert_eq!(list_for(&app, "default", "person-1").await.len(), 1);

    // A session token is good for POST /v1/connect only.
    let read = app.http.get(app.url("/v1/connections")).bearer_auth(token).send().await.unwrap();
    assert_eq!(error_code(read).await, (401, "unauthorized".into()));
    // And it cannot choose its end user.
    let other = new_session(&app, json!({"end_user_id": "person-2"})).await;
    let sneaky = app
        .http
        .post(app.url("/v1/connect"))
        .bearer_auth(other["token"].as_str().unwrap())
        .json(&json!({"subdomain": "acme", "token": hex_token, "end_user_id": "person-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(sneaky).await, (422, "invalid_request".into()));
}

async fn racing_submissions_use_a_session_once(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let session = new_session(&app, json!({"end_user_id": "racer"})).await;
    let token = session["token"].as_str().unwrap().to_owned();
    // Different Hex tokens, so each would make its own connection if both won.
    let hex_tokens: Vec<String> =
        (0..6).map(|i| app.fake.add_personal_token("acme", &format!("r{i}@example.com"))).collect();
    let racers = hex_tokens.iter().map(|t| submit(&app, &token, "acme", t));
    let mut statuses: Vec<u16> =
        futures_util::future::join_all(racers).await.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 409, 409, 409, 409, 409], "exactly one wins");
    assert_eq!(list_for(&app, "default", "racer").await.len(), 1);
}

async fn an_expired_session_is_refused(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let session = new_session(&app, json!({"end_user_id": "late", "expires_in": 60})).await;
    let past = hexbroker::store::now() - chrono::Duration::seconds(1);
    crate::raw!(app.db, |pool| {
        sqlx::query("update connect_session set expires_at = $1").bind(past).execute(&pool).await.unwrap();
    });
    let token = app.fake.add_personal_token("acme", "late@example.com");
    let response = submit(&app, session["token"].as_str().unwrap(), "acme", &token).await;
    assert_eq!(error_code(response).await, (401, "session_expired".into()));
    assert_eq!(app.connection_count().await, 0);

    let key = app.key("connect").await;
    for bad in [
        json!({"end_user_id": "x", "expires_in": 3601}),
        json!({"end_user_id": "x", "expires_in": 59}),
        json!({"end_user_id": ""}),
    ] {
        let response =
            app.http.post(app.url("/v1/connect/sessions")).bearer_auth(&key).json(&bad).send().await.unwrap();
        assert_eq!(error_code(response).await, (422, "invalid_request".into()), "{bad}");
    }
}

async fn a_session_belongs_to_its_tenant(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    // Another tenant cannot make a reconnect session for this tenant's connection.
    let other = app.key_in("globex", "connect").await;
    let response = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&other)
        .json(&json!({"end_user_id": "u1", "connection_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (404, "not_found".into()));
    // A session made in globex connects into globex, for its end user.
    let made: Value = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&other)
        .json(&json!({"end_user_id": "g1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = app.fake.add_personal_token("acme", "g1@example.com");
    assert_eq!(submit(&app, made["token"].as_str().unwrap(), "acme", &token).await.status(), 201);
    assert_eq!(list_for(&app, "globex", "g1").await.len(), 1);
    assert_eq!(list_for(&app, "default", "g1").await.len(), 0);
}

async fn a_reconnect_session_replaces_only_its_connections_token(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let connect = app.key("connect").await;
    let (first, old_token) = app.connected(&connect).await;
    let neighbour_token = app.fake.add_personal_token("acme", "n@example.com");
    let neighbour: Value = app
        .connect(&connect, json!({"subdomain": "acme", "token": neighbour_token, "end_user_id": "u1"}))
        .await
        .json()
        .await
        .unwrap();

    let mismatch = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&connect)
        .json(&json!({"end_user_id": "someone-else", "connection_id": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(mismatch).await, (422, "end_user_mismatch".into()));

    let session = new_session(&app, json!({"end_user_id": "u1", "connection_id": first})).await;
    let new_token = app.fake.add_personal_token("acme", "ada.new@example.com");
    let replaced = submit(&app, session["token"].as_str().unwrap(), "acme", &new_token).await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["id"], first.as_str(), "the same connection");
    assert_eq!(replaced["hex_user_email"], "ada.new@example.com");
    assert!(replaced["token_hint"].as_str().unwrap().ends_with(&new_token[new_token.len() - 4..]));

    // The proxy now sends the new token for this connection, and the old one for nobody.
    let proxy = app.key("proxy").await;
    app.fake.clear_requests();
    for id in [first.as_str(), neighbour["id"].as_str().unwrap()] {
        let r = app
            .http
            .get(app.url("/v1/proxy/v1/projects"))
            .bearer_auth(&proxy)
            .header("connection-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let sent: Vec<String> =
        app.fake.requests().iter().map(|r| r.header("authorization").unwrap().to_owned()).collect();
    assert_eq!(sent, vec![format!("Bearer {new_token}"), format!("Bearer {neighbour_token}")]);
    assert!(!sent.contains(&format!("Bearer {old_token}")));
    assert_eq!(app.connection_count().await, 2);
}

/// `GET /v1/connect/sessions/current` with `bearer` (or none).
async fn status_of(app: &TestApp, bearer: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url("/v1/connect/sessions/current"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.unwrap()
}

/// The status of a session token that the look-up knows.
async fn known_status(app: &TestApp, token: &str) -> Value {
    let response = status_of(app, Some(token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let mut fields: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["expires_at", "reconnect", "state"], "nothing but these: {body}");
    body
}

async fn a_session_tells_its_state_without_being_used_up(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let session =
        new_session(&app, json!({"end_user_id": "looker", "end_user_email": "l@example.com"})).await;
    let token = session["token"].as_str().unwrap();

    // Asking twice leaves it usable, and it still connects afterwards.
    for _ in 0..2 {
        let status = known_status(&app, token).await;
        assert_eq!(status["state"], "usable");
        assert_eq!(status["expires_at"], session["expires_at"]);
        assert_eq!(status["reconnect"], false);
    }
    let hex_token = app.fake.add_personal_token("acme", "l@example.com");
    let created = submit(&app, token, "acme", &hex_token).await;
    assert_eq!(created.status(), 201);
    let connection: Value = created.json().await.unwrap();
    assert_eq!(known_status(&app, token).await["state"], "used");

    // A reconnect session says so; an expired one says that, and a used one stays `used` even
    // once its time is up.
    let reconnect =
        new_session(&app, json!({"end_user_id": "looker", "connection_id": connection["id"]})).await;
    let reconnect_token = reconnect["token"].as_str().unwrap();
    let status = known_status(&app, reconnect_token).await;
    assert_eq!((status["state"].as_str(), status["reconnect"].as_bool()), (Some("usable"), Some(true)));
    let past = hexbroker::store::now() - chrono::Duration::seconds(1);
    crate::raw!(app.db, |pool| {
        sqlx::query("update connect_session set expires_at = $1").bind(past).execute(&pool).await.unwrap();
    });
    assert_eq!(known_status(&app, reconnect_token).await["state"], "expired");
    assert_eq!(known_status(&app, token).await["state"], "used");

    // Only a session token it knows gets an answer: not an unknown one, not an API key.
    let connect = app.key("connect").await;
    let unknown = format!("hxbs_{}", "a".repeat(43));
    for bearer in [None, Some(unknown.as_str()), Some(connect.as_str()), Some("hxbs_")] {
        let response = status_of(&app, bearer).await;
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{bearer:?}");
        assert_eq!(error_code(response).await, (401, "unauthorized".into()), "{bearer:?}");
    }
}

on_both_backends!(
    a_session_connects_once_for_its_end_user,
    racing_submissions_use_a_session_once,
    an_expired_session_is_refused,
    a_session_belongs_to_its_tenant,
    a_reconnect_session_replaces_only_its_connections_token,
    a_session_tells_its_state_without_being_used_up,
);

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let app =
        TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_ALLOWED_ORIGINS", "https://app.example.com")])
            .await
            .unwrap();
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/v1/connect"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let allow_headers =
        allowed.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allow_headers.contains("authorization"));
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // The status look-up of the connect page is a cross-origin GET for the same origins.
    let status_preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/connect/sessions/current"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(status_preflight.status().is_success());
    assert_eq!(status_preflight.headers()["access-control-allow-origin"], "https://app.example.com");
    let methods = status_preflight.headers()["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let status = app
        .http
        .get(app.url("/v1/connect/sessions/current"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 401);
    assert_eq!(status.headers()["access-control-allow-origin"], "https://app.example.com");

    let simple = app
        .http
        .post(app.url("/v1/connect"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example.com");
    let not_cors = app
        .http
        .get(app.url("/v1/connections"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(not_cors.headers().get("access-control-allow-origin").is_none(), "only the connect endpoints");
}
