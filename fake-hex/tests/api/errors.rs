//! Error bodies in each operation's documented style, checked against the spec's own error
//! schemas: a token without scopes (403) and a body that is not an object (400) on every
//! operation, and unknown ids (404) on every operation with ids in its path.

use fake_hex::{RateLimits, Scope};
use reqwest::Method;
use serde_json::{json, Value};

use crate::openapi::{Operation, Spec};
use crate::spec_walk::requests;
use crate::support::{assert_coded, assert_tsoa, Harness};

/// Sends `body_text` (raw, as JSON) or nothing, and checks the status and that the body validates
/// against the schema documented for that status (or, where the spec documents none, against the
/// operation's 403 schema: the same style).
async fn expect_error(
    h: &Harness,
    spec: &Spec,
    op: &Operation,
    path: &str,
    token: &str,
    body: Option<&str>,
    status: u16,
) -> Vec<String> {
    let mut request = h
        .client
        .request(Method::from_bytes(op.method.as_bytes()).unwrap(), h.url("acme", path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    let label = format!("{} {} {path}", op.id, op.method);
    if got != status {
        return vec![format!("{label}: status {got}, wanted {status}: {text}")];
    }
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        return vec![format!("{label}: not JSON: {text}")];
    };
    let schema = op.response_schema(status).or_else(|| op.response_schema(403)).expect("a documented 403");
    spec.validate(&body, &schema).into_iter().map(|e| format!("{label}: {e} in {body}")).collect()
}

fn random_ids(_: &str) -> Option<String> {
    Some(uuid::Uuid::new_v4().to_string())
}

#[tokio::test]
async fn every_operation_refuses_a_token_without_scopes_with_its_documented_403() {
    let spec = Spec::load();
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited());
    let token = h.hex.add_workspace_token("acme", &[]);
    let mut failures = Vec::new();
    for op in spec.operations() {
        for (path, _) in requests(&spec, &op, &random_ids, json!({})) {
            failures.extend(expect_error(&h, &spec, &op, &path, &token, None, 403).await);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_operation_with_a_body_refuses_one_that_is_not_an_object_with_its_documented_400() {
    let spec = Spec::load();
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited());
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in spec.operations().into_iter().filter(|op| op.request.is_some()) {
        for (path, _) in requests(&spec, &op, &random_ids, json!({})) {
            checked += 1;
            failures.extend(expect_error(&h, &spec, &op, &path, &token, Some("[1, 2]"), 400).await);
        }
    }
    assert!(checked > 20, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn unknown_ids_get_404_in_each_endpoints_error_style() {
    let spec = Spec::load();
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited());
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let mut failures = Vec::new();
    for op in spec.operations().into_iter().filter(|op| !op.required_params("path").is_empty()) {
        for (path, body) in requests(&spec, &op, &random_ids, json!({})) {
            let body = body.map(|b| b.to_string());
            failures.extend(expect_error(&h, &spec, &op, &path, &token, body.as_deref(), 404).await);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn older_endpoints_answer_reason_and_newer_ones_code() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let unknown = uuid::Uuid::new_v4();
    // Tsoa: ListProjects, GetGroup, CreateCollection, UpsertGuideDraft.
    assert_tsoa(&h.get_json("acme", "/v1/projects?limit=0", &token, 400).await);
    assert_tsoa(&h.get_json("acme", &format!("/v1/groups/{unknown}"), &token, 404).await);
    assert_tsoa(&h.json(Method::POST, "/v1/collections", &token, Some(json!({})), 400).await);
    assert_tsoa(&h.json(Method::PUT, "/v1/guides/draft", &token, Some(json!({ "files": "no" })), 400).await);
    // Coded: CreateProject, GetCell, ListDataConnections, CreateThread.
    assert_coded(&h.json(Method::POST, "/v1/projects", &token, Some(json!({})), 400).await, "BAD_REQUEST");
    assert_coded(&h.get_json("acme", &format!("/v1/cells/{unknown}"), &token, 404).await, "NOT_FOUND");
    assert_coded(&h.get_json("acme", "/v1/data-connections?limit=500", &token, 400).await, "BAD_REQUEST");
    let empty_prompt = h.json(Method::POST, "/v1/threads", &token, Some(json!({ "prompt": "" })), 400).await;
    assert_coded(&empty_prompt, "BAD_REQUEST");
    // The two whose details are lists of objects.
    let semantic = h.hex.add_semantic_project("acme", "Metrics", &["orders"], &[]);
    let update = json!({ "updates": [{ "type": "VIEW", "name": "nope", "status": null }] });
    let missing =
        h.json(Method::PATCH, &format!("/v1/semantic-models/{semantic}"), &token, Some(update), 404).await;
    assert_eq!(missing["details"], json!([{ "name": "nope", "type": "VIEW", "reason": "not_found" }]));
    let bad_status = json!({ "updates": [{ "type": "DATASET", "name": "orders", "status": "Shiny" }] });
    let invalid = h
        .json(Method::PATCH, &format!("/v1/semantic-projects/{semantic}"), &token, Some(bad_status), 400)
        .await;
    assert_eq!(invalid["details"][0]["reason"], "invalid_status");
    assert_eq!(invalid["details"][0]["value"], "Shiny");
}

#[tokio::test]
async fn a_missing_token_still_gets_plain_text_on_the_new_endpoints() {
    let h = Harness::start().await;
    h.hex.add_workspace_token("acme", &Scope::all());
    for path in ["/v1/groups", "/v1/cells?projectId=x", "/v1/threads", "/v1/guides/draft/list"] {
        crate::support::assert_plain_401(h.call(Method::GET, "acme", path, None).await).await;
    }
}
