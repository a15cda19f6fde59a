//! One workspace served at the root of an origin, as Hex on its own domain answers
//! (`https://hex.mycorp.com/api/v1/…`).

use std::net::{IpAddr, Ipv4Addr};

use fake_hex::FakeHex;
use serde_json::Value;

#[tokio::test]
async fn a_workspace_at_the_root_answers_without_its_prefix_and_hands_out_root_urls() {
    let hex = FakeHex::new();
    let token = hex.add_personal_token("mycorp", "ada@mycorp.example.com");
    let project = hex.add_project("mycorp", "Revenue");
    let addr = hex.spawn_at_root("mycorp", IpAddr::V4(Ipv4Addr::LOCALHOST)).await.unwrap();
    let client = reqwest::Client::new();
    let origin = format!("http://{addr}");

    let me = client.get(format!("{origin}/api/v1/users/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["email"], "ada@mycorp.example.com");

    let started = client
        .post(format!("{origin}/api/v1/projects/{project}/runs?x=1"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let run: Value = started.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap();
    assert_eq!(run["runStatusUrl"], format!("{origin}/api/v1/projects/{project}/runs/{run_id}"));
    assert!(run["runUrl"].as_str().unwrap().starts_with(&format!("{origin}/app/{project}/")), "{run}");
    let status = client.get(run["runStatusUrl"].as_str().unwrap()).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status.status(), 200, "the URL handed out works");

    let paths: Vec<String> = hex.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/users/me",
            &*format!("/api/v1/projects/{project}/runs"),
            &*format!("/api/v1/projects/{project}/runs/{run_id}")
        ],
        "recorded as received"
    );
    assert_eq!(hex.requests()[1].query.as_deref(), Some("x=1"));

    // The prefixed form is not this origin's: Hex on its own domain has no workspace prefix.
    let prefixed =
        client.get(format!("{origin}/mycorp/api/v1/users/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(prefixed.status(), 404);

    // The same model, served by path prefix too.
    let template = hex.spawn().await.unwrap();
    let me = client
        .get(format!("http://{template}/mycorp/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}
