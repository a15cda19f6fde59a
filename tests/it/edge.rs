//! The network edge against hostile clients: slow and idle sockets, too many connections, a
//! shutdown with a half-open socket, too many requests at once, a key over its rate, and
//! guesses at Hex tokens through the connect endpoint.
//!
//! The socket-level tests run on SQLite only: the listener does not touch the database.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_code, gated_hex, Backend, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `stream`: its status,
/// headers (lowercased) and body; `None` when the connection closes first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&bytes[head_end..head_end + length]).into_owned();
    Some((status, head, body))
}

/// Sends `GET path` on a kept-alive connection and reads the answer.
async fn get(stream: &mut TcpStream, path: &str) -> Option<(u16, String, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: hexbroker\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    read_response(stream).await
}

/// How long until the server closes `stream` (reading and discarding anything it sends), up to
/// `limit`; `None` if it is still open then.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_kept_alive_connections_wait_longer() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("HEXBROKER_HEADER_READ_TIMEOUT", "400ms"), ("HEXBROKER_IDLE_TIMEOUT", "2s")],
    )
    .await
    .unwrap();

    // Half a header, then nothing.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // A trickle: one byte of header every 100ms never completes the head in time.
    let mut trickle = TcpStream::connect(app.addr).await.unwrap();
    let trickling = tokio::spawn(async move {
        let started = Instant::now();
        for byte in b"GET /healthz HTTP/1.1\r\nx-slow: ".iter().cycle() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        started.elapsed()
    });
    // Connected, silent.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    // Kept alive after one request: idle too.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200);

    // Watched together, each from now.
    let (half_closed, trickled, idle_closed, kept_closed) = tokio::join!(
        closed_within(&mut half, Duration::from_secs(5)),
        trickling,
        closed_within(&mut idle, Duration::from_secs(6)),
        closed_within(&mut kept, Duration::from_secs(6)),
    );
    let half_closed = half_closed.expect("half a header is cut off");
    assert!(half_closed >= Duration::from_millis(300), "not before the timeout: {half_closed:?}");
    let trickled = trickled.unwrap();
    assert!(trickled < Duration::from_secs(3), "a trickle is cut off too: {trickled:?}");
    // A new connection that sends nothing has the header timeout for its first request; a
    // kept-alive one stays open past it, and is closed at the idle timeout.
    let idle_closed = idle_closed.expect("silent closed");
    assert!(
        idle_closed >= Duration::from_millis(300) && idle_closed < Duration::from_millis(1500),
        "a silent new connection gets the header timeout: {idle_closed:?}"
    );
    let kept_closed = kept_closed.expect("kept-alive closed");
    assert!(kept_closed >= Duration::from_millis(1500), "kept alive until the idle timeout: {kept_closed:?}");
    eprintln!(
        "half header closed after {half_closed:?}; trickle after {trickled:?}; silent after {idle_closed:?}; \
         kept-alive after {kept_closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_body_timeout_is_refused_and_its_place_given_back() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("HEXBROKER_BODY_READ_TIMEOUT", "400ms"), ("HEXBROKER_MAX_IN_FLIGHT", "1")],
    )
    .await
    .unwrap();
    let key = app.key("connect").await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/connect HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"subdomain\": "
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut slow))
        .await
        .expect("answered within the body timeout")
        .expect("an answer, not a dropped connection");
    let took = started.elapsed();
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "invalid_body");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    // The one place under the in-flight cap is free again.
    let health = app.http.get(app.url("/v1/connections")).send().await.unwrap();
    assert_eq!(error_code(health).await.0, 401, "served, not overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_clients_get_503_and_open_ones_keep_working() {
    const CAP: usize = 20;
    const FLOOD: usize = 200;
    let cap = CAP.to_string();
    let app = TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_MAX_CONNECTIONS", &cap)]).await.unwrap();
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200);

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        socket.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        flood.push(socket);
    }
    // Those past the cap are answered 503 and closed; the first CAP - 1 are held open. Wait for
    // the server to have refused them all (its own count) rather than guessing a time, so a slow
    // machine cannot mistake a late 503 for a held socket.
    let expected_refused = FLOOD - (CAP - 1);
    let counted = tokio::time::timeout(Duration::from_secs(20), async {
        let line = format!(
            "hexbroker_client_connections_refused_total{{kind=\"over_capacity\"}} {expected_refused}\n"
        );
        loop {
            if get(&mut kept, "/metrics").await.is_some_and(|(_, _, body)| body.contains(&line)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "the server did not refuse {expected_refused} sockets within 20 s");
    let mut refused = 0;
    let mut held = 0;
    for socket in &mut flood {
        match tokio::time::timeout(Duration::from_millis(200), read_response(socket)).await {
            Ok(Some((status, head, body))) => {
                assert_eq!(status, 503, "{head}{body}");
                assert!(head.contains("retry-after: 1") && head.contains("x-request-id"), "{head}");
                assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "overloaded");
                refused += 1;
            }
            Ok(None) => refused += 1,
            Err(_) => held += 1,
        }
    }
    assert_eq!(held, CAP - 1, "the cap holds ({refused} refused)");
    let metrics = get(&mut kept, "/metrics").await.unwrap().2;
    let has = |line: &str| assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    has(&format!("hexbroker_client_connections {CAP}\n"));
    has(&format!("hexbroker_client_connections_refused_total{{kind=\"over_capacity\"}} {refused}\n"));

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200, "an open connection keeps working");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "{FLOOD} half-open sockets against a cap of {CAP}: {held} held, {refused} refused; \
         /healthz on an open connection: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // Once the flood goes away, new clients get in again.
    drop(flood);
    let fresh = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut socket = TcpStream::connect(app.addr).await.unwrap();
            if let Some((200, ..)) = get(&mut socket, "/healthz").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(fresh.is_ok(), "10 s after the flood went away, a new client still could not get in");
}

async fn connected_app(extra: &[(&str, &str)]) -> (TestApp, String, String) {
    let app = TestApp::start_with(Backend::Sqlite, extra).await.unwrap();
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy").await;
    (app, id, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_progress_and_does_not_wait_on_a_half_open_socket() {
    shutdown_finishes_requests_in_progress("1").await;
}

/// The same on serving workers of their own (`HEXBROKER_WORKERS`), each with its accept loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_on_several_serving_workers_finishes_requests_in_progress() {
    shutdown_finishes_requests_in_progress("3").await;
}

async fn shutdown_finishes_requests_in_progress(workers: &str) {
    let (hex_url, gate, mut arrivals) = gated_hex("/").await;
    let (app, id, key) = connected_app(&[]).await;
    let state = app
        .state_with(&[
            ("HEXBROKER_WORKERS", workers),
            ("HEXBROKER_HEX_URL", &hex_url),
            ("HEXBROKER_HEADER_READ_TIMEOUT", "30s"),
            ("HEXBROKER_IDLE_TIMEOUT", "30s"),
            ("HEXBROKER_SHUTDOWN_GRACE", "1500ms"),
        ])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hexbroker::app::serve_app(state, listener, None, async {
        let _ = stopped.await;
    }));

    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut idle, "/healthz").await.unwrap().0, 200);
    let in_progress = tokio::spawn({
        let (http, key, id) = (app.http.clone(), key.clone(), id.clone());
        async move {
            http.get(format!("http://{addr}/v1/proxy/v1/projects"))
                .bearer_auth(&key)
                .header("connection-id", &id)
                .send()
                .await
        }
    });
    arrivals.recv().await.unwrap();

    let started = Instant::now();
    stop.send(()).unwrap();
    // The half-open and the idle socket are closed at once, without waiting for their timers.
    assert!(closed_within(&mut half, Duration::from_secs(1)).await.is_some(), "half-open closed at once");
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await.is_some(), "idle closed at once");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    // The request in progress finishes.
    gate.add_permits(1);
    let response = in_progress.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(1), server).await.expect("shutdown finished").unwrap().unwrap();
    eprintln!("shutdown with a half-open socket and a request in progress took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_request_at_the_end_of_the_grace_period() {
    let (hex_url, _gate, mut arrivals) = gated_hex("/").await;
    let (app, id, key) = connected_app(&[]).await;
    let state = app
        .state_with(&[("HEXBROKER_HEX_URL", &hex_url), ("HEXBROKER_SHUTDOWN_GRACE", "500ms")])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hexbroker::app::serve_app(state, listener, None, async {
        let _ = stopped.await;
    }));
    let stuck = app
        .http
        .get(format!("http://{addr}/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send();
    let stuck = tokio::spawn(stuck);
    arrivals.recv().await.unwrap();
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("bounded by the grace")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "waited for the request: {took:?}");
    assert!(stuck.await.unwrap().is_err(), "the stuck request's connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_requests_get_503_overloaded_at_once_and_health_still_answers() {
    let (hex_url, gate, mut arrivals) = gated_hex("/").await;
    let (app, id, key) = connected_app(&[]).await;
    let base = app.second_broker(&[("HEXBROKER_HEX_URL", &hex_url), ("HEXBROKER_MAX_IN_FLIGHT", "2")]).await;
    let call = || {
        app.http
            .get(format!("{base}/v1/proxy/v1/projects"))
            .bearer_auth(&key)
            .header("connection-id", &id)
            .send()
    };
    let first = tokio::spawn(call());
    let second = tokio::spawn(call());
    arrivals.recv().await.unwrap();
    arrivals.recv().await.unwrap();

    let started = Instant::now();
    let refused = call().await.unwrap();
    let took = started.elapsed();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error_code(refused).await, (503, "overloaded".into()));
    assert!(took < Duration::from_secs(1), "refused at once, not queued: {took:?}");
    let health = app.http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health is exempt");

    gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    gate.add_permits(1);
    assert_eq!(call().await.unwrap().status(), 200, "places are given back");
}

async fn a_key_past_its_rate_gets_429_key_rate_limited(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_KEY_RATE_LIMIT", "5")]).await else { return };
    let (busy, other) = (app.key("connections:read").await, app.key("connections:read").await);
    let list = |key: &str| app.http.get(app.url("/v1/connections")).bearer_auth(key).send();
    for _ in 0..5 {
        assert_eq!(list(&busy).await.unwrap().status(), 200);
    }
    let refused = list(&busy).await.unwrap();
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "one request every 12s: {wait}");
    assert_eq!(error_code(refused).await, (429, "key_rate_limited".into()));
    assert_eq!(list(&other).await.unwrap().status(), 200, "other keys are not held back");
}

/// A client whose requests come from `ip` (any address in 127/8 is this host).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).no_proxy().build().unwrap()
}

async fn connect_attempts_hex_refuses_are_limited_per_key_session_and_address(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "3/10m")]).await
    else {
        return;
    };
    app.fake.add_workspace("acme");
    let good = app.fake.add_personal_token("acme", "ada@example.com");
    let connect = |http: &reqwest::Client, bearer: &str, token: &str, user: Option<&str>| {
        let mut body = json!({"subdomain": "acme", "token": token});
        if let Some(user) = user {
            body["end_user_id"] = json!(user);
        }
        http.post(app.url("/v1/connect")).bearer_auth(bearer).json(&body).send()
    };
    let hex_calls = || app.fake.requests().len();
    let (key_a, key_b) = (app.key("connect").await, app.key("connect").await);

    // Key A, from .2: three refusals, then 429 without asking Hex, even for a good token.
    let from_2 = client_from([127, 0, 0, 2]);
    for n in 0..3 {
        let r = connect(&from_2, &key_a, &format!("hxtp_guess-{n}"), Some("u1")).await.unwrap();
        assert_eq!(error_code(r).await, (422, "hex_token_rejected".into()));
    }
    let before = hex_calls();
    let r = connect(&from_2, &key_a, "hxtp_guess-3", Some("u1")).await.unwrap();
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=200).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()));
    let r = connect(&client_from([127, 0, 0, 3]), &key_a, &good, Some("u1")).await.unwrap();
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()), "per key, from anywhere");
    assert_eq!(hex_calls(), before, "Hex was not asked past the limit");

    // Key B from .2 is held back by the address; from .4 it may connect.
    let r = connect(&from_2, &key_b, &good, Some("u1")).await.unwrap();
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()), "per address");
    let from_4 = client_from([127, 0, 0, 4]);
    for _ in 0..5 {
        // Accepted attempts do not count.
        let r = connect(&from_4, &key_b, &good, Some("u2")).await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    for n in 0..3 {
        let r = connect(&from_4, &key_b, &format!("hxtp_b-{n}"), Some("u2")).await.unwrap();
        assert_eq!(error_code(r).await, (422, "hex_token_rejected".into()), "only refusals count");
    }

    // A connect session, from .5: its own allowance.
    let admin = app.key("connect").await;
    let session = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&admin)
        .json(&json!({"end_user_id": "u3"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (from_5, from_6) = (client_from([127, 0, 0, 5]), client_from([127, 0, 0, 6]));
    for n in 0..3 {
        let r = connect(&from_5, &session, &format!("hxtp_s-{n}"), None).await.unwrap();
        assert_eq!(error_code(r).await, (422, "hex_token_rejected".into()));
    }
    let r = connect(&from_6, &session, &good, None).await.unwrap();
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()), "per session");
    // A fresh session for the same end user shares that person's allowance.
    let again = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&admin)
        .json(&json!({"end_user_id": "u3"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = connect(&client_from([127, 0, 0, 8]), &again, &good, None).await.unwrap();
    assert_eq!(error_code(r).await, (429, "too_many_attempts".into()), "per end user of a session");

    // Guesses sent all at once cannot slip past the limit before the first refusal counts.
    let key_c = app.key("connect").await;
    let from_7 = client_from([127, 0, 0, 7]);
    let guesses = (0..12).map(|n| connect(&from_7, &key_c, &format!("hxtp_par-{n}"), Some("u4")));
    let mut rejected = 0;
    for r in futures_util::future::join_all(guesses).await {
        match error_code(r.unwrap()).await {
            (422, code) if code == "hex_token_rejected" => rejected += 1,
            (429, code) if code == "too_many_attempts" => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rejected, 3, "exactly the allowance reached Hex");
}

/// Many good connects at once with one key (a backend linking its users) all go through: an
/// attempt that finds the allowance taken by others still being judged waits for them instead of
/// being told "too many attempts" when Hex refused none.
async fn parallel_good_connects_are_not_taken_for_guesses(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "3/10m")]).await
    else {
        return;
    };
    app.fake.add_workspace("acme");
    let key = app.key("connect").await;
    let tokens: Vec<String> =
        (0..24).map(|n| app.fake.add_personal_token("acme", &format!("u{n}@example.com"))).collect();
    let connects = tokens.iter().enumerate().map(|(n, token)| {
        app.http
            .post(app.url("/v1/connect"))
            .bearer_auth(&key)
            .json(&json!({"subdomain": "acme", "token": token, "end_user_id": format!("user-{n}")}))
            .send()
    });
    for response in futures_util::future::join_all(connects).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }
}

on_both_backends!(
    a_key_past_its_rate_gets_429_key_rate_limited,
    connect_attempts_hex_refuses_are_limited_per_key_session_and_address,
    parallel_good_connects_are_not_taken_for_guesses
);

/// hexbroker's calls to Hex ignore the environment's proxy settings, which would otherwise see
/// every Hex token (in the clear, for http). Run in a child process, so that the variables are
/// set for it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_hex_ignore_the_environments_proxy_variables() {
    let fake = fake_hex::FakeHex::new();
    let fake_addr = fake.spawn().await.unwrap();
    fake.add_workspace("acme");
    let token = fake.add_personal_token("acme", "ada@example.com");
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let hex_url = fake_hex::FakeHex::url_template(fake_addr);
    let mut env = vec![("HEXBROKER_HEX_URL", hex_url.as_str())];
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        env.push((var, &trap_url));
    }
    let created = broker_command(dir.path(), &env)
        .args(["keys", "create", "--name", "t", "--scopes", "connect,proxy"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let child = Broker::start(broker_command(dir.path(), &env));
    let address = child.address.clone();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let connected = http
        .post(format!("http://{address}/v1/connect"))
        .bearer_auth(&key)
        .json(&json!({"subdomain": "acme", "token": token, "end_user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 201, "connect reached the fake Hex directly");
    let id = connected.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let proxied = http
        .get(format!("http://{address}/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "the proxy reached the fake Hex directly");
    drop(child);
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the environment's proxy was contacted: {other:?}"),
    }
    assert!(fake.requests().len() >= 2, "Hex saw the calls");
}

/// The `hexbroker` binary on a database in `dir`, listening on a free port, with `env` set and
/// nothing else from this process's environment.
fn broker_command(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hexbroker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEXBROKER_DATABASE_URL", format!("sqlite://{}/hb.db", dir.display()))
        .env("HEXBROKER_LISTEN", "127.0.0.1:0")
        .env("HEXBROKER_LOG_FORMAT", "json");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// A running `hexbroker serve` child, killed when dropped; its log lines are collected.
struct Broker {
    child: std::process::Child,
    address: String,
    logs: Arc<std::sync::Mutex<String>>,
}

impl Broker {
    fn start(mut command: std::process::Command) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let logs = Arc::new(std::sync::Mutex::new(String::new()));
        let address = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "hexbroker exited: {}", logs.lock().unwrap());
            logs.lock().unwrap().push_str(&line);
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "hexbroker listening" {
                    break v["address"].as_str().unwrap().to_owned();
                }
            }
        };
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Self { child, address, logs }
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory per half-open socket, measured in a process of its own: the header cap bounds it.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_half_open_socket_stays_bounded() {
    const SOCKETS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(broker_command(
        dir.path(),
        &[
            ("HEXBROKER_MAX_CONNECTIONS", "5000"),
            ("HEXBROKER_HEADER_READ_TIMEOUT", "60s"),
            ("HEXBROKER_IDLE_TIMEOUT", "60s"),
        ],
    ));
    let addr: std::net::SocketAddr = broker.address.parse().unwrap();
    let round_trip = || async move {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut socket, "/healthz").await.unwrap().0, 200);
    };
    round_trip().await;
    let start = broker.rss_kib();
    // Silent sockets first.
    let mut silent = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    round_trip().await;
    round_trip().await;
    let before = broker.rss_kib();
    let per_silent = (before.saturating_sub(start)) * 1024 / SOCKETS as u64;
    eprintln!(
        "RSS {start} KiB at rest, {before} KiB with {SOCKETS} silent sockets: {per_silent} bytes per socket"
    );
    assert!(per_silent < 64 * 1024, "{per_silent} bytes per silent socket");
    let mut sockets = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        // A header that goes on and on, 4 KiB of it so far.
        let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow-{i}: {}", "a".repeat(4096));
        socket.write_all(head.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    // Connections are accepted in order: once a later one is answered, all are being served.
    round_trip().await;
    round_trip().await;
    let after = broker.rss_kib();
    let per_socket = (after.saturating_sub(before)) * 1024 / SOCKETS as u64;
    eprintln!(
        "RSS {after} KiB with {SOCKETS} more, half-open sockets (4 KiB of header each): \
         {per_socket} bytes per socket"
    );
    assert!(per_socket < 64 * 1024, "{per_socket} bytes per half-open socket");
    drop((silent, sockets));
}

/// Out of file descriptors, the listener backs off and logs, keeps serving the connections it
/// has, and accepts again once descriptors free up: on the main runtime, and on two workers.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_instead_of_crashing() {
    out_of_descriptors("1").await;
}

/// Two workers: serving starts only once both have their runtime and listener, so a flood that
/// follows the first answer cannot stop the second from starting (it once did, and the failed
/// worker took the shared listener down with it).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_on_two_workers_backs_off_too() {
    out_of_descriptors("2").await;
}

#[cfg(target_os = "linux")]
async fn out_of_descriptors(workers: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "ulimit -n 64 && exec \"$0\"", env!("CARGO_BIN_EXE_hexbroker")]);
    let configured =
        broker_command(dir.path(), &[("HEXBROKER_MAX_CONNECTIONS", "1000"), ("HEXBROKER_WORKERS", workers)]);
    command.env_clear();
    for (k, v) in configured.get_envs() {
        if let Some(v) = v {
            command.env(k, v);
        }
    }
    let mut broker = Broker::start(command);
    let addr: std::net::SocketAddr = broker.address.parse().unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200);

    // More clients than the process has descriptors for.
    let mut flood = Vec::new();
    for i in 0..100 {
        match TcpStream::connect(addr).await {
            Ok(socket) => flood.push(socket),
            Err(e) => panic!("connection {i} of the flood: {e}; logs: {}", broker.logs.lock().unwrap()),
        }
    }
    // The kept connection is still served while accepting fails.
    for _ in 0..5 {
        assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200);
    }
    let backing_off = || broker.logs.lock().unwrap().contains("cannot accept connections; backing off");
    let started = Instant::now();
    while !backing_off() {
        assert!(started.elapsed() < Duration::from_secs(5), "no back-off logged");
        tokio::task::yield_now().await;
        assert_eq!(get(&mut kept, "/healthz").await.unwrap().0, 200);
    }
    let metrics = get(&mut kept, "/metrics").await.unwrap().2;
    assert!(
        metrics.contains(r#"hexbroker_client_connections_refused_total{kind="accept_error"}"#),
        "{metrics}"
    );
    drop(flood);
    let started = Instant::now();
    loop {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        if let Ok(Some((200, ..))) =
            tokio::time::timeout(Duration::from_secs(2), get(&mut socket, "/healthz")).await
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never accepted again");
    }
    assert!(broker.still_running());
}
