//! Reading, changing and deleting connections over HTTP.

use crate::common;

use common::{error_code, Backend, TestApp};
use serde_json::{json, Value};

async fn connections_list_in_pages_and_filter(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    app.fake.add_workspace("acme");
    let connect = app.key("connect").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let token = app.fake.add_personal_token("acme", &format!("p{i}@example.com"));
        let user = if i % 2 == 0 { "even" } else { "odd" };
        let c: Value = app
            .connect(&connect, json!({"subdomain": "acme", "token": token, "end_user_id": user}))
            .await
            .json()
            .await
            .unwrap();
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let read = app.key("connections:read").await;
    let page = |query: String| {
        let (http, url, read) = (app.http.clone(), app.url(&format!("/v1/connections{query}")), read.clone());
        async move { http.get(url).bearer_auth(read).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".into(),
        };
        let body = page(query).await;
        for c in body["data"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every connection once, newest first");

    let odd = page("?end_user_id=odd".into()).await;
    assert_eq!(odd["data"].as_array().unwrap().len(), 2);
    assert_eq!(page("?status=active".into()).await["data"].as_array().unwrap().len(), 5);
    assert_eq!(page("?status=invalid".into()).await["data"].as_array().unwrap().len(), 0);

    for bad in ["?limit=0", "?limit=201", "?status=weird", "?cursor=zzz", "?limit=abc", "?unknown=1"] {
        let response =
            app.http.get(app.url(&format!("/v1/connections{bad}"))).bearer_auth(&read).send().await.unwrap();
        assert_eq!(error_code(response).await, (422, "invalid_query".into()), "{bad}");
    }
}

async fn a_connection_can_be_read_relabelled_and_deleted(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let write = app.key("connections:read,connections:write").await;
    let url = app.url(&format!("/v1/connections/{id}"));

    let got: Value = app.http.get(&url).bearer_auth(&write).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["id"], id.as_str());
    assert!(got.get("tenant").is_none());

    let patched = app
        .http
        .patch(&url)
        .bearer_auth(&write)
        .json(&json!({"label": "Renamed", "metadata": {"a": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["label"], "Renamed");
    assert_eq!(patched["metadata"], json!({"a": 1}));
    let cleared: Value = app
        .http
        .patch(&url)
        .bearer_auth(&write)
        .json(&json!({"label": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cleared["label"].is_null());
    assert_eq!(cleared["metadata"], json!({"a": 1}), "fields left out stay as they are");
    let bad = app.http.patch(&url).bearer_auth(&write).json(&json!({"metadata": "x"})).send().await.unwrap();
    assert_eq!(error_code(bad).await, (422, "invalid_request".into()));

    let deleted = app.http.delete(&url).bearer_auth(&write).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.connection_count().await, 0, "the row and its token are gone");
    assert_eq!(
        error_code(app.http.get(&url).bearer_auth(&write).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    assert_eq!(
        error_code(app.http.delete(&url).bearer_auth(&write).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(app.key("proxy").await)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(proxied).await, (404, "not_found".into()));
    let malformed =
        app.http.get(app.url("/v1/connections/not-a-uuid")).bearer_auth(&write).send().await.unwrap();
    assert_eq!(error_code(malformed).await, (404, "not_found".into()));
}

on_both_backends!(connections_list_in_pages_and_filter, a_connection_can_be_read_relabelled_and_deleted);

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_contract_shape() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    assert_eq!(
        error_code(app.http.get(app.url("/nope")).send().await.unwrap()).await,
        (404, "route_not_found".into())
    );
    // A method a route does not take: 405 in the contract's shape, with `Allow` (RFC 9110),
    // the proxy surfaces included, whatever the credential.
    let proxied = "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS";
    for (method, path, allow) in [
        ("PUT", "/v1/connections", "GET,HEAD"),
        ("DELETE", "/v1/connect", "POST,OPTIONS"),
        ("TRACE", "/v1/proxy/v1/projects", proxied),
        ("TRACE", "/api/v1/projects", proxied),
    ] {
        let response = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth("hxbk_whatever")
            .send()
            .await
            .unwrap();
        let allowed = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let mut allowed: Vec<String> =
            allowed.unwrap_or_default().split(',').map(|m| m.trim().to_owned()).collect();
        let mut expected: Vec<&str> = allow.split(',').collect();
        allowed.sort();
        expected.sort_unstable();
        assert_eq!(allowed, expected, "{method} {path}: Allow");
        assert_eq!(error_code(response).await, (405, "method_not_allowed".into()), "{method} {path}");
    }
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let given = app.http.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    let ours = given.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(ours, "abc-123", "x-request-id is always hexbroker's own (§5)");
    assert!(!ours.is_empty() && ours.len() <= 128, "{ours}");
}
