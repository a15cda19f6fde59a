//! Hex on its own domain (§6 step 1b, `HEXBROKER_HEX_HOSTS`): a fake Hex serving one workspace at
//! the root of a second loopback origin (`http://127.0.0.2:PORT`) stands in for a company's
//! `https://hex.mycorp.com`. A subdomain field holding a URL on a listed origin connects there,
//! and every later use of the connection (proxy, drop-in, verify, background checks, the 401
//! re-check) goes there with its stored token; anything else is refused with nothing sent, an
//! edited stored origin is refused, and a reconnect never moves a connection to another origin.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{error_code, Backend, TestApp};
use fake_hex::FakeHex;
use serde_json::{json, Value};

/// The address the company's own Hex answers on: another loopback address than the template's.
const OWN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A fake Hex deployment of its own, serving workspace `mycorp` at the root of `http://ADDR`.
async fn own_hex() -> (FakeHex, SocketAddr) {
    let hex = FakeHex::new();
    let addr = hex.spawn_at_root("mycorp", OWN_IP).await.expect("start a fake Hex at 127.0.0.2");
    (hex, addr)
}

/// hexbroker with `hosts` listed (and `extra`), caches off so that row edits are seen at once, and
/// its own watchers quiet.
async fn start(backend: Backend, hosts: &[SocketAddr], extra: &[(&str, &str)]) -> Option<TestApp> {
    let hosts = hosts.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",");
    let mut settings = vec![
        ("HEXBROKER_HEX_HOSTS", hosts.as_str()),
        ("HEXBROKER_CACHE_CAPACITY", "0"),
        ("HEXBROKER_WATCH_POLL", "1h"),
    ];
    settings.extend_from_slice(extra);
    TestApp::start_with(backend, &settings).await
}

/// The requests `hex` saw, as `METHOD path` with the bearer token they carried.
fn seen(hex: &FakeHex) -> Vec<(String, Option<String>)> {
    hex.requests()
        .into_iter()
        .map(|r| {
            let bearer = r.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
            (format!("{} {}", r.method, r.path), bearer)
        })
        .collect()
}

/// Connects `token` with the subdomain field `subdomain` for end user `u1`.
async fn connect(app: &TestApp, key: &str, subdomain: &str, token: &str) -> reqwest::Response {
    app.connect(key, json!({"subdomain": subdomain, "token": token, "end_user_id": "u1"})).await
}

async fn get(app: &TestApp, key: &str, path: &str, connection: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url(path)).bearer_auth(key);
    if let Some(id) = connection {
        request = request.header("connection-id", id);
    }
    request.send().await.unwrap()
}

async fn post(app: &TestApp, base: &str, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await.unwrap()
}

/// `GET /v1/connections/{id}`.
async fn shown(app: &TestApp, key: &str, id: &str) -> Value {
    get(app, key, &format!("/v1/connections/{id}"), None).await.json().await.unwrap()
}

/// A listener that counts the connections made to it and answers none of them.
async fn counting_listener(ip: IpAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, seen)
}

async fn a_url_on_a_listed_origin_connects_there_and_every_call_goes_there(backend: Backend) {
    let (own, addr) = own_hex().await;
    let Some(app) = start(backend, &[addr], &[]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    own.add_project("mycorp", "Revenue");
    let key = app.key("connect,proxy,connections:read,connections:write").await;

    let response =
        connect(&app, &key, &format!("  http://{addr}/mycorp/hex/projects?tab=all "), &token).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["hex_url"], format!("http://{addr}"), "{created}");
    assert_eq!(created["subdomain"], "127.0.0.2", "the origin's host name");
    assert_eq!(created["hex_user_email"], "ada@mycorp.example.com", "identity from that origin's users/me");
    assert_eq!(seen(&own), [("GET /api/v1/users/me".to_owned(), Some(token.clone()))]);

    // The same token again is the same connection, not a second row.
    let again = connect(&app, &key, &format!("http://{addr}"), &token).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    assert_eq!(app.connection_count().await, 1);

    own.clear_requests();
    let proxied = get(&app, &key, "/v1/proxy/v1/projects?limit=5", Some(&id)).await;
    assert_eq!(proxied.status(), 200);
    assert_eq!(proxied.headers()["hexbroker-upstream"], "hex");
    let projects: Value = proxied.json().await.unwrap();
    assert_eq!(projects["values"][0]["title"], "Revenue");

    let minted =
        post(&app, &app.base, &key, &format!("/v1/connections/{id}/keys"), json!({"scopes": ["proxy"]}))
            .await;
    assert_eq!(minted.status(), 201);
    let connection_key = minted.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let drop_in = get(&app, &connection_key, "/api/v1/projects", None).await;
    assert_eq!(drop_in.status(), 200);

    let verified = post(&app, &app.base, &key, &format!("/v1/connections/{id}/verify"), json!({})).await;
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.json::<Value>().await.unwrap()["hex_url"], format!("http://{addr}"));
    assert_eq!(
        seen(&own),
        [
            ("GET /api/v1/projects".to_owned(), Some(token.clone())),
            ("GET /api/v1/projects".to_owned(), Some(token.clone())),
            ("GET /api/v1/users/me".to_owned(), Some(token.clone())),
        ],
        "proxy, drop-in and verify reach the connection's own origin with its stored token"
    );
    assert_eq!(own.requests()[0].query.as_deref(), Some("limit=5"));

    let shown: Value = get(&app, &key, &format!("/v1/connections/{id}"), None).await.json().await.unwrap();
    assert_eq!(shown["hex_url"], format!("http://{addr}"));
    assert!(app.fake.requests().is_empty(), "the template's Hex saw nothing: {:?}", app.fake.requests());

    // A template workspace beside it works as before.
    app.fake.add_workspace("acme");
    let acme = app.fake.add_personal_token("acme", "ada@example.com");
    let template: Value = connect(&app, &key, "acme", &acme).await.json().await.unwrap();
    assert_eq!(template["hex_url"], format!("http://{}/acme", app.fake_addr));
    assert_eq!(template["subdomain"], "acme");
}

async fn a_host_not_on_the_list_is_refused_with_nothing_sent(backend: Backend) {
    let (own, addr) = own_hex().await;
    let (other, knocks) = counting_listener(OWN_IP).await;
    let Some(app) = start(backend, &[addr], &[]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let key = app.key("connect").await;
    let port = addr.port();
    let refused = [
        format!("http://{other}"),
        format!("http://127.0.0.2:{}", other.port()),
        format!("https://{addr}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://user@{addr}"),
        format!("http://user:pw@{addr}/"),
        format!("http://{addr}@{other}"),
        format!("http://{addr}.evil.example/"),
        format!("http://{other}/http://{addr}"),
        format!("http://{other}?http://{addr}"),
        format!("http://{other}#@{addr}"),
        format!("{addr}"),
        format!("http://127.0.0.2:{port}\n/x"),
        format!("ftp://{addr}"),
    ];
    for subdomain in &refused {
        let response = connect(&app, &key, subdomain, &token).await;
        assert_eq!(error_code(response).await, (422, "invalid_subdomain".into()), "{subdomain:?}");
    }
    assert!(own.requests().is_empty(), "the listed origin was asked: {:?}", own.requests());
    assert!(app.fake.requests().is_empty(), "the template's Hex was asked");
    assert_eq!(knocks.load(Ordering::SeqCst), 0, "an unlisted host was reached");
    assert_eq!(app.connection_count().await, 0);
}

async fn an_edited_stored_origin_is_refused_and_its_token_goes_nowhere(backend: Backend) {
    let (own, addr) = own_hex().await;
    let (second, second_addr) = own_hex().await;
    let (other, knocks) = counting_listener(OWN_IP).await;
    let Some(app) = start(backend, &[addr, second_addr], &[]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let key = app.key("connect,proxy,connections:write").await;
    let created: Value = connect(&app, &key, &format!("http://{addr}"), &token).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, &key, "/v1/proxy/v1/projects", Some(&id)).await.status(), 200);
    // The template's Hex has a workspace the edits below might try to send the token to.
    app.fake.add_workspace("mycorp");

    let edits = [
        // Another listed origin: the seal binds the origin.
        format!("hex_url = 'http://{second_addr}'"),
        // A host not on the list.
        format!("hex_url = 'http://{other}'"),
        // Back to the template, where `mycorp` is a workspace too.
        "hex_url = null, subdomain = 'mycorp'".to_owned(),
        // The same origin with another subdomain beside it.
        "subdomain = 'evil'".to_owned(),
    ];
    for edit in &edits {
        let row = format!("where id = {}", app.db.id_literal(&id));
        app.db.execute(&format!("update connection set {edit} {row}")).await;
        own.clear_requests();
        for path in ["/v1/proxy/v1/projects".to_owned()] {
            let response = get(&app, &key, &path, Some(&id)).await;
            assert_eq!(error_code(response).await, (424, "connection_tampered".into()), "{edit}");
        }
        let verify = post(&app, &app.base, &key, &format!("/v1/connections/{id}/verify"), json!({})).await;
        assert_eq!(error_code(verify).await, (424, "connection_tampered".into()), "{edit}");
        app.db
            .execute(&format!(
                "update connection set hex_url = 'http://{addr}', subdomain = '127.0.0.2' {row}"
            ))
            .await;
    }
    assert!(own.requests().is_empty() && second.requests().is_empty() && app.fake.requests().is_empty());
    assert_eq!(knocks.load(Ordering::SeqCst), 0, "an unlisted host was reached");
    assert_eq!(get(&app, &key, "/v1/proxy/v1/projects", Some(&id)).await.status(), 200, "restored, it works");

    // A genuine row whose origin the operator took off the list is not used either.
    let narrowed = app
        .second_broker(&[
            ("HEXBROKER_HEX_HOSTS", &format!("http://{second_addr}")),
            ("HEXBROKER_CACHE_CAPACITY", "0"),
        ])
        .await;
    own.clear_requests();
    let response = app
        .http
        .get(format!("{narrowed}/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (424, "hex_host_not_allowed".into()));
    let verify = post(&app, &narrowed, &key, &format!("/v1/connections/{id}/verify"), json!({})).await;
    assert_eq!(error_code(verify).await, (424, "hex_host_not_allowed".into()));
    assert!(own.requests().is_empty() && second.requests().is_empty(), "the token went out");
}

async fn reencrypt_reseals_a_row_on_its_own_origin_binding_the_origin(backend: Backend) {
    let (own, addr) = own_hex().await;
    let Some(app) = start(backend, &[addr], &[]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let key = app.key("connect,proxy").await;
    let created: Value = connect(&app, &key, &format!("http://{addr}"), &token).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let new = format!("rotated:{}", hexbroker::crypto::Keyring::generate_entry().split_once(':').unwrap().1);
    let rotating = app
        .state_with(&[(
            "HEXBROKER_ENCRYPTION_KEYS",
            &format!("{new},{}", app.env["HEXBROKER_ENCRYPTION_KEYS"]),
        )])
        .await
        .unwrap();
    let report = hexbroker::reencrypt::run(&rotating).await.unwrap();
    assert_eq!((report.resealed, report.tampered), (1, 0));
    assert_eq!(hexbroker::reencrypt::run(&rotating).await.unwrap().resealed, 0, "nothing left to do");
    let row =
        rotating.store.connection_with_token("default", uuid::Uuid::parse_str(&id).unwrap()).await.unwrap();
    let (connection, sealed) = &*row.unwrap();
    assert_eq!((sealed.key_id.as_str(), sealed.version), ("rotated", hexbroker::crypto::SEAL_V3));
    assert_eq!(connection.hex_url.as_deref(), Some(format!("http://{addr}").as_str()));
    let base = common::serve_state(rotating).await;
    let proxied = app
        .http
        .get(format!("{base}/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "the re-sealed row opens, and still goes to its origin");
    assert_eq!(own.requests().last().unwrap().path, "/api/v1/projects");
}

async fn a_reconnect_to_another_origin_is_refused_and_nothing_changes(backend: Backend) {
    let (own, addr) = own_hex().await;
    let (second, second_addr) = own_hex().await;
    let Some(app) = start(backend, &[addr, second_addr], &[]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let key = app.key("connect,proxy,connections:read").await;
    let created: Value = connect(&app, &key, &format!("http://{addr}"), &token).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let session = post(
        &app,
        &app.base,
        &key,
        "/v1/connect/sessions",
        json!({"end_user_id": "u1", "connection_id": id}),
    )
    .await;
    assert_eq!(session.status(), 201);
    let session = session.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let elsewhere = second.add_personal_token("mycorp", "ada@mycorp.example.com");
    app.fake.add_workspace("mycorp");
    let template_token = app.fake.add_personal_token("mycorp", "ada@mycorp.example.com");
    own.clear_requests();
    for (subdomain, token) in
        [(format!("http://{second_addr}/"), &elsewhere), ("mycorp".to_owned(), &template_token)]
    {
        let response =
            post(&app, &app.base, &session, "/v1/connect", json!({"subdomain": subdomain, "token": token}))
                .await;
        assert_eq!(error_code(response).await, (422, "hex_workspace_mismatch".into()), "{subdomain}");
    }
    assert!(
        second.requests().is_empty() && app.fake.requests().is_empty(),
        "the token went to another origin"
    );
    let shown: Value = get(&app, &key, &format!("/v1/connections/{id}"), None).await.json().await.unwrap();
    assert_eq!(shown["hex_url"], format!("http://{addr}"), "nothing changed");
    assert_eq!(shown["token_hint"], created["token_hint"]);
    assert_eq!(shown["updated_at"], created["updated_at"]);

    // The same origin with a new token: replaced, still there, and the session was still usable.
    let fresh = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let replaced = post(
        &app,
        &app.base,
        &session,
        "/v1/connect",
        json!({"subdomain": format!("http://{addr}"), "token": fresh}),
    )
    .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(
        (replaced["id"].as_str(), replaced["hex_url"].as_str()),
        (Some(id.as_str()), Some(format!("http://{addr}").as_str()))
    );
    own.clear_requests();
    assert_eq!(get(&app, &key, "/v1/proxy/v1/projects", Some(&id)).await.status(), 200);
    assert_eq!(seen(&own), [("GET /api/v1/projects".to_owned(), Some(fresh))]);

    // A template connection is not moved onto a listed origin either.
    app.fake.add_workspace("acme");
    let acme = app.fake.add_personal_token("acme", "bo@example.com");
    let template: Value = connect(&app, &key, "acme", &acme).await.json().await.unwrap();
    let session = post(
        &app,
        &app.base,
        &key,
        "/v1/connect/sessions",
        json!({"end_user_id": "u1", "connection_id": template["id"]}),
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    own.clear_requests();
    let moved = post(
        &app,
        &app.base,
        &session,
        "/v1/connect",
        json!({"subdomain": format!("http://{addr}"), "token": token}),
    )
    .await;
    assert_eq!(error_code(moved).await, (422, "hex_workspace_mismatch".into()));
    assert!(own.requests().is_empty());
}

async fn background_checks_and_the_401_recheck_go_to_the_connections_origin(backend: Backend) {
    let (own, addr) = own_hex().await;
    let Some(app) = start(backend, &[addr], &[("HEXBROKER_VERIFY_INTERVAL", "1h")]).await else { return };
    let token = own.add_personal_token("mycorp", "ada@mycorp.example.com");
    let key = app.key("connect,proxy,connections:read").await;
    let created: Value = connect(&app, &key, &format!("http://{addr}"), &token).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(hexbroker::verify::check_round(&app.state).await.unwrap().scheduled, 1);

    own.clear_requests();
    app.state.clock.advance(TimeDelta::hours(2));
    let round = hexbroker::verify::check_round(&app.state).await.unwrap();
    assert_eq!((round.checked, round.invalidated), (1, 0), "{round:?}");
    assert_eq!(seen(&own), [("GET /api/v1/users/me".to_owned(), Some(token.clone()))]);

    // An origin taken off the list is not checked in the background: the check is claimed and
    // put off, and nothing is sent.
    let before = shown(&app, &key, &id).await["next_verify_at"].clone();
    let narrowed = app.state_with(&[("HEXBROKER_HEX_HOSTS", "https://hex.example.com")]).await.unwrap();
    narrowed.clock.advance(TimeDelta::hours(4));
    own.clear_requests();
    let round = hexbroker::verify::check_round(&narrowed).await.unwrap();
    assert_eq!(round.checked, 0, "{round:?}");
    let after = shown(&app, &key, &id).await["next_verify_at"].clone();
    assert!(before.is_string() && after.is_string() && after != before, "not claimed and put off: {after}");
    assert!(own.requests().is_empty());

    // Hex refuses the token on a proxied call: the re-check asks the same origin, which refuses it.
    own.revoke_token(&token);
    own.clear_requests();
    let answer = get(&app, &key, "/v1/proxy/v1/projects", Some(&id)).await;
    assert_eq!(answer.status(), 401, "the caller gets Hex's answer");
    let started = Instant::now();
    loop {
        let shown: Value =
            get(&app, &key, &format!("/v1/connections/{id}"), None).await.json().await.unwrap();
        if shown["status"] == "invalid" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "not invalidated: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paths: Vec<String> = seen(&own).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["GET /api/v1/projects", "GET /api/v1/users/me"]);
    assert!(app.fake.requests().is_empty(), "the template's Hex saw nothing");
}

async fn the_connect_page_mentions_a_company_domain_only_when_hosts_are_named(backend: Backend) {
    let (_own, addr) = own_hex().await;
    let Some(app) = start(backend, &[addr], &[]).await else { return };
    let page = app.http.get(app.url("/connect")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("own domain"), "{page}");
    assert!(!page.contains(&addr.to_string()), "the page does not list the operator's hosts");
    let plain = common::serve_state(app.state_with(&[("HEXBROKER_HEX_HOSTS", "")]).await.unwrap()).await;
    let page = app.http.get(format!("{plain}/connect")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("own domain") && !page.contains("{{"), "{page}");
}

on_both_backends!(
    a_url_on_a_listed_origin_connects_there_and_every_call_goes_there,
    a_host_not_on_the_list_is_refused_with_nothing_sent,
    an_edited_stored_origin_is_refused_and_its_token_goes_nowhere,
    reencrypt_reseals_a_row_on_its_own_origin_binding_the_origin,
    a_reconnect_to_another_origin_is_refused_and_nothing_changes,
    background_checks_and_the_401_recheck_go_to_the_connections_origin,
    the_connect_page_mentions_a_company_domain_only_when_hosts_are_named,
);
