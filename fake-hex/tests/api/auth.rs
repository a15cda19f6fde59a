//! Authentication, workspaces, trace ids, failure injection and request recording.

use chrono::{TimeDelta, Utc};
use fake_hex::{Scope, TokenSpec};
use reqwest::Method;

use crate::support::{assert_coded, assert_plain_401, assert_tsoa, Harness};

#[tokio::test]
async fn a_missing_token_gets_a_plain_text_401() {
    let h = Harness::start().await;
    h.hex.add_workspace("acme");
    assert_plain_401(h.call(Method::GET, "acme", "/v1/users/me", None).await).await;
    let basic =
        h.client.get(h.url("acme", "/v1/projects")).basic_auth("user", Some("pass")).send().await.unwrap();
    assert_plain_401(basic).await;
}

#[tokio::test]
async fn an_unknown_token_gets_a_plain_text_401() {
    let h = Harness::start().await;
    h.hex.add_workspace("acme");
    assert_plain_401(h.get("acme", "/v1/users/me", "hxtp_not_a_real_token").await).await;
}

#[tokio::test]
async fn an_expired_token_gets_a_plain_text_401() {
    let h = Harness::start().await;
    let token = h.hex.add_token(
        "acme",
        TokenSpec {
            expires_at: Some(Utc::now() - TimeDelta::seconds(1)),
            ..TokenSpec::personal("ada@example.com")
        },
    );
    assert_plain_401(h.get("acme", "/v1/users/me", &token).await).await;
}

#[tokio::test]
async fn a_revoked_token_gets_a_plain_text_401() {
    let h = Harness::start().await;
    let token = h.hex.add_workspace_token("acme", &Scope::all());
    assert_eq!(h.get("acme", "/v1/projects", &token).await.status(), 200);
    h.hex.revoke_token(&token);
    assert_plain_401(h.get("acme", "/v1/projects", &token).await).await;

    let born_revoked =
        h.hex.add_token("acme", TokenSpec { revoked: true, ..TokenSpec::workspace(&Scope::all()) });
    assert_plain_401(h.get("acme", "/v1/projects", &born_revoked).await).await;
}

#[tokio::test]
async fn a_token_of_another_workspace_gets_a_plain_text_401() {
    let h = Harness::start().await;
    let acme_token = h.hex.add_personal_token("acme", "ada@example.com");
    h.hex.add_workspace("globex");
    assert_plain_401(h.get("globex", "/v1/users/me", &acme_token).await).await;
}

#[tokio::test]
async fn a_token_without_projects_read_gets_a_tsoa_403_from_list_projects() {
    let h = Harness::start().await;
    let token = h.hex.add_workspace_token("acme", &[Scope::UsersRead]);
    let body = h.get_json("acme", "/v1/projects", &token, 403).await;
    assert_tsoa(&body);
}

#[tokio::test]
async fn an_unknown_workspace_answers_404_on_every_path() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    for path in ["/v1/users/me", "/v1/projects", "/nothing/here"] {
        let response = h.get("initech", path, &token).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers().contains_key("x-trace-id"));
        assert_eq!(response.text().await.unwrap(), "", "{path}");
    }
    let root = h.client.get(format!("http://{}/", h.addr)).send().await.unwrap();
    assert_eq!(root.status(), 404);
}

#[tokio::test]
async fn an_unknown_path_in_a_known_workspace_answers_404() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    for path in ["/v1/nothing", "/v2/projects"] {
        let body = h.get_json("acme", path, &token, 404).await;
        assert_coded(&body, "NOT_FOUND");
    }
    let outside_api = h.client.get(format!("http://{}/acme/v1/projects", h.addr)).send().await.unwrap();
    assert_eq!(outside_api.status(), 404);
}

#[tokio::test]
async fn every_response_carries_a_trace_id() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let responses = [
        h.get("acme", "/v1/users/me", &token).await,
        h.get("acme", "/v1/users/me", "hxtp_bad").await,
        h.get("acme", "/v1/nope", &token).await,
        h.get("nowhere", "/v1/users/me", &token).await,
    ];
    let mut seen = Vec::new();
    for response in responses {
        let trace = response.headers()["x-trace-id"].to_str().unwrap().to_owned();
        assert!(trace.len() >= 16 && trace.chars().all(|c| c.is_ascii_hexdigit()), "{trace}");
        seen.push(trace);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "trace ids are fresh per request");
}

#[tokio::test]
async fn fail_next_answers_the_next_requests_with_the_queued_status_then_recovers() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    h.hex.fail_next(2, 429, Some("7".into()));
    h.hex.fail_next(1, 503, None);

    for _ in 0..2 {
        // Before authentication and before the workspace check.
        let response = h.get("nowhere", "/v1/users/me", "hxtp_bad").await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert!(response.headers().contains_key("x-trace-id"));
        assert_coded(&response.json().await.unwrap(), "TOO_MANY_REQUESTS");
    }
    let response = h.call(Method::POST, "acme", "/v1/projects/x/runs", Some(&token)).await;
    assert_eq!(response.status(), 503);
    assert!(!response.headers().contains_key("retry-after"));
    assert_coded(&response.json().await.unwrap(), "SERVICE_UNAVAILABLE");

    assert_eq!(h.get("acme", "/v1/users/me", &token).await.status(), 200);
}

#[tokio::test]
async fn requests_are_recorded_with_path_query_headers_and_body_length() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    h.get("acme", "/v1/projects?limit=2", &token).await;
    h.client.post(h.url("acme", "/v1/nothing")).header("X-Custom", "yes").body("12345").send().await.unwrap();

    let requests = h.hex.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/acme/api/v1/projects");
    assert_eq!(requests[0].query.as_deref(), Some("limit=2"));
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(requests[0].body_len, 0);
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[1].query, None);
    assert_eq!(requests[1].header("x-custom"), Some("yes"));
    assert_eq!(requests[1].body_len, 5);

    h.hex.clear_requests();
    assert!(h.hex.requests().is_empty());
}
