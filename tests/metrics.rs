//! `GET /metrics`: Prometheus text with requests by route template, Hex's latency apart from
//! hexbroker's, retries, and connections by status — and no ids or secrets in any label.

mod common;

use common::{Backend, TestApp};

async fn metrics_count_what_happened_and_name_no_ids(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
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

    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let has = |needle: &str| assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    has(r#"hexbroker_http_requests_total{route="/v1/proxy/{*path}",method="GET",status="200"} 4"#);
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

on_both_backends!(metrics_count_what_happened_and_name_no_ids);
