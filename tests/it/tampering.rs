//! Rows edited behind the broker's back (§9): a sealed token binds its connection's id, tenant and
//! subdomain, and a stored subdomain is checked again whenever it is used. An edited row answers
//! 424 `connection_tampered` and its token goes nowhere; a row sealed the earlier way (id alone)
//! still opens until `hexbroker reencrypt` re-seals it.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{error_code, Backend, TestApp};
use hexbroker::crypto::Keyring;
use secrecy::ExposeSecret;

async fn seal_version(app: &TestApp, id: &str) -> i64 {
    let id = app.db.id_literal(id);
    app.db.count(&format!("select cast(seal_version as bigint) from connection where id = {id}")).await
}

/// A listener that counts the connections made to it and answers none of them.
async fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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

async fn proxied(app: &TestApp, base: &str, key: &str, id: &str) -> reqwest::Response {
    app.http
        .get(format!("{base}/v1/proxy/v1/projects"))
        .bearer_auth(key)
        .header("connection-id", id)
        .send()
        .await
        .unwrap()
}

const NO_CACHE: &[(&str, &str)] = &[("HEXBROKER_CACHE_CAPACITY", "0")];

async fn a_row_edited_to_another_tenant_is_refused_and_its_token_goes_nowhere(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy,connections:write").await;
    let (id, _) = app.connected(&key).await;
    assert_eq!(proxied(&app, &app.base, &key, &id).await.status(), 200, "the row works as stored");

    app.db
        .execute(&format!("update connection set tenant = 'evil' where id = {}", app.db.id_literal(&id)))
        .await;
    app.fake.clear_requests();
    let thief = app.key_in("evil", "proxy,connections:write").await;
    let response = proxied(&app, &app.base, &thief, &id).await;
    assert_eq!(error_code(response).await, (424, "connection_tampered".into()));
    let verify = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/verify")))
        .bearer_auth(&thief)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(verify).await, (424, "connection_tampered".into()));
    let drop_in_key = hexbroker::auth::create_key(
        &app.state,
        hexbroker::auth::KeySpec {
            name: "thief",
            tenant: "evil",
            scopes: "proxy".parse().unwrap(),
            connection_id: Some(uuid::Uuid::parse_str(&id).unwrap()),
            expires_at: None,
        },
        &common::system_audit(),
    )
    .await
    .unwrap();
    let drop_in = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(drop_in_key.secret.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(drop_in).await, (424, "connection_tampered".into()));
    assert!(app.fake.requests().is_empty(), "the token reached Hex: {:?}", app.fake.requests());
}

async fn a_row_edited_to_another_subdomain_is_refused_and_its_token_goes_nowhere(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy,connections:write,connections:read").await;
    let (id, _) = app.connected(&key).await;
    let (other, seen) = counting_listener().await;
    // A broker whose template lets the subdomain pick the whole host, as a careless deployment's
    // might: only the stored-subdomain check stands between an edited row and another host.
    let loose = app
        .second_broker(&[
            ("HEXBROKER_HEX_URL", "http://{subdomain}"),
            ("HEXBROKER_HEX_ALLOW_INSECURE", "true"),
            ("HEXBROKER_CACHE_CAPACITY", "0"),
        ])
        .await;
    app.fake.add_workspace("evil");
    let edits =
        ["evil".to_owned(), format!("127.0.0.1:{}", other.port()), "acme.evil.com".into(), "ACME".into()];
    for edited in &edits {
        app.db
            .execute(&format!(
                "update connection set subdomain = '{edited}' where id = {}",
                app.db.id_literal(&id)
            ))
            .await;
        app.fake.clear_requests();
        for base in [&app.base, &loose] {
            let response = proxied(&app, base, &key, &id).await;
            assert_eq!(error_code(response).await, (424, "connection_tampered".into()), "{edited}");
        }
        assert!(app.fake.requests().is_empty(), "{edited}: the token reached the fake");
        let view: serde_json::Value = app
            .http
            .get(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["subdomain"], edited.as_str(), "the row is shown as it is");
        if edited != "evil" {
            assert!(view["hex_url"].is_null(), "no URL is built from {edited}: {view}");
        }
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the other listener was reached");
}

async fn a_row_sealed_the_earlier_way_opens_until_reencrypt_reseals_it(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy").await;
    let (id, token) = app.connected(&key).await;
    assert_eq!(seal_version(&app, &id).await, 2, "new seals bind tenant and subdomain");

    reseal_the_earlier_way(&app, &id, &token).await;
    assert_eq!(proxied(&app, &app.base, &key, &id).await.status(), 200, "a v1 row still opens");

    let report = hexbroker::reencrypt::run(&app.state).await.unwrap();
    assert_eq!((report.resealed, report.tampered), (1, 0));
    assert_eq!(seal_version(&app, &id).await, 2, "reencrypt re-sealed it the new way");
    assert_eq!(proxied(&app, &app.base, &key, &id).await.status(), 200);
    assert_eq!(hexbroker::reencrypt::run(&app.state).await.unwrap().resealed, 0, "nothing left to do");

    // Once re-sealed, the row's tenant is bound: an edit no longer opens.
    app.db
        .execute(&format!("update connection set tenant = 'evil' where id = {}", app.db.id_literal(&id)))
        .await;
    let report = hexbroker::reencrypt::run(&app.state).await.unwrap();
    assert_eq!((report.resealed, report.tampered), (0, 0), "v2 under the active key is not revisited");
}

/// Seals `token` for connection `id` as the earlier code did (the connection id alone as
/// associated data) and stores it as a v1 row: its seal binds neither tenant nor subdomain.
async fn reseal_the_earlier_way(app: &TestApp, id: &str, token: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    let mut aad = b"hexbroker/connection-token/v1/".to_vec();
    aad.extend_from_slice(uuid.as_bytes());
    let v1 = app.state.keyring.seal(&aad, token.as_bytes());
    app.db
        .execute(&format!(
            "update connection set nonce = {}, ciphertext = {}, seal_version = 1 where id = {}",
            app.db.bytes_literal(&v1.nonce),
            app.db.bytes_literal(&v1.ciphertext),
            app.db.id_literal(id)
        ))
        .await;
    assert_eq!(seal_version(app, id).await, 1);
}

/// On a v1 row the seal does not bind the subdomain, so the check of the stored subdomain at use
/// time is all that keeps an edited row's token from another host: this fails if that check goes.
async fn a_v1_row_edited_to_another_host_is_refused_by_the_use_time_check(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy").await;
    let (id, token) = app.connected(&key).await;
    reseal_the_earlier_way(&app, &id, &token).await;
    assert_eq!(proxied(&app, &app.base, &key, &id).await.status(), 200, "the v1 row opens as it is");
    let (other, seen) = counting_listener().await;
    let loose = app
        .second_broker(&[
            ("HEXBROKER_HEX_URL", "http://{subdomain}"),
            ("HEXBROKER_HEX_ALLOW_INSECURE", "true"),
            ("HEXBROKER_CACHE_CAPACITY", "0"),
        ])
        .await;
    for edited in [format!("127.0.0.1:{}", other.port()), "acme.evil.com".into(), "ACME".into()] {
        app.db
            .execute(&format!(
                "update connection set subdomain = '{edited}' where id = {}",
                app.db.id_literal(&id)
            ))
            .await;
        app.fake.clear_requests();
        for base in [&app.base, &loose] {
            let response = proxied(&app, base, &key, &id).await;
            assert_eq!(error_code(response).await, (424, "connection_tampered".into()), "{edited}");
        }
        assert!(app.fake.requests().is_empty(), "{edited}: the token reached the fake");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the other host was reached with the token");
}

async fn reencrypt_leaves_an_edited_row_alone_and_goes_on(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy").await;
    let (first, _) = app.connected(&key).await;
    let token = app.fake.add_personal_token("acme", "two@example.com");
    let second: serde_json::Value = app
        .connect(&key, serde_json::json!({"subdomain": "acme", "token": token, "end_user_id": "u2"}))
        .await
        .json()
        .await
        .unwrap();
    let second = second["id"].as_str().unwrap().to_owned();
    app.db
        .execute(&format!(
            "update connection set subdomain = 'evil' where id = {}",
            app.db.id_literal(&first)
        ))
        .await;
    let new = format!("rotated:{}", Keyring::generate_entry().split_once(':').unwrap().1);
    let rotating = app
        .state_with(&[(
            "HEXBROKER_ENCRYPTION_KEYS",
            &format!("{new},{}", app.env["HEXBROKER_ENCRYPTION_KEYS"]),
        )])
        .await
        .unwrap();
    let report = hexbroker::reencrypt::run(&rotating).await.unwrap();
    assert_eq!((report.resealed, report.tampered), (1, 1));
    let base = common::serve_state(rotating).await;
    assert_eq!(proxied(&app, &base, &key, &second).await.status(), 200);
    assert_eq!(
        error_code(proxied(&app, &base, &key, &first).await).await,
        (424, "connection_tampered".into())
    );
}

async fn a_stored_token_that_cannot_be_a_header_has_its_own_error(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, NO_CACHE).await else { return };
    let key = app.key("connect,proxy").await;
    let (id, _) = app.connected(&key).await;
    // Sealed properly for its row, but not a value any header can carry.
    let binding = hexbroker::crypto::TokenBinding {
        connection_id: uuid::Uuid::parse_str(&id).unwrap(),
        tenant: "default",
        subdomain: "acme",
        hex_url: None,
    };
    let sealed = app.state.keyring.seal_token(binding, &secrecy::SecretString::from("hxtp_bad\nvalue"));
    app.db
        .execute(&format!(
            "update connection set key_id = '{}', nonce = {}, ciphertext = {} where id = {}",
            sealed.key_id,
            app.db.bytes_literal(&sealed.nonce),
            app.db.bytes_literal(&sealed.ciphertext),
            app.db.id_literal(&id)
        ))
        .await;
    app.fake.clear_requests();
    let response = proxied(&app, &app.base, &key, &id).await;
    assert_eq!(error_code(response).await, (424, "connection_token_unusable".into()));
    assert!(app.fake.requests().is_empty());
}

on_both_backends!(
    a_stored_token_that_cannot_be_a_header_has_its_own_error,
    a_row_edited_to_another_tenant_is_refused_and_its_token_goes_nowhere,
    a_row_edited_to_another_subdomain_is_refused_and_its_token_goes_nowhere,
    a_row_sealed_the_earlier_way_opens_until_reencrypt_reseals_it,
    a_v1_row_edited_to_another_host_is_refused_by_the_use_time_check,
    reencrypt_leaves_an_edited_row_alone_and_goes_on,
);
