//! Internal API keys: missing, bad, revoked, wrong scope, other tenant.

use crate::common;

use common::{error_code, Backend, TestApp};

async fn requests_without_a_valid_key_get_the_same_401(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let good = app.key("connections:read").await;
    let revoked = app.key("connections:read").await;
    let revoked_id =
        app.state.store.api_key_by_hash(&app.state.hasher.secret_hash(&revoked)).await.unwrap().unwrap().id;
    assert!(app.state.store.revoke_api_key(revoked_id, &common::system_audit()).await.unwrap());

    let cases: [(&str, Option<String>); 5] = [
        ("no key", None),
        ("a bad key", Some("Bearer hxbk_not-a-real-key".into())),
        ("a revoked key", Some(format!("Bearer {revoked}"))),
        ("another scheme", Some(format!("Basic {good}"))),
        ("an empty bearer", Some("Bearer ".into())),
    ];
    for (what, header) in cases {
        let mut request = app.http.get(app.url("/v1/connections"));
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(&revoked) && !text.contains(&good), "{what}: no secret in the body");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    let ok = app.http.get(app.url("/v1/connections")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

async fn each_route_demands_its_scope(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let read_only = app.key("connections:read").await;
    let proxy_read = app.key("proxy:read").await;
    let admin = app.key("admin").await;

    let delete = app
        .http
        .delete(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(&read_only)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(delete).await, (403, "insufficient_scope".into()));
    let list = app.http.get(app.url("/v1/connections")).bearer_auth(&proxy_read).send().await.unwrap();
    assert_eq!(error_code(list).await, (403, "insufficient_scope".into()));
    let connect = app
        .connect(&read_only, serde_json::json!({"subdomain": "acme", "token": "t", "end_user_id": "u"}))
        .await;
    assert_eq!(error_code(connect).await, (403, "insufficient_scope".into()));
    let post = app
        .http
        .post(app.url("/v1/proxy/v1/projects/x/runs"))
        .bearer_auth(&proxy_read)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(post).await, (403, "insufficient_scope".into()));
    assert!(app.fake.requests().iter().all(|r| r.method != "POST"), "refused before reaching Hex");
    let get = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&proxy_read)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let get =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(get.status(), 200, "admin may do everything in its tenant");
}

async fn another_tenants_connection_does_not_exist(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let other = app.key_in("globex", "admin").await;
    let get =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(error_code(get).await, (404, "not_found".into()));
    let delete =
        app.http.delete(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(error_code(delete).await, (404, "not_found".into()));
    let proxy = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&other)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(proxy).await, (404, "not_found".into()));
    let list: serde_json::Value = app
        .http
        .get(app.url("/v1/connections"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], serde_json::json!([]));
    // Still there for its own tenant.
    let mine = app
        .http
        .get(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(app.key("connections:read").await)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
}

on_both_backends!(
    requests_without_a_valid_key_get_the_same_401,
    each_route_demands_its_scope,
    another_tenants_connection_does_not_exist
);
