//! The operator console in headless Chromium (through chromedriver, as `browser.rs` does): a
//! person signs in, filters the connections and opens one by its address, reads its request log,
//! verifies it, makes an API key and sees it once, adds a webhook endpoint and rotates its secret,
//! redelivers an event, and signs out. On the way every page is checked with axe-core at 390 and
//! 1280 pixels wide (no serious or critical finding, no sideways scrolling), and every page's
//! HTML is swept for secrets: the Hex tokens, the API keys, the session cookie and the webhook
//! secrets appear nowhere but on the one answer that made a key or secret.
//!
//! Runs when `HEXBROKER_TEST_CHROMEDRIVER` and `HEXBROKER_TEST_AXE` (the path of `axe.min.js`)
//! are set. With `HEXBROKER_TEST_SCREENSHOTS=dir` (e.g. `docs`) the README's screenshots are
//! written there.

use crate::browser::Chromedriver;
use crate::common;
use crate::console::{get, sign_in};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Runs axe-core on the page as it is; panics on any serious or critical finding, and when the
/// page scrolls sideways.
async fn check_page(browser: &Client, axe: &str, what: &str) {
    for (width, height) in [(1280, 900), (390, 844)] {
        browser.set_window_size(width, height).await.unwrap();
        let loaded = browser.execute("return typeof window.axe", vec![]).await.unwrap();
        if loaded != "object" {
            browser.execute(axe, vec![]).await.expect("inject axe-core");
        }
        let found = browser
            .execute_async(
                "var done = arguments[arguments.length - 1];\
                 axe.run(document, {resultTypes: ['violations']}).then(function (r) {\
                   done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })\
                     .map(function (v) { return {id: v.id, impact: v.impact, help: v.help,\
                       nodes: v.nodes.slice(0, 5).map(function (n) { return n.target.join(' '); })}; }));\
                 }, function (e) { done([{id: 'axe-error', help: String(e)}]); });",
                vec![],
            )
            .await
            .expect("run axe-core");
        assert_eq!(found, json!([]), "{what} at {width}px: axe-core findings");
        let overflow = browser
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(overflow.as_i64().unwrap_or(0) <= 0, "{what} at {width}px scrolls sideways by {overflow}px");
    }
    browser.set_window_size(1280, 900).await.unwrap();
}

/// Every secret of the run, and the one page (by its marker) that may show each.
struct Canaries(Vec<(String, &'static str)>);

impl Canaries {
    /// Panics if `html` holds a secret; `allowed` is the secret this page just made, if any.
    fn sweep(&self, html: &str, what: &str, allowed: Option<&str>) {
        for (secret, name) in &self.0 {
            if Some(secret.as_str()) == allowed {
                continue;
            }
            assert!(!html.contains(secret.as_str()), "{what} shows {name}");
        }
    }
}

async fn open(browser: &Client, url: &str) {
    browser.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
}

async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn fill(browser: &Client, id: &str, text: &str) {
    let input = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn value(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

/// Waits (bounded) for the page's heading to be `title`.
async fn wait_for_title(browser: &Client, title: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = browser.title().await.unwrap_or_default();
        if now == format!("{title} · hexbroker console") {
            return;
        }
        assert!(Instant::now() < deadline, "the page is `{now}`, not `{title}`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until the address contains `part` (after a post that stays on a page of the
/// same title).
async fn wait_for_url(browser: &Client, part: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if now.contains(part) {
            return;
        }
        assert!(Instant::now() < deadline, "the address is `{now}`, without `{part}`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until an element with id `id` is on the page.
async fn wait_for_id(browser: &Client, id: &str) {
    let deadline = Instant::now() + WAIT;
    while browser.find(Locator::Id(id)).await.is_err() {
        assert!(Instant::now() < deadline, "no #{id} on the page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let Ok(dir) = std::env::var("HEXBROKER_TEST_SCREENSHOTS") else { return };
    let mut dir = PathBuf::from(dir);
    if dir.is_relative() {
        dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A webhook receiver that answers 204 to everything.
async fn receiver() -> String {
    let router = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/hooks/hexbroker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_a_support_ticket_in_the_console() {
    let Ok(chromedriver) = std::env::var("HEXBROKER_TEST_CHROMEDRIVER") else {
        common::skip("the browser test", "set HEXBROKER_TEST_CHROMEDRIVER=/usr/bin/chromedriver");
        return;
    };
    let Some(axe) = std::env::var("HEXBROKER_TEST_AXE").ok().and_then(|p| std::fs::read_to_string(p).ok())
    else {
        common::skip("axe-core", "set HEXBROKER_TEST_AXE to axe.min.js of `npm install axe-core@4.10.2`");
        return;
    };
    let app = TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")])
        .await
        .unwrap();
    let admin = app.key("admin").await;
    let connect = app.key("connect").await;
    let proxy = app.key("proxy").await;
    // Two people's connections, and calls through the first, one of which Hex answers 404.
    let (id, token) = app.connected(&connect).await;
    app.fake.add_workspace("globex");
    let other_token = app.fake.add_personal_token("globex", "grace@example.com");
    let response = app
        .connect(
            &connect,
            json!({"subdomain": "globex", "token": other_token, "end_user_id": "u2", "label": "Grace"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    for path in ["/v1/projects", "/v1/projects/00000000-0000-0000-0000-000000000000"] {
        let r = app
            .http
            .get(app.url(&format!("/v1/proxy{path}")))
            .bearer_auth(&proxy)
            .header("connection-id", &id);
        let _ = r.send().await.unwrap().bytes().await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let log: Value = app
            .http
            .get(app.url(&format!("/v1/connections/{id}/requests")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["data"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "the request log did not fill: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hook = receiver().await;
    let mut canaries = Canaries(vec![
        (token.clone(), "a Hex token"),
        (other_token.clone(), "a Hex token"),
        (admin.clone(), "the admin key"),
        (connect.clone(), "an API key"),
        (proxy.clone(), "an API key"),
    ]);

    let driver = Chromedriver::start(&chromedriver).await;
    let browser = driver.browser().await;
    let mut visited: Vec<String> = Vec::new();

    // Signed out: any page leads to the sign-in form.
    open(&browser, &app.url("/console/connections?status=active")).await;
    wait_for_title(&browser, "Sign in").await;
    check_page(&browser, &axe, "the sign-in page").await;
    fill(&browser, "key", &admin).await;
    click(&browser, "#sign-in").await;
    wait_for_title(&browser, "Connections").await;
    let cookie = browser.get_named_cookie("hexbroker_console").await.expect("the session cookie");
    assert!(cookie.http_only().unwrap_or(false), "HttpOnly");
    let session = format!("hexbroker_console={}", cookie.value());
    canaries.0.push((cookie.value().to_owned(), "the session cookie"));
    check_page(&browser, &axe, "connections").await;

    // Find the connection by filter, then by its address.
    fill(&browser, "f-user", "u1").await;
    click(&browser, "#filter").await;
    wait_for_url(&browser, "end_user_id=u1").await;
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.query(), Some("status=&end_user_id=u1&subdomain="), "the filter has an address");
    let rows = browser.find_all(Locator::Css("#connections tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "one connection of u1");
    screenshot(&browser, "console-connections").await;
    visited.push(url.to_string());
    open(&browser, &app.url("/console/connections?status=invalid")).await;
    assert!(browser.source().await.unwrap().contains("No connection matches these filters."));
    check_page(&browser, &axe, "an empty list").await;

    // The connection: its request log, filtered by status.
    open(&browser, &app.url(&format!("/console/connections/{id}"))).await;
    let log = browser.find(Locator::Id("requests")).await.unwrap().text().await.unwrap();
    assert!(
        log.contains("/projects") && log.contains("404") && log.contains("200"),
        "the request log: {log}"
    );
    check_page(&browser, &axe, "a connection").await;
    fill(&browser, "r-status", "4xx").await;
    click(&browser, "form[aria-label='Filter the request log'] button").await;
    wait_for_url(&browser, "status=4xx").await;
    let rows = browser.find_all(Locator::Css("#requests tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the 4xx call");
    assert!(rows[0].text().await.unwrap().contains("404"));
    visited.push(browser.current_url().await.unwrap().to_string());

    // Verify it now: the API's verify, audited as the signed-in key.
    click(&browser, "form[action$='/verify'] button").await;
    wait_for_url(&browser, "?done=verified").await;
    assert!(browser.source().await.unwrap().contains("Checked with Hex just now"));
    screenshot(&browser, "console-connection").await;
    let audit: Value = app
        .http
        .get(app.url(&format!("/v1/audit-events?action=verify&connection_id={id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_id =
        app.state.store.api_key_by_hash(&app.state.hasher.secret_hash(&admin)).await.unwrap().unwrap().id;
    assert_eq!(audit["data"][0]["actor_id"], admin_id.to_string().as_str(), "audited as the signed-in key");
    assert_eq!(audit["data"][0]["outcome"], "ok");

    // An API key, made and seen once.
    open(&browser, &app.url("/console/keys")).await;
    check_page(&browser, &axe, "API keys").await;
    fill(&browser, "key-name", "billing-service").await;
    click(&browser, "#scope-connections-read").await;
    click(&browser, "#create-key").await;
    wait_for_id(&browser, "new-secret").await;
    let new_key = value(&browser, "new-secret").await;
    assert!(new_key.starts_with("hxbk_"), "{new_key}");
    let made = browser.source().await.unwrap();
    canaries.0.push((new_key.clone(), "the new API key"));
    canaries.sweep(&made, "the page that made the key", Some(&new_key));
    check_page(&browser, &axe, "a new API key").await;
    let works = app.http.get(app.url("/v1/connections")).bearer_auth(&new_key).send().await.unwrap();
    assert_eq!(works.status(), 200, "the key shown works");
    browser.refresh().await.unwrap();
    wait_for_title(&browser, "API keys").await;
    assert!(!browser.source().await.unwrap().contains(&new_key), "not shown again on reload");
    assert!(browser.source().await.unwrap().contains("billing-service"), "listed by name");

    // A webhook endpoint: added (secret once), rotated (new secret once), tested.
    open(&browser, &app.url("/console/webhooks")).await;
    check_page(&browser, &axe, "webhook endpoints (none yet)").await;
    fill(&browser, "wh-url", &hook).await;
    click(&browser, "#create-endpoint").await;
    wait_for_id(&browser, "new-secret").await;
    let first = value(&browser, "new-secret").await;
    assert!(first.starts_with("whsec_"), "{first}");
    canaries.0.push((first.clone(), "a webhook secret"));
    click(&browser, "#endpoints a").await;
    wait_for_title(&browser, "Webhook endpoint").await;
    let endpoint_url = browser.current_url().await.unwrap().to_string();
    assert!(!browser.source().await.unwrap().contains(&first), "the secret is not shown again");
    click(&browser, "form[action$='/rotate'] button").await;
    wait_for_id(&browser, "new-secret").await;
    let rotated = value(&browser, "new-secret").await;
    assert!(rotated.starts_with("whsec_") && rotated != first, "a new secret");
    canaries.0.push((rotated.clone(), "a webhook secret"));
    canaries.sweep(&browser.source().await.unwrap(), "the rotation's answer", Some(&rotated));
    click(&browser, "form[action$='/test'] button").await;
    wait_for_url(&browser, "?done=tested").await;
    check_page(&browser, &axe, "a webhook endpoint").await;
    click(&browser, "#toggle").await;
    wait_for_url(&browser, "?done=disabled").await;
    assert!(browser
        .find(Locator::Id("endpoint-state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("disabled"));
    visited.push(endpoint_url);

    // Events, filtered by state, and a redelivery.
    open(&browser, &app.url("/console/events")).await;
    check_page(&browser, &axe, "events").await;
    click(&browser, "#events form[action$='/redeliver'] button").await;
    wait_for_url(&browser, "?done=redelivered").await;
    open(&browser, &app.url("/console/events?state=dead")).await;
    assert!(browser.source().await.unwrap().contains("No events here."));
    open(&browser, &app.url("/console/audit")).await;
    check_page(&browser, &axe, "the audit trail").await;
    let trail = browser.find(Locator::Css("table.audit")).await.unwrap().text().await.unwrap();
    assert!(trail.contains("webhook_endpoint.rotate_secret") && trail.contains("key.create"), "{trail}");
    open(&browser, &app.url("/console/connections/00000000-0000-7000-8000-000000000000")).await;
    wait_for_title(&browser, "Not found").await;
    check_page(&browser, &axe, "a page that is not there").await;

    // The canary sweep: every page, as the browser got it and as served again now.
    for path in [
        "/console/connections".to_owned(),
        format!("/console/connections/{id}"),
        "/console/events".to_owned(),
        "/console/audit".to_owned(),
        "/console/keys".to_owned(),
        "/console/webhooks".to_owned(),
    ]
    .into_iter()
    .chain(visited.iter().map(|u| u.trim_start_matches(&app.base).to_owned()))
    {
        let response = get(&app.base, &session, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        canaries.sweep(&response.text().await.unwrap(), &path, None);
        open(&browser, &app.url(&path)).await;
        canaries.sweep(&browser.source().await.unwrap(), &path, None);
    }

    // Sign out: the session ends, and its cookie no longer works.
    click(&browser, "form.signout button").await;
    wait_for_title(&browser, "Sign in").await;
    assert!(browser.source().await.unwrap().contains("You are signed out"));
    open(&browser, &app.url("/console/keys")).await;
    wait_for_title(&browser, "Sign in").await;
    assert_eq!(get(&app.base, &session, "/console/connections").await.status(), 303);
    let again = sign_in(&app, &admin).await;
    assert_ne!(again.cookie, session, "a new sign-in is a new session");
    let _ = browser.close().await;
}
