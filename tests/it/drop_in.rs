//! Connection keys, verify, and the drop-in surface (`/api/{path}`) that lets an existing Hex
//! client work through hexbroker with nothing changed but its base URL and token.

use crate::common;

use common::{error_code, Backend, TestApp};
use serde_json::{json, Value};

/// Mints a connection key with `scopes` for connection `id`.
async fn connection_key(app: &TestApp, id: &str, scopes: &[&str]) -> (String, String) {
    let writer = app.key("connections:write,proxy").await;
    let response = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(writer)
        .json(&json!({"scopes": scopes, "name": "airflow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["connection_id"], id);
    assert_eq!(body["scopes"], json!(scopes));
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("hxbc_"));
    (body["id"].as_str().unwrap().to_owned(), key)
}

async fn a_hex_client_works_with_either_base_url_shape(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    let (_, key) = connection_key(&app, &id, &["proxy"]).await;
    app.fake.clear_requests();

    // A client whose base URL ends in /api, and one that appends /api/v1/… to the bare origin,
    // both land on /api/v1/…; legacy singular run paths work too.
    let listed = app.http.get(app.url("/api/v1/projects?limit=1")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.headers()["hexbroker-upstream"], "hex");
    let run = app
        .http
        .post(app.url(&format!("/api/v1/project/{project}/run")))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 201);
    let run: Value = run.json().await.unwrap();
    let status = app
        .http
        .get(app.url(&format!("/api/v1/project/{project}/run/{}", run["runId"].as_str().unwrap())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    for request in app.fake.requests() {
        assert!(request.path.starts_with("/acme/api/v1/"), "{}", request.path);
        assert_eq!(request.header("authorization"), Some(format!("Bearer {token}").as_str()));
    }
}

async fn a_read_only_key_cannot_start_a_run(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    let (_, key) = connection_key(&app, &id, &["proxy:read"]).await;
    app.fake.clear_requests();
    let run = app
        .http
        .post(app.url(&format!("/api/v1/projects/{project}/runs")))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(run.headers().get("hexbroker-upstream").is_none(), "refused by hexbroker, not Hex");
    assert_eq!(error_code(run).await, (403, "read_only_key".into()));
    let delete = app
        .http
        .delete(app.url(&format!("/api/v1/projects/{project}/runs/x")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(delete).await, (403, "read_only_key".into()));
    assert!(app.fake.requests().is_empty(), "nothing reached Hex");
    let read =
        app.http.get(app.url(&format!("/api/v1/projects/{project}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let head = app
        .http
        .head(app.url(&format!("/api/v1/projects/{project}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["hexbroker-upstream"], "hex", "HEAD reached Hex");
}

/// `proxy:read` allows GET and HEAD and nothing else, for every method the proxy routes, on both
/// surfaces: an API key on `/v1/proxy` and a connection key on `/api`. Hex has PATCH and PUT
/// writes too, so a rule narrowed to POST and DELETE would fail here.
async fn proxy_read_may_send_only_get_and_head_on_either_surface(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    let api_key = app.key("proxy:read").await;
    let (_, connection_key) = connection_key(&app, &id, &["proxy:read"]).await;
    let surfaces = [
        ("/v1/proxy", api_key.as_str(), "insufficient_scope"),
        ("/api", connection_key.as_str(), "read_only_key"),
    ];
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    for (prefix, key, refusal) in surfaces {
        for method in methods {
            app.fake.clear_requests();
            let response = app
                .http
                .request(method.parse().unwrap(), app.url(&format!("{prefix}/v1/projects/{project}")))
                .bearer_auth(key)
                .header("connection-id", &id)
                .send()
                .await
                .unwrap();
            let what = format!("{method} {prefix}");
            if matches!(method, "GET" | "HEAD") {
                assert_eq!(response.status(), 200, "{what}");
                assert_eq!(response.headers()["hexbroker-upstream"], "hex", "{what}");
                assert_eq!(app.fake.requests().len(), 1, "{what}: reached Hex once");
            } else {
                assert!(response.headers().get("hexbroker-upstream").is_none(), "{what}");
                assert_eq!(error_code(response).await, (403, refusal.into()), "{what}");
                assert!(app.fake.requests().is_empty(), "{what}: nothing reached Hex");
            }
        }
    }
}

async fn connection_keys_reach_their_own_connection_only(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let connect = app.key("connect").await;
    let (a, _) = app.connected(&connect).await;
    app.fake.add_workspace("globex");
    let other_token = app.fake.add_personal_token("globex", "bo@example.com");
    let b: Value = app
        .connect(&connect, json!({"subdomain": "globex", "token": other_token, "end_user_id": "u9"}))
        .await
        .json()
        .await
        .unwrap();
    let b = b["id"].as_str().unwrap();
    let (_, key_a) = connection_key(&app, &a, &["proxy"]).await;
    app.fake.clear_requests();

    // On /api the key always means its own connection.
    assert_eq!(
        app.http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&key_a)
            .header("connection-id", b)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(app.fake.requests().iter().all(|r| r.path.starts_with("/acme/")), "never globex");
    // It cannot name another connection on /v1/proxy, nor read connections.
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key_a)
        .header("connection-id", b)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(proxied).await, (403, "connection_key_not_allowed".into()));
    let read =
        app.http.get(app.url(&format!("/v1/connections/{b}"))).bearer_auth(&key_a).send().await.unwrap();
    assert_eq!(error_code(read).await, (403, "connection_key_not_allowed".into()));
    // And an API key is not a connection key.
    let api_key = app.key("proxy").await;
    let drop_in = app.http.get(app.url("/api/v1/projects")).bearer_auth(&api_key).send().await.unwrap();
    assert_eq!(error_code(drop_in).await, (403, "connection_key_required".into()));
    assert!(app.fake.requests().iter().all(|r| r.path.starts_with("/acme/")));
}

async fn revoked_and_expired_connection_keys_get_401(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let (key_id, key) = connection_key(&app, &id, &["proxy"]).await;
    let writer = app.key("connections:write").await;
    let other_tenant = app.key_in("globex", "admin").await;
    let revoke_url = app.url(&format!("/v1/connections/{id}/keys/{key_id}"));
    assert_eq!(
        error_code(app.http.delete(&revoke_url).bearer_auth(&other_tenant).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    assert_eq!(
        app.http.get(app.url("/api/v1/projects")).bearer_auth(&key).send().await.unwrap().status(),
        200
    );
    assert_eq!(app.http.delete(&revoke_url).bearer_auth(&writer).send().await.unwrap().status(), 204);
    assert_eq!(
        error_code(app.http.delete(&revoke_url).bearer_auth(&writer).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    let after = app.http.get(app.url("/api/v1/projects")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(error_code(after).await, (401, "unauthorized".into()));

    let expired = hexbroker::auth::create_key(
        &app.state,
        hexbroker::auth::KeySpec {
            name: "old",
            tenant: "default",
            scopes: "proxy".parse().unwrap(),
            connection_id: Some(id.parse().unwrap()),
            expires_at: Some(hexbroker::store::now() - chrono::Duration::seconds(1)),
        },
        &common::system_audit(),
    )
    .await
    .unwrap();
    use secrecy::ExposeSecret;
    let response = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(expired.secret.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (401, "unauthorized".into()));

    // Deleting the connection takes its keys with it.
    let (_, live) = connection_key(&app, &id, &["proxy"]).await;
    assert_eq!(
        app.http
            .delete(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&writer)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let gone = app.http.get(app.url("/api/v1/projects")).bearer_auth(&live).send().await.unwrap();
    assert_eq!(error_code(gone).await, (401, "unauthorized".into()));
}

async fn connection_keys_are_checked_when_made(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let writer = app.key("connections:write,proxy").await;
    let make = |body: Value, id: String| {
        app.http.post(app.url(&format!("/v1/connections/{id}/keys"))).bearer_auth(&writer).json(&body).send()
    };
    for bad in [
        json!({"scopes": ["admin"]}),
        json!({"scopes": ["proxy", "proxy:read"]}),
        json!({"scopes": []}),
        json!({"scopes": ["proxy"], "expires_in": 5}),
    ] {
        assert_eq!(
            error_code(make(bad.clone(), id.clone()).await.unwrap()).await,
            (422, "invalid_request".into()),
            "{bad}"
        );
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        error_code(make(json!({"scopes": ["proxy"]}), unknown).await.unwrap()).await,
        (404, "not_found".into())
    );
    let made: Value = make(json!({"scopes": ["proxy"], "expires_in": 3600}), id.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(made["expires_at"].is_string());
    let read_only = app.key("connections:read").await;
    let refused = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(read_only)
        .json(&json!({"scopes": ["proxy"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(refused).await, (403, "insufficient_scope".into()));

    // A caller hands out no more than it holds: connections:write alone mints no proxy key.
    let mint = |key: String, scope: &'static str| {
        let url = app.url(&format!("/v1/connections/{id}/keys"));
        let http = app.http.clone();
        async move { http.post(url).bearer_auth(key).json(&json!({"scopes": [scope]})).send().await.unwrap() }
    };
    let write_only = app.key("connections:write").await;
    let reader = app.key("connections:write,proxy:read").await;
    let admin = app.key("admin").await;
    for (key, scope, expected) in [
        (&write_only, "proxy", 403),
        (&write_only, "proxy:read", 403),
        (&reader, "proxy", 403),
        (&reader, "proxy:read", 201),
        (&writer, "proxy:read", 201),
        (&admin, "proxy", 201),
    ] {
        let response = mint(key.clone(), scope).await;
        assert_eq!(response.status(), expected, "{scope}");
        if expected == 403 {
            assert_eq!(error_code(response).await, (403, "insufficient_scope".into()));
        }
    }
}

async fn verify_marks_a_refused_token_invalid_and_a_good_one_active(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let writer = app.key("connections:write,proxy").await;
    let verify =
        || app.http.post(app.url(&format!("/v1/connections/{id}/verify"))).bearer_auth(&writer).send();

    let ok: Value = verify().await.unwrap().json().await.unwrap();
    assert_eq!(ok["status"], "active");
    assert_eq!(ok["hex_user_email"], "ada@example.com");

    app.fake.fail_next(2, 503, None);
    assert_eq!(error_code(verify().await.unwrap()).await, (502, "hex_unavailable".into()));
    let still: Value = app
        .http
        .get(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(app.key("connections:read").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "active", "passing trouble at Hex does not invalidate");

    app.fake.revoke_token(&token);
    let invalid = verify().await.unwrap();
    assert_eq!(invalid.status(), 200);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(invalid["status"], "invalid");
    assert!(invalid["status_reason"].as_str().unwrap().contains("rejected"));
    app.fake.clear_requests();
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&writer)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(proxied).await, (424, "connection_invalid".into()));
    assert!(app.fake.requests().is_empty(), "an invalid connection does not call Hex");

    // A token Hex accepts again (here: the row is marked invalid by hand) comes back to active.
    let (id2, _) = {
        let token2 = app.fake.add_personal_token("acme", "cy@example.com");
        let c: Value = app
            .connect(
                &app.key("connect").await,
                json!({"subdomain": "acme", "token": token2, "end_user_id": "u2"}),
            )
            .await
            .json()
            .await
            .unwrap();
        (c["id"].as_str().unwrap().to_owned(), token2)
    };
    app.state
        .store
        .apply(
            "default",
            id2.parse().unwrap(),
            &hexbroker::lifecycle::Change::Refused("test"),
            &hexbroker::audit::AuditContext::system(hexbroker::audit::Action::StatusChange),
            &hexbroker::store::Expect::default(),
        )
        .await
        .unwrap();
    let again: Value = app
        .http
        .post(app.url(&format!("/v1/connections/{id2}/verify")))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "active");
    assert!(again["status_reason"].is_null());
}

on_both_backends!(
    proxy_read_may_send_only_get_and_head_on_either_surface,
    a_hex_client_works_with_either_base_url_shape,
    a_read_only_key_cannot_start_a_run,
    connection_keys_reach_their_own_connection_only,
    revoked_and_expired_connection_keys_get_401,
    connection_keys_are_checked_when_made,
    verify_marks_a_refused_token_invalid_and_a_good_one_active,
);

/// The published `hex-api` client from PyPI, in the virtual environment `.ci/run` makes
/// (`HEXBROKER_TEST_PYTHON` names its interpreter): list projects → run → poll → cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_hex_api_client_works_through_the_drop_in_surface() {
    let Ok(python) = std::env::var("HEXBROKER_TEST_PYTHON") else {
        common::skip(
            "the published-client test",
            "set HEXBROKER_TEST_PYTHON to a Python with hex-api installed",
        );
        return;
    };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (id, token) = app.connected(&app.key("connect").await).await;
    app.fake.set_run_durations(std::time::Duration::from_millis(300), std::time::Duration::from_secs(30));
    for title in ["Daily", "Weekly", "Monthly"] {
        app.fake.add_project("acme", title);
    }
    let (_, key) = connection_key(&app, &id, &["proxy"]).await;
    let (_, read_only) = connection_key(&app, &id, &["proxy:read"]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hex_api_walk.py");
    let base = app.url("/api");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("HEX_BASE_URL", &base)
        .env("HEX_TOKEN", &key)
        .env("HEX_READ_ONLY_TOKEN", &read_only)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client failed: {stderr}");
    let seen: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(seen["project_count"], 2);
    assert_eq!(seen["has_next_page"], true);
    assert_eq!(seen["statuses"].as_array().unwrap().last().unwrap(), "RUNNING", "{seen}");
    assert_eq!(seen["final"], "KILLED");
    assert_eq!(seen["read_only_run_refused"], 403);
    let requests = app.fake.requests();
    assert!(requests.iter().any(|r| r.method == "DELETE"), "the cancel reached Hex");
    assert!(requests.iter().all(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())));
}
