//! `ANY /v1/proxy/{path}`: through to the fake Hex and back, on both backends.

use crate::common;

use common::{error_code, Backend, TestApp};
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn a_get_reaches_hex_with_the_stored_token_and_no_caller_credentials(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let connect = app.key("connect").await;
    let (id, token) = app.connected(&connect).await;
    for i in 0..3 {
        app.fake.add_project("acme", &format!("Project {i}"));
    }
    let key = app.key("proxy").await;
    app.fake.clear_requests();
    let response = app
        .http
        .get(app.url("/v1/proxy/v1/projects?limit=2"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .header("cookie", "session=caller-cookie")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["hexbroker-upstream"], "hex");
    assert!(response.headers().contains_key("x-trace-id"), "Hex's own headers are relayed");
    assert!(response.headers().contains_key("x-request-id"));
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["values"].as_array().unwrap().len(), 2);
    assert!(page["pagination"]["after"].is_string());

    let seen = app.fake.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/acme/api/v1/projects");
    assert_eq!(request.query.as_deref(), Some("limit=2"));
    let header = |name: &str| request.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(header("cookie"), None);
    assert_eq!(header("connection-id"), None);
    assert_eq!(header("x-custom"), Some("kept"));
    assert!(!request.headers.iter().any(|(_, v)| v.contains(&key)), "the caller's key never reaches Hex");
}

async fn a_post_runs_a_project_and_hex_status_and_body_come_back_unchanged(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    let key = app.key("proxy").await;
    let run = app
        .http
        .post(app.url(&format!("/v1/proxy/v1/projects/{project}/runs")))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .json(&json!({"inputParams": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 201);
    let run: Value = run.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap();

    let status = app
        .http
        .get(app.url(&format!("/v1/proxy/v1/projects/{project}/runs/{run_id}")))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    let cancel = app
        .http
        .delete(app.url(&format!("/v1/proxy/v1/projects/{project}/runs/{run_id}")))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 204);
    assert_eq!(cancel.bytes().await.unwrap().len(), 0);

    // Hex's own errors are relayed as they are, marked as Hex's.
    let missing = app
        .http
        .get(app.url("/v1/proxy/v1/projects/00000000-0000-0000-0000-000000000000"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["hexbroker-upstream"], "hex");
    let body: Value = missing.json().await.unwrap();
    assert!(body.get("error").is_none(), "Hex's body, not hexbroker's: {body}");
}

async fn hex_401_is_relayed_and_invalidates_the_connection(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    app.fake.revoke_token(&token);
    let response = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(app.key("proxy").await)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["hexbroker-upstream"], "hex");
    assert_eq!(response.text().await.unwrap(), "Unauthorized");

    // The token is re-checked beside the response; once Hex refuses it there too, the
    // connection is invalid, and Hex is not called again.
    let key = app.key("proxy,connections:read").await;
    let started = std::time::Instant::now();
    loop {
        let shown: Value = app
            .http
            .get(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["status"] == "invalid" {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "never invalidated");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.fake.clear_requests();
    let later = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(later).await, (424, "connection_invalid".into()));
    assert!(app.fake.requests().is_empty());
    let connection: Value = app
        .http
        .get(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "invalid");
}

async fn multi_megabyte_bodies_stream_both_ways(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy").await;

    // Download: 8 MiB generated by Hex in chunks.
    let n = 8 * 1024 * 1024;
    let response = app
        .http
        .get(app.url(&format!("/v1/proxy/__fake/bytes?n={n}")))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let (mut total, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
        chunks += 1;
    }
    assert_eq!(total, n);
    assert!(chunks > 1, "the body arrived in pieces, not as one buffer");

    // Upload: 6 MiB sent as a stream of chunks, echoed back.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = (0..96u8).map(|i| Ok(vec![i; 64 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let response = app
        .http
        .post(app.url("/v1/proxy/__fake/echo"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), 96 * 64 * 1024);
    assert!(echoed.chunks(64 * 1024).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));
}

async fn the_proxy_refuses_what_it_cannot_forward(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy").await;
    let get = |path: &str, connection: Option<&str>| {
        let mut request = app.http.get(app.url(path)).bearer_auth(&key);
        if let Some(c) = connection {
            request = request.header("connection-id", c);
        }
        request.send()
    };
    assert_eq!(
        error_code(get("/v1/proxy/v1/projects", None).await.unwrap()).await,
        (400, "missing_connection_id".into())
    );
    assert_eq!(
        error_code(get("/v1/proxy/v1/projects", Some("nope")).await.unwrap()).await,
        (404, "not_found".into())
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        error_code(get("/v1/proxy/v1/projects", Some(&unknown)).await.unwrap()).await,
        (404, "not_found".into())
    );
    // HTTP clients resolve dot segments before sending; a hostile caller need not.
    for path in ["/v1/proxy/v1/%2e%2e/%2e%2e/admin", "/v1/proxy/v1/../../admin"] {
        let raw = raw_get(&app, path, &key, &id).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("\"invalid_path\""), "{raw}");
    }
    assert!(app.fake.requests().iter().all(|r| !r.path.contains("admin")), "nothing reached Hex");
}

/// Sends a GET with the request target exactly as given and returns the whole answer.
async fn raw_get(app: &TestApp, target: &str, key: &str, connection: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\nconnection-id: {connection}\r\nconnection: close\r\n\r\n",
        app.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer
}

on_both_backends!(
    a_get_reaches_hex_with_the_stored_token_and_no_caller_credentials,
    a_post_runs_a_project_and_hex_status_and_body_come_back_unchanged,
    hex_401_is_relayed_and_invalidates_the_connection,
    multi_megabyte_bodies_stream_both_ways,
    the_proxy_refuses_what_it_cannot_forward,
);

#[tokio::test]
async fn an_unreachable_hex_is_a_502_from_hexbroker() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (id, _) = app.connected(&app.key("connect").await).await;
    // Point the same database at a Hex that is gone.
    let (_held, closed) = common::refusing_address();
    let base = app.second_broker(&[("HEXBROKER_HEX_URL", &format!("http://{closed}/{{subdomain}}"))]).await;
    let response = app
        .http
        .get(format!("{base}/v1/proxy/v1/projects"))
        .bearer_auth(app.key("proxy").await)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("hexbroker-upstream").is_none());
    assert_eq!(error_code(response).await, (502, "hex_unavailable".into()));
}

mod retries {
    use super::common::{Backend, TestApp};
    use std::time::{Duration, Instant};

    async fn app_with_connection(extra: &[(&str, &str)]) -> (TestApp, String, String) {
        let app = TestApp::start_with(Backend::Sqlite, extra).await.unwrap();
        let (id, _) = app.connected(&app.key("connect").await).await;
        let key = app.key("proxy").await;
        app.fake.clear_requests();
        (app, id, key)
    }

    async fn call(
        app: &TestApp,
        method: reqwest::Method,
        path: &str,
        id: &str,
        key: &str,
    ) -> reqwest::Response {
        app.http
            .request(method, app.url(path))
            .bearer_auth(key)
            .header("connection-id", id)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_idempotent_call_is_retried_after_a_503() {
        let (app, id, key) = app_with_connection(&[]).await;
        app.fake.fail_next(1, 503, None);
        let response = call(&app, reqwest::Method::GET, "/v1/proxy/v1/projects", &id, &key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(app.fake.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_post_is_not_retried_after_a_503_but_is_after_a_429() {
        let (app, id, key) = app_with_connection(&[]).await;
        let project = app.fake.add_project("acme", "P");
        let path = format!("/v1/proxy/v1/projects/{project}/runs");
        app.fake.fail_next(1, 503, None);
        let response = call(&app, reqwest::Method::POST, &path, &id, &key).await;
        assert_eq!(response.status(), 503, "Hex's answer, relayed");
        assert_eq!(response.headers()["hexbroker-upstream"], "hex");
        assert_eq!(app.fake.requests().len(), 1);

        app.fake.clear_requests();
        app.fake.fail_next(1, 429, Some("1".into()));
        let started = Instant::now();
        let response = call(&app, reqwest::Method::POST, &path, &id, &key).await;
        assert_eq!(response.status(), 201);
        assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After: 1 was honoured");
        assert_eq!(app.fake.requests().len(), 2);
    }

    #[tokio::test]
    async fn retry_after_as_an_http_date_is_honoured() {
        let (app, id, key) = app_with_connection(&[]).await;
        let at = std::time::SystemTime::now() + Duration::from_secs(2);
        app.fake.fail_next(1, 429, Some(httpdate::fmt_http_date(at)));
        let started = Instant::now();
        let response = call(&app, reqwest::Method::GET, "/v1/proxy/v1/projects", &id, &key).await;
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_wait_beyond_the_budget_relays_hexs_429_at_once() {
        let (app, id, key) = app_with_connection(&[("HEXBROKER_PROXY_RETRY_BUDGET", "2s")]).await;
        app.fake.fail_next(1, 429, Some("30".into()));
        let started = Instant::now();
        let response = call(&app, reqwest::Method::GET, "/v1/proxy/v1/projects", &id, &key).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "30");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(app.fake.requests().len(), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_the_configured_count() {
        let (app, id, key) = app_with_connection(&[("HEXBROKER_PROXY_RETRIES", "2")]).await;
        app.fake.fail_next(5, 503, None);
        let response = call(&app, reqwest::Method::GET, "/v1/proxy/v1/projects", &id, &key).await;
        assert_eq!(response.status(), 503);
        assert_eq!(app.fake.requests().len(), 3, "one attempt and two retries");
    }

    #[tokio::test]
    async fn a_hex_that_trickles_its_body_is_cut_off_at_the_exchange_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let trickler = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = trickler.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = trickler.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"values\":";
                let _ = socket.write_all(head.as_bytes()).await;
                held.push(socket);
            }
        });
        let (app, id, key) = app_with_connection(&[]).await;
        let hex_url = format!("http://{addr}/{{subdomain}}");
        let base = app
            .second_broker(&[("HEXBROKER_HEX_URL", &hex_url), ("HEXBROKER_PROXY_EXCHANGE_TIMEOUT", "500ms")])
            .await;
        let started = Instant::now();
        let response = app
            .http
            .get(format!("{base}/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the head came in time");
        assert!(response.bytes().await.is_err(), "the body was cut off, not waited for");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_slow_hex_times_out_without_tying_up_the_broker() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let (app, id, key) = app_with_connection(&[("HEXBROKER_PROXY_TIMEOUT", "300ms")]).await;
        // Point a second broker on the same database at the silent Hex.
        let base = app.second_broker(&[("HEXBROKER_HEX_URL", &format!("http://{addr}/{{subdomain}}"))]).await;
        let started = Instant::now();
        let slow = app
            .http
            .get(format!("{base}/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", &id)
            .send();
        let health = app.http.get(format!("{base}/healthz")).send();
        let (slow, health) = tokio::join!(slow, health);
        assert_eq!(health.unwrap().status(), 200, "the broker still answers while Hex is slow");
        assert_eq!(super::common::error_code(slow.unwrap()).await, (504, "hex_timeout".into()));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

mod outbound_limit {
    use super::common::{error_code, Backend, TestApp};
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn over_the_limit_hexbroker_answers_429_itself() {
        let app = TestApp::start_with(
            Backend::Sqlite,
            &[("HEXBROKER_PROXY_RATE_LIMIT", "3"), ("HEXBROKER_PROXY_RETRY_BUDGET", "1s")],
        )
        .await
        .unwrap();
        let (id, _) = app.connected(&app.key("connect").await).await;
        let key = app.key("proxy,connections:write").await;
        app.fake.clear_requests();
        let get = || {
            app.http
                .get(app.url("/v1/proxy/v1/projects"))
                .bearer_auth(&key)
                .header("connection-id", &id)
                .send()
        };
        for _ in 0..3 {
            assert_eq!(get().await.unwrap().status(), 200);
        }
        let over = get().await.unwrap();
        assert!(over.headers().get("hexbroker-upstream").is_none(), "hexbroker's own answer");
        let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        assert_eq!(error_code(over).await, (429, "connection_rate_limited".into()));
        assert_eq!(app.fake.requests().len(), 3, "the refused call never reached Hex");

        // A connection's own limit overrides the default: 600 a minute is a slot every 100 ms,
        // so a call over its burst waits within the budget instead of being refused.
        let patched: Value = app
            .http
            .patch(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&key)
            .json(&json!({"rate_limit_per_minute": 600}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(patched["rate_limit_per_minute"], 600);
        let started = Instant::now();
        for _ in 0..3 {
            assert_eq!(get().await.unwrap().status(), 200);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let bad = app
            .http
            .patch(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&key)
            .json(&json!({"rate_limit_per_minute": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(bad).await, (422, "invalid_request".into()));
    }

    #[tokio::test]
    async fn without_a_limit_nothing_is_held_back() {
        let app = TestApp::start(Backend::Sqlite).await.unwrap();
        let (id, _) = app.connected(&app.key("connect").await).await;
        let key = app.key("proxy").await;
        for _ in 0..20 {
            let r = app
                .http
                .get(app.url("/v1/proxy/v1/projects"))
                .bearer_auth(&key)
                .header("connection-id", &id)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "under Hex's own limit, every call goes through");
            assert_eq!(r.headers()["hexbroker-upstream"], "hex");
        }
    }
}

/// The fake Hex answers only requests addressed to its own host, so every proxied call in this
/// suite also checks the `Host` hexbroker sends (the fake routes by path and would not notice).
#[tokio::test]
async fn the_fake_hex_refuses_a_request_addressed_to_another_host() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (_, token) = app.connected(&app.key("connect").await).await;
    let url = format!("http://{}/acme/api/v1/projects", app.fake_addr);
    let wrong = app.http.get(&url).bearer_auth(&token).header("host", "acme.hex.tech").send().await.unwrap();
    assert_eq!(wrong.status(), 421);
    let right = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(right.status(), 200);
}
