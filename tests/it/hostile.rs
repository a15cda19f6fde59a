//! Hostile inputs from both sides (§5, §6 step 3, §7): what callers send that must never reach
//! Hex (paths, override and rewrite headers), and what Hex answers that must never reach callers
//! or break the broker (huge `Retry-After`, CORS headers, a 101, `users/me` bodies of any shape).
//! Each table counts what reached the fake Hex.

use crate::common;

use common::{error_code, Backend, TestApp};
use serde_json::{json, Value};

/// A connected app with a proxy key; the fake's request log starts empty.
async fn proxy_app(backend: Backend) -> Option<(TestApp, String, String)> {
    let app = TestApp::start(backend).await?;
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:write").await;
    app.fake.clear_requests();
    Some((app, id, key))
}

async fn get(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(key)
        .header("connection-id", id)
        .send()
        .await
        .unwrap()
}

/// Sends a GET with the request target exactly as given (HTTP clients would resolve dot
/// segments first; a hostile caller need not) and returns the status line's code.
async fn raw_status(app: &TestApp, target: &str, key: &str, id: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\nconnection-id: {id}\r\nconnection: close\r\n\r\n",
        app.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Paths that could climb out of `/api/` once something normalises them.
const HOSTILE_PATHS: &[&str] = &[
    "/v1/../../admin",
    "/v1/./projects",
    "/v1/%2e%2e/%2e%2e/admin",
    "/v1/%2E%2e/admin",
    "/v1/.%2e/admin",
    "/v1/%2e/admin",
    "/v1/a%2fb",
    "/v1/a%2F..%2Fadmin",
    "/v1/%5c..%5cadmin",
    "/v1/a%5Cb",
    "/v1/%252e%252e/admin",
    "/v1/%252E%252E/admin",
    "/v1/%252f..",
    "/v1/%255c..",
    "/v1/%25",
    "/v1/%%32e%%32e/admin",
    "/v1/%2",
    "/v1/%c0%ae%c0%ae/admin",
    "/v1/%C0%AE/admin",
    "/v1/%e0%80%ae%e0%80%ae/admin",
    "/v1/%f0%80%80%ae/admin",
    "/v1/%c0%af..",
    "/v1/%c1%9c..",
    "/v1/..;x/admin",
    "/v1/..;/admin",
    "/v1/.;/admin",
    "/v1/%2e%2e;jsessionid=1/admin",
    "/v1/%ef%bc%8e%ef%bc%8e/admin",
];

async fn hostile_paths_are_refused_and_never_reach_hex(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let minted: Value = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&key)
        .json(&json!({"scopes": ["proxy"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connection_key = minted["key"].as_str().unwrap().to_owned();
    let mut refused = 0;
    for path in HOSTILE_PATHS {
        // `/v1/proxy` with an API key, and the drop-in surface with a connection key.
        for (prefix, credential) in [("/v1/proxy", &key), ("/api", &connection_key)] {
            let target = format!("{prefix}{path}");
            let (status, answer) = raw_status(&app, &target, credential, &id).await;
            assert_eq!(status, 400, "{target}: {answer}");
            assert!(answer.contains("\"invalid_path\""), "{target}: {answer}");
            refused += 1;
        }
    }
    assert!(app.fake.requests().is_empty(), "reached Hex: {:?}", app.fake.requests());
    eprintln!("hostile paths: {} tried on 2 surfaces, {refused} refused, 0 reached Hex", HOSTILE_PATHS.len());
    assert_eq!(get(&app, &key, &id).await.status(), 200, "an ordinary path still goes");
}

async fn override_rewrite_and_forwarding_headers_never_reach_hex(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let hostile = [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-original-url", "/api/v1/admin"),
        ("x-original-uri", "/api/v1/admin"),
        ("x-rewrite-url", "/api/v1/admin"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/admin"),
        ("forwarded", "for=10.0.0.1;host=evil.example"),
        ("x-original-host", "evil.example"),
        ("x-host", "evil.example"),
        ("x-real-ip", "10.0.0.1"),
    ];
    let mut request =
        app.http.get(app.url("/v1/proxy/v1/projects")).bearer_auth(&key).header("connection-id", &id);
    for (name, value) in hostile {
        request = request.header(name, value);
    }
    let response = request.header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = app.fake.requests();
    assert_eq!(seen.len(), 1);
    for (name, _) in hostile {
        assert_eq!(seen[0].header(name), None, "{name} reached Hex");
    }
    assert_eq!(seen[0].header("accept"), Some("application/json"), "ordinary headers still go");
    eprintln!("hostile headers: {} tried, 0 reached Hex", hostile.len());
}

async fn hexs_cors_headers_and_a_101_never_reach_the_caller(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let cors = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "authorization"),
        ("content-type", "application/json"),
    ];
    app.fake.answer_next(1, 200, &cors, "{\"values\":[]}");
    let response = get(&app, &key, &id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["hexbroker-upstream"], "hex");
    let leaked: Vec<_> =
        response.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
    assert!(leaked.is_empty(), "{leaked:?}");

    app.fake.answer_next(1, 101, &[("upgrade", "websocket"), ("connection", "upgrade")], "");
    let response = get(&app, &key, &id).await;
    assert!(response.headers().get("hexbroker-upstream").is_none());
    assert_eq!(error_code(response).await, (502, "hex_unavailable".into()));
    assert_eq!(get(&app, &key, &id).await.status(), 200, "the broker carries on");
}

/// `Retry-After` values Hex might send, and whether each reads as a wait past any budget (else
/// it does not read at all, and the proxy backs off as if Hex had said nothing).
const RETRY_AFTERS: &[(&str, bool)] = &[
    ("18446744073709551615", true),
    ("9223372036854775807", true),
    ("Fri, 31 Dec 9999 23:59:59 GMT", true),
    ("18446744073709551616", false),
    ("99999999999999999999999999999", false),
    ("-1", false),
    ("1e9", false),
    ("0x10", false),
    ("soon", false),
    ("", false),
];

async fn a_huge_or_odd_retry_after_neither_panics_nor_waits_past_the_budget(backend: Backend) {
    let settings = [("HEXBROKER_PROXY_RETRY_BUDGET", "2s"), ("HEXBROKER_PROXY_RETRIES", "3")];
    let Some(app) = TestApp::start_with(backend, &settings).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy").await;
    for (value, huge) in RETRY_AFTERS {
        app.fake.clear_requests();
        // A first retry makes the time already waited a second, where adding a huge wait to it
        // once overflowed (and the panic cost the caller its connection).
        app.fake.fail_next(1, 429, Some("1".into()));
        app.fake.fail_next(1, 429, Some((*value).to_owned()));
        let started = std::time::Instant::now();
        let response = get(&app, &key, &id).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{value}: waited past the budget");
        let (status, calls) = if *huge { (429, 2) } else { (200, 3) };
        assert_eq!(response.status(), status, "{value}");
        assert_eq!(response.headers()["hexbroker-upstream"], "hex", "{value}");
        assert_eq!(app.fake.requests().len(), calls, "{value}");
    }
    // The same values on connect: 503 hex_rate_limited with a Retry-After of at most an hour.
    let connect = app.key("connect").await;
    for (value, _) in RETRY_AFTERS {
        app.fake.fail_next(1, 429, Some((*value).to_owned()));
        let token = app.fake.add_personal_token("acme", "ada@example.com");
        let response =
            app.connect(&connect, json!({"subdomain": "acme", "token": token, "end_user_id": "u"})).await;
        let after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(after <= 3600, "{value}: Retry-After {after}");
        assert_eq!(error_code(response).await, (503, "hex_rate_limited".into()), "{value}");
    }
    assert_eq!(get(&app, &key, &id).await.status(), 200, "the broker is still up");
}

async fn a_retry_takes_a_slot_under_the_connections_limit(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let patched = app
        .http
        .patch(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(&key)
        .json(&json!({"rate_limit_per_minute": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.fake.fail_next(1, 503, None);
    let response = get(&app, &key, &id).await;
    // The first call took the minute's one slot; the retry finds none within the budget, so
    // Hex's 503 is relayed and Hex saw one call, not two.
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["hexbroker-upstream"], "hex");
    assert_eq!(app.fake.requests().len(), 1);
}

async fn a_connection_id_that_is_not_ascii_says_so(backend: Backend) {
    let Some((app, _, key)) = proxy_app(backend).await else { return };
    let value = reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
    let response = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", value)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (400, "invalid_connection_id".into()));
}

/// What `users/me` may answer with 200 besides the spec's shape, and what becomes of the connect.
async fn users_me_answering_oddly_still_connects(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let key = app.key("connect").await;
    app.fake.add_workspace("acme");
    let big = format!("{{\"org\":{{\"id\":\"org\"}},\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    let json = [("content-type", "application/json")];
    let cases: Vec<(u16, String, bool)> = vec![
        // status, body, whether users/me's identity is kept (else the projects check decides)
        (500, String::new(), false),
        (502, "<html>bad gateway</html>".into(), false),
        (503, String::new(), false),
        (200, "not json".into(), false),
        (200, "[]".into(), false),
        (200, "null".into(), false),
        (200, "{}".into(), false),
        (200, big, false),
        (200, r#"{"org":{"id":42},"email":"ada","token":{"exp":"2030-01-01"}}"#.into(), true),
        (200, r#"{"org":{"id":"o1"},"email":17,"token":{"exp":{"s":1}}}"#.into(), true),
        (200, r#"{"org":{"id":"o1"},"email":"ada@example.com","token":{"exp":1e308}}"#.into(), true),
        (200, r#"{"org":{"id":"o1"},"token":{"exp":1767225600000}}"#.into(), true),
    ];
    let mut connected = 0;
    for (i, (status, body, kept)) in cases.iter().enumerate() {
        let token = app.fake.add_personal_token("acme", &format!("u{i}@example.com"));
        app.fake.clear_requests();
        app.fake.answer_next(1, *status, &json, body);
        let response = app
            .connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": format!("u{i}")}))
            .await;
        assert_eq!(response.status(), 201, "users/me {status} {:.60}", body);
        let connection: Value = response.json().await.unwrap();
        let paths: Vec<String> = app.fake.requests().iter().map(|r| r.path.clone()).collect();
        if *kept {
            assert_eq!(paths, ["/acme/api/v1/users/me"], "{body}");
        } else {
            assert_eq!(paths, ["/acme/api/v1/users/me", "/acme/api/v1/projects"], "{body}");
            assert!(connection["hex_org_id"].is_null());
        }
        connected += 1;
    }
    // The org id and expiry that do read are kept; the odd ones are unknown.
    let token = app.fake.add_personal_token("acme", "last@example.com");
    app.fake.answer_next(
        1,
        200,
        &json,
        r#"{"org":{"id":"o1"},"email":"not-an-email","token":{"exp":1767225600}}"#,
    );
    let last: Value = app
        .connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "last"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["hex_org_id"], "o1");
    assert!(last["hex_user_email"].is_null());
    assert_eq!(last["token_expires_at"], "2026-01-01T00:00:00Z");
    eprintln!("odd users/me answers: {} tried, {connected} connected", cases.len());

    // 502 only when the projects check fails too.
    let token = app.fake.add_personal_token("acme", "down@example.com");
    app.fake.fail_next(2, 500, None);
    let response =
        app.connect(&key, json!({"subdomain": "acme", "token": token, "end_user_id": "down"})).await;
    assert_eq!(error_code(response).await, (502, "hex_unavailable".into()));
}

/// Sends `request` (raw bytes, `connection: close`) to `addr` and returns the whole answer.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of `hexbroker_hex_errors_total` summed over kinds.
async fn hex_errors(app: &TestApp) -> u64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("hexbroker_hex_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn a_callers_broken_chunked_body_is_its_own_fault_not_hexs(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let before = hex_errors(&app).await;
    let request = format!(
        "POST /v1/proxy/v1/projects HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\nconnection-id: {id}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         4;a=\"x\r\n\"\r\nAAAA\r\n0\r\n\r\n",
        app.addr
    );
    let answer = raw(app.addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("\"invalid_body\""), "{answer}");
    assert!(!answer.contains("hexbroker-upstream"), "{answer}");
    assert_eq!(hex_errors(&app).await, before, "not counted as a Hex error");
    assert_eq!(get(&app, &key, &id).await.status(), 200, "the broker carries on");
}

async fn get_and_head_carry_no_body_to_hex_on_either_surface(backend: Backend) {
    let Some((app, id, _)) = proxy_app(backend).await else { return };
    let read = app.key("proxy:read,connections:write").await;
    let minted: Value = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&read)
        .json(&json!({"scopes": ["proxy:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connection_key = minted["key"].as_str().unwrap().to_owned();
    let smuggled = json!({"inputParams": {}, "dryRun": false}).to_string();
    app.fake.clear_requests();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let via_proxy = app
            .http
            .request(method.clone(), app.url("/v1/proxy/v1/projects"))
            .bearer_auth(&read)
            .header("connection-id", &id)
            .header("content-type", "application/json")
            .body(smuggled.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(via_proxy.status(), 200, "{method}");
        let drop_in = app
            .http
            .request(method.clone(), app.url("/api/v1/projects"))
            .bearer_auth(&connection_key)
            .header("content-type", "application/json")
            .body(smuggled.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(drop_in.status(), 200, "{method}");
    }
    // A chunked body on a GET, sent raw.
    let request = format!(
        "GET /api/v1/projects HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {connection_key}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        app.addr
    );
    assert!(raw(app.addr, &request).await.starts_with("HTTP/1.1 200 "));
    let seen = app.fake.requests();
    assert_eq!(seen.len(), 5);
    for request in seen {
        assert_eq!(request.body_len, 0, "{} {} carried a body", request.method, request.path);
        assert_eq!(request.header("content-length"), None, "{}", request.method);
        assert_eq!(request.header("transfer-encoding"), None, "{}", request.method);
    }
}

async fn hexs_headers_that_act_on_the_brokers_origin_are_not_relayed(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let origin_wide = [
        ("strict-transport-security", "max-age=0"),
        ("clear-site-data", "\"*\""),
        ("refresh", "0; url=https://evil.example/"),
        ("set-cookie2", "a=b"),
        ("set-cookie", "session=1"),
        ("content-security-policy", "default-src *"),
        ("content-security-policy-report-only", "default-src *"),
        ("alt-svc", "h2=\"evil.example:443\""),
        ("link", "<https://evil.example/x.js>; rel=preload"),
        ("nel", "{}"),
        ("report-to", "{}"),
        ("content-type", "application/json"),
        ("x-hex-note", "kept"),
    ];
    app.fake.answer_next(1, 200, &origin_wide, "{\"values\":[]}");
    let response = get(&app, &key, &id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    for (name, _) in &origin_wide[..11] {
        assert!(response.headers().get(*name).is_none(), "{name} was relayed");
    }
    assert_eq!(response.headers()["x-hex-note"], "kept", "Hex's other headers still come");

    // Location: Hex's API → the broker's surface; another page of the workspace stays; any other
    // place goes.
    let hex = format!("http://{}/acme", app.fake_addr);
    let public = app.state.config.public_url.as_str().trim_end_matches('/').to_owned();
    let cases = [
        (format!("{hex}/api/v1/projects/p1"), Some(format!("{public}/v1/proxy/v1/projects/p1"))),
        ("/acme/api/v1/projects/p2?x=1".to_owned(), Some(format!("{public}/v1/proxy/v1/projects/p2?x=1"))),
        (format!("{hex}/app/p1/latest"), Some(format!("{hex}/app/p1/latest"))),
        ("https://evil.example/api/v1/projects".to_owned(), None),
        ("//evil.example/x".to_owned(), None),
        ("javascript:alert(1)".to_owned(), None),
    ];
    for (location, relayed) in cases {
        app.fake.answer_next(1, 201, &[("location", &location)], "{}");
        let response = get(&app, &key, &id).await;
        assert_eq!(response.status(), 201);
        let got = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got, relayed, "{location}");
    }
}

/// A Hex on a raw socket that answers by the path's last segment: `http10` (an HTTP/1.0 answer
/// ended by closing), `overflow` (a chunk size past u64), `cut` (a head, then nothing).
async fn misbehaving_hex() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
                if line.contains("/runs ") {
                    // A RunProject answer of unknown length, past the size links are read at.
                    let body = format!(
                        "{{\"runStatusUrl\":\"http://{addr}/acme/api/v1/x\",\"pad\":\"{}\"}}",
                        "p".repeat(1_200_000)
                    );
                    let head = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    for chunk in body.as_bytes().chunks(100_000) {
                        let _ = socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
                        let _ = socket.write_all(chunk).await;
                        let _ = socket.write_all(b"\r\n").await;
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    let _ = socket.shutdown().await;
                    return;
                }
                let answer: &[u8] = if line.contains("/http10 ") {
                    b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"old\":true}"
                } else if line.contains("/overflow ") {
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
                      fffffffffffffffffffffff\r\nxx\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
                };
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}/{{subdomain}}")
}

async fn answers_are_http_1_1_and_a_hex_body_broken_before_its_first_byte_is_a_502(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let hex_url = misbehaving_hex().await;
    let base = app.second_broker(&[("HEXBROKER_HEX_URL", &hex_url)]).await;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let request = |path: &str| {
        format!(
            "GET /v1/proxy/v1/{path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             connection-id: {id}\r\nconnection: close\r\n\r\n"
        )
    };
    let old = raw(addr, &request("http10")).await;
    assert!(old.starts_with("HTTP/1.1 200 "), "{old}");
    assert!(old.contains("{\"old\":true}"), "{old}");
    for path in ["overflow", "cut"] {
        let answer = raw(addr, &request(path)).await;
        assert!(answer.starts_with("HTTP/1.1 502 "), "{path}: {answer:?}");
        assert!(answer.contains("\"hex_unavailable\""), "{path}: {answer}");
        assert!(!answer.contains("hexbroker-upstream"), "{path}: {answer}");
    }
}

async fn only_linked_answers_that_fit_are_read_and_others_pass_as_they_came(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let hex = format!("http://{}/acme", app.fake_addr);
    let public = app.state.config.public_url.as_str().trim_end_matches('/').to_owned();
    let post = |path: &'static str| {
        app.http.post(app.url(path)).bearer_auth(&key).header("connection-id", &id).json(&json!({})).send()
    };
    let json = [("content-type", "application/json")];
    // Small: the link is rewritten, the rest kept as it came.
    let small = format!("{{\"runStatusUrl\": \"{hex}/api/v1/projects/p/runs/r\", \"n\": 1.50}}");
    app.fake.answer_next(1, 201, &json, &small);
    let answer = post("/v1/proxy/v1/projects/p/runs").await.unwrap().text().await.unwrap();
    assert_eq!(answer, format!("{{\"runStatusUrl\":\"{public}/v1/proxy/v1/projects/p/runs/r\",\"n\":1.50}}"));
    // Past the bound (declared length), coded, or an error: untouched.
    let big = format!("{{\"runStatusUrl\":\"{hex}/api/v1/x\",\"pad\":\"{}\"}}", "p".repeat(1_100_000));
    let coded = [("content-type", "application/json"), ("content-encoding", "br")];
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(u16, Headers, &str); 3] = [(201, &json, &big), (201, &coded, &small), (409, &json, &small)];
    for (status, headers, body) in cases {
        app.fake.answer_next(1, status, headers, body);
        let response = post("/v1/proxy/v1/projects/p/runs").await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(response.bytes().await.unwrap() == body.as_bytes(), "{status} {headers:?} changed");
    }
    // Of unknown length and past the bound: what was read, then the rest, untouched.
    let base = app.second_broker(&[("HEXBROKER_HEX_URL", &misbehaving_hex().await)]).await;
    let response = app
        .http
        .post(format!("{base}/v1/proxy/v1/projects/p/runs"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert!(body["runStatusUrl"].as_str().unwrap().ends_with("/acme/api/v1/x"));
    assert_eq!(body["pad"].as_str().unwrap().len(), 1_200_000);
}

async fn one_canonical_connection_id_names_a_connection(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    let uuid: uuid::Uuid = id.parse().unwrap();
    let with = |ids: &[String]| {
        let mut request = app.http.get(app.url("/v1/proxy/v1/projects")).bearer_auth(&key);
        for id in ids {
            request = request.header("connection-id", id);
        }
        request.send()
    };
    let twice = with(&[id.clone(), id.clone()]).await.unwrap();
    assert_eq!(error_code(twice).await, (400, "invalid_connection_id".into()));
    let other = uuid::Uuid::now_v7().to_string();
    let two = with(&[id.clone(), other]).await.unwrap();
    assert_eq!(error_code(two).await, (400, "invalid_connection_id".into()));
    for spelling in [uuid.urn().to_string(), uuid.braced().to_string(), uuid.simple().to_string()] {
        let response = with(std::slice::from_ref(&spelling)).await.unwrap();
        assert_eq!(error_code(response).await, (404, "not_found".into()), "{spelling}");
        let path = app.url(&format!("/v1/connections/{spelling}"));
        let response =
            app.http.get(path).bearer_auth(app.key("connections:read").await).send().await.unwrap();
        assert_eq!(error_code(response).await, (404, "not_found".into()), "{spelling}");
    }
    assert!(app.fake.requests().is_empty(), "nothing reached Hex");
    assert_eq!(with(std::slice::from_ref(&id)).await.unwrap().status(), 200);
}

/// Follows `nextPage` from `first` through hexbroker until the last page, with `auth` added to
/// every call; returns the run ids seen and every URL followed.
async fn page_through(
    http: &reqwest::Client,
    first: String,
    auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (Vec<String>, Vec<String>) {
    let (mut runs, mut followed) = (Vec::new(), Vec::new());
    let mut next = Some(first);
    while let Some(url) = next.take() {
        assert!(followed.len() < 20, "paging does not end: {followed:?}");
        let response = auth(http.get(&url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.unwrap();
        runs.extend(page["runs"].as_array().unwrap().iter().map(|r| r["runId"].as_str().unwrap().to_owned()));
        next = page["nextPage"].as_str().map(str::to_owned);
        if let Some(previous) = page["previousPage"].as_str() {
            followed.push(previous.to_owned());
        }
        followed.push(url);
    }
    (runs, followed)
}

async fn a_client_that_follows_next_page_stays_on_hexbroker(backend: Backend) {
    let Some((app, id, key)) = proxy_app(backend).await else { return };
    // A broker whose public origin is where it really listens, so the links can be followed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let state = app.state_with(&[("HEXBROKER_PUBLIC_URL", &public)]).await.unwrap();
    tokio::spawn(hexbroker::app::serve_app(state, listener, None, std::future::pending()));
    let minted: Value = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&key)
        .json(&json!({"scopes": ["proxy"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connection_key = minted["key"].as_str().unwrap().to_owned();
    let project = app.fake.add_project("acme", "Daily");

    // Five runs, each started through one surface; the status link points back at the broker.
    let mut started = Vec::new();
    for i in 0..5 {
        let (url, bearer) = if i % 2 == 0 {
            (format!("{public}/v1/proxy/v1/projects/{project}/runs"), &key)
        } else {
            (format!("{public}/api/v1/project/{project}/run"), &connection_key)
        };
        let run = app
            .http
            .post(&url)
            .bearer_auth(bearer)
            .header("connection-id", &id)
            .header("accept-encoding", "gzip")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(run.status(), 201);
        let run: Value = run.json().await.unwrap();
        let run_id = run["runId"].as_str().unwrap().to_owned();
        let status_url = run["runStatusUrl"].as_str().unwrap();
        let surface = if i % 2 == 0 { "/v1/proxy" } else { "/api" };
        assert!(status_url.starts_with(&format!("{public}{surface}/v1/")), "{status_url}");
        assert!(status_url.ends_with(&run_id), "{status_url}");
        assert!(run["runUrl"].as_str().unwrap().starts_with(&format!("http://{}/acme/app/", app.fake_addr)));
        let status =
            app.http.get(status_url).bearer_auth(bearer).header("connection-id", &id).send().await.unwrap();
        assert_eq!(status.status(), 200, "{status_url}");
        started.push(run_id);
    }
    started.reverse();

    // Two pages of two and one of one, on both surfaces.
    let first = format!("{public}/v1/proxy/v1/projects/{project}/runs?limit=2");
    let (runs, followed) =
        page_through(&app.http, first, |r| r.bearer_auth(&key).header("connection-id", &id)).await;
    assert_eq!(runs, started);
    assert!(
        followed.iter().all(|u| u.starts_with(&format!("{public}/v1/proxy/v1/projects/"))),
        "{followed:?}"
    );
    let first = format!("{public}/api/v1/projects/{project}/runs?limit=2");
    let (runs, followed) = page_through(&app.http, first, |r| r.bearer_auth(&connection_key)).await;
    assert_eq!(runs, started);
    assert!(followed.iter().all(|u| u.starts_with(&format!("{public}/api/v1/projects/"))), "{followed:?}");
    assert_eq!(followed.len(), 5, "three pages and two previous links: {followed:?}");

    // Hex only ever heard from the broker, with the Hex token: never a key of hexbroker's.
    let seen = app.fake.requests();
    assert!(seen.len() >= 16);
    for request in seen {
        let auth = request.header("authorization").unwrap_or_default();
        assert!(auth.starts_with("Bearer hxtp_"), "{} {}: {auth:.12}", request.method, request.path);
    }
}

on_both_backends!(
    hostile_paths_are_refused_and_never_reach_hex,
    override_rewrite_and_forwarding_headers_never_reach_hex,
    hexs_cors_headers_and_a_101_never_reach_the_caller,
    a_huge_or_odd_retry_after_neither_panics_nor_waits_past_the_budget,
    a_retry_takes_a_slot_under_the_connections_limit,
    a_connection_id_that_is_not_ascii_says_so,
    users_me_answering_oddly_still_connects,
    a_callers_broken_chunked_body_is_its_own_fault_not_hexs,
    get_and_head_carry_no_body_to_hex_on_either_surface,
    hexs_headers_that_act_on_the_brokers_origin_are_not_relayed,
    answers_are_http_1_1_and_a_hex_body_broken_before_its_first_byte_is_a_502,
    one_canonical_connection_id_names_a_connection,
    only_linked_answers_that_fit_are_read_and_others_pass_as_they_came,
    a_client_that_follows_next_page_stays_on_hexbroker,
);
