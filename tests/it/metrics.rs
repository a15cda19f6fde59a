//! `GET /metrics`: Prometheus text with requests by route template, Hex's latency apart from
//! hexbroker's, retries, and connections by status — and no ids or secrets in any label.

use crate::common;

use common::{Backend, TestApp};

async fn metrics_count_what_happened_and_name_no_ids(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_METRICS_REFRESH", "50ms")]).await else {
        return;
    };
    let connect = app.key("connect").await;
    let (id, token) = app.connected(&connect).await;
    let key = app.key("proxy").await;
    for _ in 0..3 {
        let r = app
            .http
            .get(app.url("/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    app.fake.fail_next(1, 503, None);
    let r = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "retried");
    let _ = app.http.get(app.url("/nowhere")).send().await.unwrap();

    // The connection gauges are counted in the background: scrape until the count shows.
    let scrape = || async { app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let started = std::time::Instant::now();
    let mut text = scrape().await;
    while !text.contains(r#"hexbroker_connections{status="active"} 1"#) && started.elapsed().as_secs() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = scrape().await;
    }
    let has = |needle: &str| assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    has(r#"hexbroker_http_requests_total{route="/v1/proxy/{*path}",method="GET",status="200"} 4"#);
    // Scrapes until the gauge showed are counted too; the route's own line is not checked.
    has(r#"hexbroker_http_requests_total{route="/v1/connect",method="POST",status="201"} 1"#);
    has(r#"hexbroker_http_requests_total{route="unmatched",method="GET",status="404"} 1"#);
    has(r#"hexbroker_http_request_duration_seconds_bucket{le="#);
    has(r#"hexbroker_hex_responses_total{method="GET",status="200"} 4"#);
    has(r#"hexbroker_hex_responses_total{method="GET",status="503"} 1"#);
    has(r#"hexbroker_hex_response_duration_seconds_count{method="GET",status="200"} 4"#);
    has(r#"hexbroker_hex_retries_total{kind="unavailable"} 1"#);
    has(r#"hexbroker_connections{status="active"} 1"#);
    has(r#"hexbroker_connections{status="invalid"} 0"#);
    for secret in [id.as_str(), &token, &key, &connect] {
        assert!(!text.contains(secret), "an id or secret reached the metrics");
    }
    let uuid = regex_lite_uuid(&text);
    assert!(uuid.is_none(), "a uuid in the metrics: {uuid:?}");
}

/// Finds anything shaped like a uuid (8-4-4-4-12 hex digits).
fn regex_lite_uuid(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    (0..bytes.len()).find_map(|start| {
        let mut i = start;
        for (n, len) in shape.iter().enumerate() {
            if i + len > bytes.len() || !bytes[i..i + len].iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += len;
            if n < 4 {
                if bytes.get(i) != Some(&b'-') {
                    return None;
                }
                i += 1;
            }
        }
        Some(text[start..i].to_owned())
    })
}

/// A scrape reads memory only: with a refresh far off, a connection made after start-up does not
/// show until the next count, however often `/metrics` is scraped.
async fn a_scrape_does_not_count_connections_in_the_database(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_METRICS_REFRESH", "60m")]).await else {
        return;
    };
    // The first count runs at start-up; wait for it to have run (the gauge exists then).
    let scrape = || async { app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let started = std::time::Instant::now();
    while !scrape().await.contains(r#"hexbroker_connections{status="active"} 0"#) {
        assert!(started.elapsed().as_secs() < 5, "the first count never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let connect = app.key("connect").await;
    app.connected(&connect).await;
    assert_eq!(app.connection_count().await, 1);
    for _ in 0..20 {
        let text = scrape().await;
        assert!(
            text.contains(r#"hexbroker_connections{status="active"} 0"#),
            "counted at scrape time:\n{text}"
        );
    }
}

/// With `HEXBROKER_METRICS_LISTEN`, `/metrics` is served there and is a 404 on the main listener.
async fn metrics_move_to_their_own_listener_when_asked(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_METRICS_LISTEN", "127.0.0.1:0")]).await else {
        return;
    };
    let main = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(common::error_code(main).await, (404, "route_not_found".into()));
    let metrics_base = app.metrics_base.clone().expect("the harness binds the metrics listener");
    let private = app.http.get(format!("{metrics_base}/metrics")).send().await.unwrap();
    assert_eq!(private.status(), 200);
    assert!(private.headers().contains_key("x-request-id"));
    assert!(private.text().await.unwrap().contains("hexbroker_http_requests_total"));
    let other = app.http.get(format!("{metrics_base}/healthz")).send().await.unwrap();
    assert_eq!(other.status(), 404, "only /metrics on the metrics listener");
}

on_both_backends!(
    metrics_count_what_happened_and_name_no_ids,
    a_scrape_does_not_count_connections_in_the_database,
    metrics_move_to_their_own_listener_when_asked
);
