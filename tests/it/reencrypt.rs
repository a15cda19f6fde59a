//! Key rotation: add a new key in front, re-encrypt, drop the old key — and everything still
//! opens: stored tokens, and the keyed-hash key behind every API key.

use crate::common;

use common::{Backend, TestApp};
use hexbroker::crypto::Keyring;
use hexbroker::AppState;

fn entry(id: &str) -> String {
    let generated = Keyring::generate_entry();
    format!("{id}:{}", generated.split_once(':').unwrap().1)
}

async fn state_with_keys(app: &TestApp, keys: &str) -> anyhow::Result<AppState> {
    app.state_with(&[("HEXBROKER_ENCRYPTION_KEYS", keys)]).await
}

async fn rotation_reseals_everything_under_the_new_key(backend: Backend) {
    let old = entry("old");
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_ENCRYPTION_KEYS", &old)]).await else {
        return;
    };
    let key = app.key("connect,proxy").await;
    let (first, _) = app.connected(&key).await;
    let token = app.fake.add_personal_token("acme", "two@example.com");
    let second: serde_json::Value = app
        .connect(&key, serde_json::json!({"subdomain": "acme", "token": token, "end_user_id": "u2"}))
        .await
        .json()
        .await
        .unwrap();
    let second = second["id"].as_str().unwrap().to_owned();

    let new = entry("new");
    assert!(state_with_keys(&app, &new).await.is_err(), "without the old key nothing opens");

    let rotating = state_with_keys(&app, &format!("{new},{old}")).await.unwrap();
    let report = hexbroker::reencrypt::run(&rotating).await.unwrap();
    assert_eq!((report.resealed, report.skipped), (2, 0));
    assert_eq!(
        hexbroker::reencrypt::run(&rotating).await.unwrap().resealed,
        0,
        "a second run has nothing to do"
    );

    // Only the new key now: the API key and both tokens still work.
    let rotated = state_with_keys(&app, &new).await.unwrap();
    let base = common::serve_state(rotated).await;
    for id in [&first, &second] {
        let response = app
            .http
            .get(format!("{base}/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

on_both_backends!(rotation_reseals_everything_under_the_new_key);
