//! The operator console (§12) over real HTTP: sign-in, the session cookie and its flags, the
//! end of a session (sign-out on every replica, idle and absolute expiry), CSRF and origin checks
//! that change nothing when they refuse, tenancy, and a key without `admin`. The pages in a real
//! browser, with axe-core and a canary sweep for secrets, are in `console_browser.rs`.

use crate::common;

use chrono::TimeDelta;
use common::{Backend, TestApp};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{json, Value};

/// A browser-like client for the console: no redirects followed, cookies handled by hand.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A signed-in console: the cookie (`name=value`) and the CSRF token its pages carry.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub cookie: String,
    pub csrf: String,
}

/// The headers a same-origin form post from the console carries.
pub(crate) fn same_origin(app: &TestApp) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("origin", "null".parse().unwrap());
    headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
    let _ = app;
    headers
}

/// Posts the sign-in form with `key`; the raw answer.
pub(crate) async fn post_sign_in(app: &TestApp, base: &str, key: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/console"))
        .headers(same_origin(app))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap()
}

/// Signs in on `base` with `key`; the cookie and a page's CSRF token.
pub(crate) async fn sign_in_at(app: &TestApp, base: &str, key: &str) -> Signed {
    let response = post_sign_in(app, base, key).await;
    assert_eq!(response.status(), 303, "sign-in: {}", response.text().await.unwrap_or_default());
    assert_eq!(response.headers()[LOCATION], "/console/connections");
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = get(base, &cookie, "/console/connections").await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    Signed { cookie, csrf }
}

pub(crate) async fn sign_in(app: &TestApp, key: &str) -> Signed {
    sign_in_at(app, &app.base, key).await
}

/// The CSRF token written into a page's forms.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("the page has a CSRF field")
        + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn get(base: &str, cookie: &str, path: &str) -> reqwest::Response {
    client().get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap()
}

/// Posts a console form as the console's own page would.
pub(crate) async fn post(
    app: &TestApp,
    signed: &Signed,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![("csrf", signed.csrf.as_str())];
    form.extend_from_slice(fields);
    client()
        .post(app.url(path))
        .header("cookie", &signed.cookie)
        .headers(same_origin(app))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The id of the API key whose secret is `key`.
async fn key_id(app: &TestApp, key: &str) -> String {
    let hash = app.state.hasher.secret_hash(key);
    app.state.store.api_key_by_hash(&hash).await.unwrap().expect("the key exists").id.to_string()
}

async fn audit(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let response =
        app.http.get(app.url(&format!("/v1/audit-events?{query}"))).bearer_auth(admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

async fn signs_in_with_a_strict_cookie_and_signs_out_on_every_replica(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let admin = app.key("admin").await;
    let response = post_sign_in(&app, &app.base, &admin).await;
    assert_eq!(response.status(), 303);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let (pair, flags) = set.split_once(';').unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "hexbroker_console");
    assert!(value.starts_with("hxbcs_") && value.len() >= 40, "a random session secret: {value}");
    assert_eq!(
        flags.trim(),
        "Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict",
        "plain HTTP: no Secure"
    );
    assert!(!set.contains(&admin), "the API key is not kept in the browser");

    // Stored hashed: the secret is nowhere in the table.
    let secret = value.to_owned();
    let stored =
        app.state.store.console_session_by_hash(&app.state.hasher.secret_hash(&secret)).await.unwrap();
    assert!(stored.is_some(), "the session is found by the cookie's keyed hash");
    let cookie = pair.to_owned();

    // A second replica on the same database knows the session, and forgets it with the first.
    let other = app.second_broker(&[]).await;
    assert_eq!(get(&other, &cookie, "/console/connections").await.status(), 200);
    let page = get(&app.base, &cookie, "/console/connections").await.text().await.unwrap();
    let signed = Signed { cookie: cookie.clone(), csrf: csrf_of(&page) };
    let out = post(&app, &signed, "/console/sign-out", &[]).await;
    assert_eq!(out.status(), 200);
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cleared.starts_with("hexbroker_console=;") && cleared.contains("Max-Age=0"), "{cleared}");
    for base in [&app.base, &other] {
        let after = get(base, &cookie, "/console/connections").await;
        assert_eq!(after.status(), 303, "the cookie no longer works on {base}");
        assert_eq!(after.headers()[LOCATION], "/console");
    }
    assert!(app
        .state
        .store
        .console_session_by_hash(&app.state.hasher.secret_hash(&secret))
        .await
        .unwrap()
        .is_none());
    // Signed out, GET /console is the sign-in form; signed in, it leads on to the connections.
    assert_eq!(get(&app.base, &cookie, "/console").await.status(), 200);
    let again = sign_in(&app, &admin).await;
    let on = get(&app.base, &again.cookie, "/console").await;
    assert_eq!(
        (on.status().as_u16(), on.headers()[LOCATION].to_str().unwrap()),
        (303, "/console/connections")
    );
}

async fn sessions_end_when_idle_at_their_ttl_and_with_their_key(backend: Backend) {
    let Some(app) = TestApp::start_with(
        backend,
        &[("HEXBROKER_CONSOLE_SESSION_TTL", "30m"), ("HEXBROKER_CONSOLE_IDLE_TIMEOUT", "10m")],
    )
    .await
    else {
        return;
    };
    let admin = app.key("admin").await;
    let signed = sign_in(&app, &admin).await;
    // Used every 8 minutes it stays alive past the idle timeout, up to its TTL.
    for _ in 0..3 {
        app.state.clock.advance(TimeDelta::minutes(8));
        assert_eq!(get(&app.base, &signed.cookie, "/console/audit").await.status(), 200);
    }
    app.state.clock.advance(TimeDelta::minutes(7)); // 31 minutes after sign-in
    assert_eq!(get(&app.base, &signed.cookie, "/console/audit").await.status(), 303, "past its TTL");

    let idle = sign_in(&app, &admin).await;
    app.state.clock.advance(TimeDelta::minutes(11));
    assert_eq!(get(&app.base, &idle.cookie, "/console/audit").await.status(), 303, "idle too long");

    // Revoking the key ends its sessions.
    let doomed_key = app.key("admin").await;
    let doomed = sign_in(&app, &doomed_key).await;
    let id = key_id(&app, &doomed_key).await;
    let revoke = post(&app, &idle_free(&app, &admin).await, &format!("/console/keys/{id}/revoke"), &[]).await;
    assert_eq!(revoke.status(), 303);
    assert_eq!(get(&app.base, &doomed.cookie, "/console/audit").await.status(), 303, "its key was revoked");
}

/// A fresh session for `key`.
async fn idle_free(app: &TestApp, key: &str) -> Signed {
    sign_in(app, key).await
}

async fn https_makes_the_cookie_secure_and_host_prefixed(backend: Backend) {
    let Some(app) =
        TestApp::start_with(backend, &[("HEXBROKER_PUBLIC_URL", "https://broker.example.com")]).await
    else {
        return;
    };
    let admin = app.key("admin").await;
    // The public origin is the console's origin.
    let response = client()
        .post(app.url("/console"))
        .header("origin", "https://broker.example.com")
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let (pair, flags) = set.split_once(';').unwrap();
    assert!(pair.starts_with("__Host-hexbroker_console=hxbcs_"), "{set}");
    assert_eq!(flags.trim(), "Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure");
    assert_eq!(get(&app.base, pair, "/console/connections").await.status(), 200);
    // The same secret under the plain name is not the https cookie.
    let plain = pair.replacen("__Host-", "", 1);
    assert_eq!(get(&app.base, &plain, "/console/connections").await.status(), 303);
    // An origin that is neither the public one nor this host is refused.
    let foreign = client()
        .post(app.url("/console"))
        .header("origin", "https://evil.example")
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign.headers().get(SET_COOKIE).is_none());
}

async fn a_key_without_admin_is_refused_and_failures_count_as_guesses(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_CONNECT_ATTEMPT_LIMIT", "3/10m")]).await
    else {
        return;
    };
    let reader = app.key("connections:read,connect").await;
    let refused = post_sign_in(&app, &app.base, &reader).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get(SET_COOKIE).is_none(), "no session");
    let page = refused.text().await.unwrap();
    assert!(page.contains("needs the admin scope"), "says why: {page}");
    assert!(page.contains("connect, connections:read"), "names the key's scopes: {page}");
    assert!(!page.contains(&reader), "the key is not echoed");

    // A real non-admin key is no guess; wrong keys are, and past the limit even a good key waits.
    for _ in 0..3 {
        let wrong = post_sign_in(&app, &app.base, "hxbk_not-a-key-at-all").await;
        assert_eq!(wrong.status(), 403);
        assert!(wrong.text().await.unwrap().contains("not valid"));
    }
    let admin = app.key("admin").await;
    let limited = post_sign_in(&app, &app.base, &admin).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.headers().get(SET_COOKIE).is_none());
}

async fn cross_site_posts_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let admin = app.key("admin").await;
    let connect = app.key("connect").await;
    let (id, _) = app.connected(&connect).await;
    let signed = sign_in(&app, &admin).await;
    let other = sign_in(&app, &admin).await;
    assert_ne!(signed.csrf, other.csrf, "each session has its own token");
    let path = format!("/console/connections/{id}/delete");
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let attempts: Vec<(&str, Pairs, Pairs)> = vec![
        ("no CSRF token", vec![], vec![("origin", "null"), ("sec-fetch-site", "same-origin")]),
        ("a wrong token", vec![("csrf", "x")], vec![("origin", "null"), ("sec-fetch-site", "same-origin")]),
        (
            "another session's token",
            vec![("csrf", other.csrf.as_str())],
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "a cross-site post",
            vec![("csrf", signed.csrf.as_str())],
            vec![("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
        ),
        (
            "a same-site post",
            vec![("csrf", signed.csrf.as_str())],
            vec![("origin", "https://sub.example"), ("sec-fetch-site", "same-site")],
        ),
        (
            "a foreign Origin alone",
            vec![("csrf", signed.csrf.as_str())],
            vec![("origin", "https://evil.example")],
        ),
        (
            "a foreign Origin with same-origin",
            vec![("csrf", signed.csrf.as_str())],
            vec![("origin", "https://evil.example"), ("sec-fetch-site", "same-origin")],
        ),
        ("no origin at all", vec![("csrf", signed.csrf.as_str())], vec![]),
    ];
    for (what, fields, headers) in attempts {
        let mut form = fields.clone();
        form.push(("confirm", "delete"));
        let mut request = client().post(app.url(&path)).header("cookie", &signed.cookie).form(&form);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{what}");
        assert!(response.text().await.unwrap().contains("Not allowed"), "{what}: a page that says so");
    }
    // Without the cookie (SameSite=Strict keeps it from cross-site posts) it is 403 too.
    let bare = client()
        .post(app.url(&path))
        .headers(same_origin(&app))
        .form(&[("csrf", signed.csrf.as_str()), ("confirm", "delete")])
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
    // A typed confirmation other than `delete` deletes nothing either.
    assert_eq!(post(&app, &signed, &path, &[("confirm", "yes")]).await.status(), 422);

    let still =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(still.status(), 200, "nothing was deleted");
    assert!(audit(&app, &admin, "action=delete").await.is_empty(), "nothing was audited as deleted");

    // The console's own post, with the origin as a browser that sends one names it.
    let mut own = HeaderMap::new();
    own.insert("origin", app.base.parse().unwrap());
    let deleted = client()
        .post(app.url(&path))
        .header("cookie", &signed.cookie)
        .headers(own)
        .form(&[("csrf", signed.csrf.as_str()), ("confirm", "delete")])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 303);
    assert_eq!(deleted.headers()[LOCATION], "/console/connections?done=deleted");
    let gone =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let entries = audit(&app, &admin, "action=delete").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor_id"], key_id(&app, &admin).await.as_str(), "the signed-in key is the actor");
    assert_eq!(entries[0]["actor_type"], "key");
}

async fn another_tenants_addresses_are_404(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")]).await
    else {
        return;
    };
    let admin = app.key("admin").await;
    let theirs = app.key_in("other", "admin").await;
    let (id, _) = app.connected(&theirs).await;
    let endpoint: Value = app
        .http
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&theirs)
        .json(&json!({"url": "http://127.0.0.1:9/hook"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let their_key_id = key_id(&app, &theirs).await;
    let signed = sign_in(&app, &admin).await;

    for path in [format!("/console/connections/{id}"), format!("/console/webhooks/{endpoint_id}")] {
        let response = get(&app.base, &signed.cookie, &path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.text().await.unwrap().contains("Not found"));
    }
    for path in [
        format!("/console/connections/{id}/verify"),
        format!("/console/webhooks/{endpoint_id}/rotate"),
        format!("/console/webhooks/{endpoint_id}/test"),
        format!("/console/keys/{their_key_id}/revoke"),
    ] {
        assert_eq!(post(&app, &signed, &path, &[]).await.status(), 404, "{path}");
    }
    assert_eq!(
        post(&app, &signed, &format!("/console/connections/{id}/delete"), &[("confirm", "delete")])
            .await
            .status(),
        404
    );
    let list = get(&app.base, &signed.cookie, "/console/connections").await.text().await.unwrap();
    assert!(!list.contains(&id), "another tenant's connection is not listed");
    // Their things are untouched: the key works, the connection is there.
    let theirs_still =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&theirs).send().await.unwrap();
    assert_eq!(theirs_still.status(), 200);
}

async fn a_connection_key_revoked_in_the_console_stops_working(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let admin = app.key("admin").await;
    let (id, _) = app.connected(&app.key("connect").await).await;
    let minted: Value = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&admin)
        .json(&json!({"scopes": ["proxy:read"], "name": "dashboards"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key, minted_id) = (minted["key"].as_str().unwrap(), minted["id"].as_str().unwrap());
    assert_eq!(
        app.http.get(app.url("/api/v1/projects")).bearer_auth(key).send().await.unwrap().status(),
        200
    );
    let signed = sign_in(&app, &admin).await;
    let page =
        get(&app.base, &signed.cookie, &format!("/console/connections/{id}")).await.text().await.unwrap();
    assert!(page.contains("dashboards") && !page.contains(key), "listed by name, never by secret");
    let revoke =
        post(&app, &signed, &format!("/console/connections/{id}/keys/{minted_id}/revoke"), &[]).await;
    assert_eq!(revoke.status(), 303);
    assert_eq!(revoke.headers()[LOCATION], format!("/console/connections/{id}?done=key-revoked").as_str());
    assert_eq!(
        app.http.get(app.url("/api/v1/projects")).bearer_auth(key).send().await.unwrap().status(),
        401
    );
    let entries = audit(&app, &admin, "action=key.revoke").await;
    assert_eq!(entries[0]["actor_id"], key_id(&app, &admin).await.as_str());
    // Revoked once; a second time there is none to revoke.
    assert_eq!(
        post(&app, &signed, &format!("/console/connections/{id}/keys/{minted_id}/revoke"), &[])
            .await
            .status(),
        404
    );
}

on_both_backends!(
    a_connection_key_revoked_in_the_console_stops_working,
    signs_in_with_a_strict_cookie_and_signs_out_on_every_replica,
    sessions_end_when_idle_at_their_ttl_and_with_their_key,
    https_makes_the_cookie_secure_and_host_prefixed,
    a_key_without_admin_is_refused_and_failures_count_as_guesses,
    cross_site_posts_are_refused_and_change_nothing,
    another_tenants_addresses_are_404,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_carry_the_connect_pages_headers() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let admin = app.key("admin").await;
    let signed = sign_in(&app, &admin).await;
    for path in ["/console", "/console/connections", "/console/app.css", "/console/app.js", "/console/keys"] {
        let response = get(&app.base, &signed.cookie, path).await;
        let h = response.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{path}: {csp}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    let page = get(&app.base, &signed.cookie, "/console/connections").await.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains(" style="), "no inline script or style");
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "no external assets");
}
