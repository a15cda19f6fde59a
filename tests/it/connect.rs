//! `POST /v1/connect` with an API key: every row of §6's table, on both backends.

use crate::common;

use common::{error_code, Backend, TestApp};
use fake_hex::{Scope, TokenKind, TokenSpec};
use serde_json::{json, Value};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

async fn a_valid_personal_token_is_stored_with_its_identity(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let org = app.fake.add_workspace("acme");
    let token = app.fake.add_personal_token("acme", "ada@example.com");
    let key = app.key("connect").await;
    let response = app
        .connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1", "label": "Ada's Hex", "metadata": {"team": "data"}}))
        .await;
    assert_eq!(response.status(), 201);
    let c = body(response).await;
    assert_eq!(c["subdomain"], "acme");
    assert_eq!(c["end_user_id"], "u1");
    assert_eq!(c["label"], "Ada's Hex");
    assert_eq!(c["metadata"], json!({"team": "data"}));
    assert_eq!(c["token_type"], "personal");
    assert_eq!(c["hex_org_id"], org.as_str());
    assert_eq!(c["hex_user_email"], "ada@example.com");
    assert!(c["token_expires_at"].is_string(), "personal tokens expire: {c}");
    assert_eq!(c["status"], "active");
    assert_eq!(c["hex_url"], format!("http://{}/acme", app.fake_addr));
    let hint = c["token_hint"].as_str().unwrap();
    assert!(hint.starts_with("hxtp_") && hint.ends_with(&token[token.len() - 4..]), "{hint}");
    assert!(!c.to_string().contains(&token), "the token never comes back");
    assert_eq!(app.connection_count().await, 1);
}

async fn a_subdomain_pasted_as_a_url_means_its_label(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let key = app.key("connect").await;
    for (i, pasted) in
        ["acme.hex.tech", "https://acme.hex.tech/acme/hex/0123/draft/logic", "  ACME  "].iter().enumerate()
    {
        let token = app.fake.add_personal_token("acme", &format!("p{i}@example.com"));
        let response =
            app.connect(&key, json!({"subdomain": pasted, "token": token, "end_user_id": "u1"})).await;
        assert_eq!(response.status(), 201, "{pasted}");
        assert_eq!(body(response).await["subdomain"], "acme");
    }
}

async fn a_workspace_token_is_stored_without_user_fields(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let org = app.fake.add_workspace("acme");
    let token = app.fake.add_workspace_token("acme", &Scope::all());
    let key = app.key("connect").await;
    let response = app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1"})).await;
    assert_eq!(response.status(), 201);
    let c = body(response).await;
    assert_eq!(c["token_type"], "workspace");
    assert_eq!(c["hex_org_id"], org.as_str());
    assert!(c["hex_user_email"].is_null());
    assert!(c["token_expires_at"].is_null());
}

async fn a_token_forbidden_users_me_falls_back_to_projects(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let token = app.fake.add_workspace_token("acme", &[Scope::ProjectsRead]);
    let key = app.key("connect").await;
    let response = app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1"})).await;
    assert_eq!(response.status(), 201);
    let c = body(response).await;
    assert_eq!(c["status"], "active");
    assert!(c["hex_org_id"].is_null(), "identity unknown on the fallback path");
    let paths: Vec<String> = app.fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/acme/api/v1/users/me", "/acme/api/v1/projects"]);
}

/// Submits `body` and asserts the error and that nothing was stored.
async fn refused(app: &TestApp, body: Value, status: u16, code: &str) -> reqwest::header::HeaderMap {
    let key = app.key("connect").await;
    let response = app.connect(&key, body.clone()).await;
    let headers = response.headers().clone();
    assert_eq!(error_code(response).await, (status, code.to_owned()), "{body}");
    assert_eq!(app.connection_count().await, 0, "nothing is stored on any error");
    headers
}

async fn each_refusal_has_its_code_and_stores_nothing(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let good = app.fake.add_personal_token("acme", "ada@example.com");
    let revoked = app.fake.add_personal_token("acme", "bob@example.com");
    app.fake.revoke_token(&revoked);
    let expired = app.fake.add_token(
        "acme",
        TokenSpec {
            kind: TokenKind::Personal { email: "old@example.com".into(), name: None },
            scopes: Scope::all(),
            expires_at: Some(chrono::Utc::now() - chrono::Duration::days(1)),
            revoked: false,
        },
    );
    let no_scopes = app.fake.add_workspace_token("acme", &[]);
    app.fake.add_workspace("other");
    let other_workspace = app.fake.add_personal_token("other", "eve@example.com");

    let u = "u1";
    let long = "x".repeat(1025);
    // Each body, and the code it is refused with (422).
    let table: &[(Value, &str)] = &[
        (json!({"subdomain": "evil.com", "token": good, "end_user_id": u}), "invalid_subdomain"),
        (json!({"subdomain": "127.0.0.1", "token": good, "end_user_id": u}), "invalid_subdomain"),
        (json!({"subdomain": "-acme", "token": good, "end_user_id": u}), "invalid_subdomain"),
        (json!({"subdomain": "acme", "token": "has space", "end_user_id": u}), "invalid_token_format"),
        (json!({"subdomain": "acme", "token": "   ", "end_user_id": u}), "invalid_token_format"),
        (json!({"subdomain": "acme", "token": long, "end_user_id": u}), "invalid_token_format"),
        (json!({"subdomain": "acme", "token": "hxtp_unknown0000", "end_user_id": u}), "hex_token_rejected"),
        (json!({"subdomain": "acme", "token": revoked, "end_user_id": u}), "hex_token_rejected"),
        (json!({"subdomain": "acme", "token": expired, "end_user_id": u}), "hex_token_rejected"),
        (json!({"subdomain": "acme", "token": other_workspace, "end_user_id": u}), "hex_token_rejected"),
        (json!({"subdomain": "acme", "token": no_scopes, "end_user_id": u}), "hex_insufficient_scope"),
        (json!({"subdomain": "nowhere", "token": good, "end_user_id": u}), "hex_workspace_not_found"),
        (json!({"subdomain": "acme", "token": good}), "invalid_request"),
        (json!({"subdomain": "acme", "token": good, "end_user_id": ""}), "invalid_request"),
        (json!({"subdomain": "acme", "token": good, "end_user_id": u, "metadata": [1]}), "invalid_request"),
        (json!({"subdomain": "acme", "token": 42, "end_user_id": u}), "invalid_body"),
        (json!({"subdomain": "acme", "token": good, "end_user_id": u, "surprise": 1}), "invalid_body"),
    ];
    for (body, code) in table {
        refused(&app, body.clone(), 422, code).await;
    }

    app.fake.fail_next(1, 429, Some("7".into()));
    let headers =
        refused(&app, json!({"subdomain": "acme", "token": good, "end_user_id": u}), 503, "hex_rate_limited")
            .await;
    assert_eq!(headers["retry-after"], "7");
    // A 5xx from users/me falls back to the projects check: 502 only when both fail.
    app.fake.fail_next(2, 500, None);
    refused(&app, json!({"subdomain": "acme", "token": good, "end_user_id": u}), 502, "hex_unavailable")
        .await;
    app.fake.fail_next(2, 503, None);
    refused(&app, json!({"subdomain": "acme", "token": good, "end_user_id": u}), 502, "hex_unavailable")
        .await;

    // And the good token still connects afterwards.
    let key = app.key("connect").await;
    assert_eq!(
        app.connect(&key, json!({"subdomain": "acme", "token": good, "end_user_id": u})).await.status(),
        201
    );
}

async fn malformed_bodies_get_the_contract_shape(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let key = app.key("connect").await;
    let send = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/v1/connect"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        error_code(send("{not json", "application/json").await.unwrap()).await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        error_code(send("{}", "text/plain").await.unwrap()).await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(error_code(send("{}", "application/json").await.unwrap()).await, (422, "invalid_body".into()));
    // serde would read a struct from an array, field by field; a body is an object or nothing.
    for array in [r#"["acme", "hxtp_x", null, "u1"]"#, "[]", "null", "\"acme\""] {
        assert_eq!(
            error_code(send(array, "application/json").await.unwrap()).await,
            (422, "invalid_body".into()),
            "{array}"
        );
    }
    let (id, _) = app.connected(&key).await;
    let patch = app
        .http
        .patch(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(app.key("connections:write").await)
        .header("content-type", "application/json")
        .body("[null, null]")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(patch).await, (422, "invalid_body".into()));
}

async fn a_second_identical_connect_returns_the_first(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let key = app.key("connect").await;
    let (id, token) = app.connected(&key).await;
    let again = app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1"})).await;
    assert_eq!(again.status(), 200);
    assert_eq!(body(again).await["id"], id.as_str());
    // Racing identical connects also leave one row.
    let racers =
        (0..4).map(|_| app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1"})));
    for response in futures_util::future::join_all(racers).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.connection_count().await, 1);
    // Another end user with the same token is another connection.
    let other = app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "u2"})).await;
    assert_eq!(other.status(), 201);
    assert_eq!(app.connection_count().await, 2);
}

on_both_backends!(
    a_valid_personal_token_is_stored_with_its_identity,
    a_subdomain_pasted_as_a_url_means_its_label,
    a_workspace_token_is_stored_without_user_fields,
    a_token_forbidden_users_me_falls_back_to_projects,
    each_refusal_has_its_code_and_stores_nothing,
    malformed_bodies_get_the_contract_shape,
    a_second_identical_connect_returns_the_first,
);

/// Hosts that do not resolve, refuse connections, or never answer: SQLite is enough here.
#[tokio::test]
async fn an_unresolvable_workspace_host_is_not_found() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("HEXBROKER_HEX_URL", "http://{subdomain}.invalid:9"), ("HEXBROKER_HEX_ALLOW_INSECURE", "true")],
    )
    .await
    .unwrap();
    refused(
        &app,
        json!({"subdomain": "acme", "token": "hxtp_x", "end_user_id": "u"}),
        422,
        "hex_workspace_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_hex_unavailable() {
    let (_held, closed) = common::refusing_address();
    let template = format!("http://{closed}/{{subdomain}}");
    let app = TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_HEX_URL", &template)]).await.unwrap();
    refused(
        &app,
        json!({"subdomain": "acme", "token": "hxtp_x", "end_user_id": "u"}),
        502,
        "hex_unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_hex_that_never_answers_times_out_as_unavailable() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let template = format!("http://{}/{{subdomain}}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("HEXBROKER_HEX_URL", &template), ("HEXBROKER_HEX_TIMEOUT", "300ms")],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    refused(
        &app,
        json!({"subdomain": "acme", "token": "hxtp_x", "end_user_id": "u"}),
        502,
        "hex_unavailable",
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
