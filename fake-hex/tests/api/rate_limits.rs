//! Per-token rate limits: 429 with `Retry-After`, per token and per group, configurable.

use std::time::Duration;

use fake_hex::{RateGroup, RateLimits, Scope, Window};
use reqwest::Method;
use serde_json::json;

use crate::support::{assert_coded, assert_tsoa, Harness};

/// The `Retry-After` seconds of a 429, checked to be a whole number within `1..=max`.
fn retry_after(response: &reqwest::Response, max: u64) -> u64 {
    let value = response.headers().get("retry-after").expect("a Retry-After header").to_str().unwrap();
    let seconds: u64 = value.parse().unwrap_or_else(|_| panic!("Retry-After {value:?} is not whole seconds"));
    assert!((1..=max).contains(&seconds), "{seconds}");
    seconds
}

#[tokio::test]
async fn the_thirty_first_users_me_in_a_minute_gets_429_with_retry_after_and_other_tokens_are_unaffected() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let other = h.hex.add_personal_token("acme", "bo@example.com");
    for i in 0..30 {
        assert_eq!(h.get("acme", "/v1/users/me", &token).await.status(), 200, "request {i}");
    }
    let limited = h.get("acme", "/v1/users/me", &token).await;
    assert_eq!(limited.status(), 429);
    retry_after(&limited, 60);
    assert!(limited.headers().contains_key("x-trace-id"));
    assert_coded(&limited.json().await.unwrap(), "TOO_MANY_REQUESTS");

    assert_eq!(h.get("acme", "/v1/users/me", &other).await.status(), 200, "another token has its own limit");
    // ListUsers is in the same fixed 30-a-minute group, so it is refused too; ListProjects is not.
    assert_eq!(h.get("acme", "/v1/users", &token).await.status(), 429);
    assert_eq!(h.get("acme", "/v1/projects", &token).await.status(), 200);
}

#[tokio::test]
async fn run_project_allows_twenty_a_minute_and_shares_its_group_with_threads() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let project = h.hex.add_project("acme", "Nightly");
    let start = format!("/v1/projects/{project}/runs");
    for i in 0..20 {
        assert_eq!(h.call(Method::POST, "acme", &start, Some(&token)).await.status(), 201, "run {i}");
    }
    let limited = h.call(Method::POST, "acme", &start, Some(&token)).await;
    assert_eq!(limited.status(), 429);
    retry_after(&limited, 60);
    assert_coded(&limited.json().await.unwrap(), "TOO_MANY_REQUESTS");
    // The legacy path is the same operation, and CreateThread is in the same `hex-run-kernel` group.
    let legacy = h.call(Method::POST, "acme", &format!("/v1/project/{project}/run"), Some(&token)).await;
    assert_eq!(legacy.status(), 429);
    let thread = h.send(Method::POST, "acme", "/v1/threads", &token, Some(&json!({ "prompt": "hi" }))).await;
    assert_eq!(thread.status(), 429);
}

#[tokio::test]
async fn unlimited_lets_a_hundred_through() {
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited());
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    for i in 0..100 {
        assert_eq!(h.get("acme", "/v1/users/me", &token).await.status(), 200, "request {i}");
    }
    assert_eq!(h.hex.rate_limits(), RateLimits::unlimited());
}

#[tokio::test]
async fn a_tsoa_endpoint_over_its_limit_answers_in_its_own_style() {
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::hex_defaults().with(RateGroup::HexApi, &[Window::per_minute(2)]));
    let token = h.hex.add_workspace_token("acme", &Scope::all());
    for _ in 0..2 {
        assert_eq!(h.get("acme", "/v1/groups", &token).await.status(), 200);
    }
    let limited = h.get("acme", "/v1/projects", &token).await;
    assert_eq!(limited.status(), 429);
    assert_tsoa(&limited.json().await.unwrap());
}

#[tokio::test]
async fn chart_images_allow_twenty_a_minute_and_semantic_ingest_three() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let project = h.hex.add_project("acme", "Charts");
    let chart = h.hex.add_chart_cell("acme", &project, "Sales").unwrap();
    let image = format!("/v1/cells/{}/image", chart.id);
    for i in 0..20 {
        assert_eq!(h.get("acme", &image, &token).await.status(), 200, "image {i}");
    }
    assert_eq!(h.get("acme", &image, &token).await.status(), 429);

    let semantic = h.hex.add_semantic_project("acme", "Metrics", &["orders"], &[]);
    let ingest = format!("/v1/semantic-projects/{semantic}/ingest");
    for i in 0..3 {
        let response = h.send(Method::POST, "acme", &ingest, &token, Some(&json!({}))).await;
        assert_eq!(response.status(), 201, "ingest {i}");
    }
    let limited = h.send(Method::POST, "acme", &ingest, &token, Some(&json!({}))).await;
    assert_eq!(limited.status(), 429);
    assert_tsoa(&limited.json().await.unwrap());
}

#[tokio::test]
async fn a_refused_request_does_not_count_and_room_returns_as_the_window_slides() {
    let h = Harness::start().await;
    let window = Window { max: 2, per: Duration::from_millis(1500) };
    h.hex.set_rate_limits(RateLimits::unlimited().with(RateGroup::HexApi30Rpm, &[window]));
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let me = || h.get("acme", "/v1/users/me", &token);
    assert_eq!(me().await.status(), 200); // t = 0
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(me().await.status(), 200); // t = 0.8 s
    let limited = me().await;
    assert_eq!(limited.status(), 429);
    retry_after(&limited, 2);
    // At 1.7 s the first request has left the window and the second has not: one more fits only
    // if the refused request was not counted.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(me().await.status(), 200);
    assert_eq!(me().await.status(), 429);
}

#[tokio::test]
async fn a_bad_token_is_refused_before_rate_limits_apply() {
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited().with(RateGroup::HexApi30Rpm, &[Window::per_minute(1)]));
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    for _ in 0..3 {
        assert_eq!(h.get("acme", "/v1/users/me", "hxtp_unknown").await.status(), 401);
    }
    assert_eq!(h.get("acme", "/v1/users/me", &token).await.status(), 200);
}
