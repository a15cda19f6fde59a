//! The test instruments (not part of Hex): echo, bytes, misbehave and revoke.

use fake_hex::Scope;

use crate::support::{assert_plain_401, Harness};

#[tokio::test]
async fn echo_streams_the_body_back_and_records_its_length() {
    let h = Harness::start().await;
    let token = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead]);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        h.hex.clear_requests();
        let response = h
            .client
            .request(method, h.url("acme", "/__fake/echo"))
            .bearer_auth(&token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());
        assert_eq!(h.hex.requests()[0].body_len, body.len() as u64);
    }
}

#[tokio::test]
async fn bytes_streams_n_generated_bytes() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    for n in [0usize, 1, 65_536, 200_000] {
        let response = h.get("acme", &format!("/__fake/bytes?n={n}"), &token).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len(), n);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    }
    let bad = h.get("acme", "/__fake/bytes?n=lots", &token).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_instruments_need_a_token_of_the_workspace() {
    let h = Harness::start().await;
    let other = h.hex.add_personal_token("globex", "ada@example.com");
    h.hex.add_workspace("acme");
    assert_plain_401(h.get("acme", "/__fake/bytes?n=10", &other).await).await;
    let echo = h.client.post(h.url("acme", "/__fake/echo")).body("hello").send().await.unwrap();
    assert_plain_401(echo).await;
}

#[tokio::test]
async fn revoke_kills_the_token_it_is_called_with_and_no_other() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let other = h.hex.add_personal_token("acme", "bob@example.com");
    let revoke = |token: String| h.client.post(h.url("acme", "/__fake/revoke")).bearer_auth(token).send();
    assert_eq!(revoke(token.clone()).await.unwrap().status(), 204);
    assert_plain_401(h.get("acme", "/v1/users/me", &token).await).await;
    assert_plain_401(revoke(token.clone()).await.unwrap()).await;
    assert_eq!(h.get("acme", "/v1/users/me", &other).await.status(), 200, "the other token lives");
    assert_plain_401(h.client.post(h.url("acme", "/__fake/revoke")).send().await.unwrap()).await;
}

#[tokio::test]
async fn echo_answers_each_chunk_before_the_request_body_ends() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let mut socket = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /acme/api/__fake/echo HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        h.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(b"b\r\nfirst-chunk\r\n").await.unwrap();

    // The first chunk comes back while the request body is still open.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&received).contains("first-chunk") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "connection closed early");
            received.extend_from_slice(&buffer[..n]);
        }
    });
    wait.await.expect("the echo streams before the body ends");
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    socket.write_all(b"c\r\nsecond-chunk\r\n0\r\n\r\n").await.unwrap();
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&received).ends_with("0\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "connection closed early");
            received.extend_from_slice(&buffer[..n]);
        }
    });
    wait.await.expect("the echo ends when the body ends");
    assert!(String::from_utf8_lossy(&received).contains("second-chunk"));
    assert_eq!(h.hex.requests()[0].body_len, 23);
}

#[tokio::test]
async fn paced_bytes_keep_their_pattern_and_take_their_time() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let started = std::time::Instant::now();
    // 3,000 bytes at 10,000 a second: 1,000-byte chunks every 100 ms.
    let response = h.get("acme", "/__fake/bytes?n=3000&per_second=10000", &token).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 3000);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    assert!(started.elapsed() >= std::time::Duration::from_millis(190), "{:?}", started.elapsed());
    // Odd chunk sizes too (700 bytes every 100 ms).
    let odd = h.get("acme", "/__fake/bytes?n=1500&per_second=7000", &token).await.bytes().await.unwrap();
    assert!(odd.len() == 1500 && odd.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    for bad in ["0", "-1", "fast"] {
        let response = h.get("acme", &format!("/__fake/bytes?n=10&per_second={bad}"), &token).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn misbehave_goes_wrong_in_the_way_asked() {
    use std::time::{Duration, Instant};
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");

    let hang =
        tokio::time::timeout(Duration::from_millis(500), h.get("acme", "/__fake/misbehave?how=hang", &token));
    assert!(hang.await.is_err(), "a hang never answers");

    let started = Instant::now();
    let slow = h.get("acme", "/__fake/misbehave?how=slow&ms=300", &token).await;
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.text().await.unwrap(), r#"{"ok":true}"#);

    let reset = h.get("acme", "/__fake/misbehave?how=reset", &token).await;
    assert_eq!(reset.status(), 200, "the head comes whole");
    assert!(reset.bytes().await.is_err(), "the body is cut off");

    let mut trickle = h.get("acme", "/__fake/misbehave?how=trickle&ms=50", &token).await;
    assert_eq!(trickle.headers()["content-length"], "1000");
    let first = tokio::time::timeout(Duration::from_millis(500), trickle.chunk());
    assert_eq!(first.await.unwrap().unwrap().unwrap().len(), 1, "one byte at a time");

    assert_eq!(h.get("acme", "/__fake/misbehave?how=nicely", &token).await.status(), 400);
    let other = h.hex.add_personal_token("globex", "ada@example.com");
    assert_plain_401(h.get("acme", "/__fake/misbehave?how=hang", &other).await).await;
}
