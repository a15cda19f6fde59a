//! The per-workspace bound on proxied calls in flight to Hex
//! (`HEXBROKER_PROXY_MAX_PER_WORKSPACE`): a workspace whose Hex hangs holds only its own slots;
//! past them it gets a fast 503 `workspace_busy`, and other workspaces are served meanwhile.

use crate::common;

use std::time::Duration;

use common::{error_code, gated_hex, Backend, TestApp};
use serde_json::json;

/// Connects a personal token of workspace `subdomain` for `end_user`; returns the connection id.
async fn connect(app: &TestApp, key: &str, subdomain: &str, end_user: &str) -> String {
    app.fake.add_workspace(subdomain);
    let token = app.fake.add_personal_token(subdomain, "ada@example.com");
    let response =
        app.connect(key, json!({"subdomain": subdomain, "token": token, "end_user_id": end_user})).await;
    assert_eq!(response.status(), 201, "connect {subdomain}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_workspace_holds_only_its_own_slots_and_others_answer_meanwhile() {
    let (hex_url, gate, mut arrivals) = gated_hex("/stuck/").await;
    let app = TestApp::start_with(Backend::Sqlite, &[]).await.unwrap();
    let connect_key = app.key("connect").await;
    let stuck = connect(&app, &connect_key, "stuck", "u1").await;
    let other = connect(&app, &connect_key, "other", "u2").await;
    let key = app.key("proxy").await;
    let base = app
        .second_broker(&[("HEXBROKER_HEX_URL", &hex_url), ("HEXBROKER_PROXY_MAX_PER_WORKSPACE", "2")])
        .await;
    // Each call on a client of its own, so each is a connection of its own to the broker.
    let call = |id: &str| {
        reqwest::Client::new()
            .get(format!("{base}/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", id)
            .send()
    };

    let first = tokio::spawn(call(&stuck));
    let second = tokio::spawn(call(&stuck));
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), arrivals.recv()).await.expect("reached Hex").unwrap();
    }

    // The gate stays shut, so a queued call would never be answered: a generous deadline tells
    // "refused at once" from "queued" without timing anything on a loaded machine.
    let refused =
        tokio::time::timeout(Duration::from_secs(10), call(&stuck)).await.expect("not queued").unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error_code(refused).await, (503, "workspace_busy".into()));
    assert!(arrivals.try_recv().is_err(), "the refused call never reached Hex");

    let served =
        tokio::time::timeout(Duration::from_secs(10), call(&other)).await.expect("not held back").unwrap();
    assert_eq!(served.status(), 200, "another workspace is not held back");
    assert!(!first.is_finished() && !second.is_finished(), "the stuck calls still hold their slots");

    gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    gate.add_permits(1);
    assert_eq!(call(&stuck).await.unwrap().status(), 200, "slots are given back when the calls end");
}
