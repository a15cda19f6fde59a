//! The hosted connect page (`GET /connect`) in a real headless Chromium, driven through
//! chromedriver with fantoccini: a person opens a connect link, fills the form, and sees what
//! happened; the test checks the result through the API. And the frontend snippet
//! (`/connect/sdk.js`) used by a page of another origin, in a popup and in a frame.
//!
//! The browser test runs when `HEXBROKER_TEST_CHROMEDRIVER` names a chromedriver binary (CI sets
//! it); Chromium is `/usr/bin/chromium` unless `HEXBROKER_TEST_CHROMIUM` says otherwise.
//! Screenshots of each state go to `artifacts/connect-page/`.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{Html, Response};
use common::{Backend, TestApp};
use fake_hex::FakeHex;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::sync::watch;

/// How long any one thing may take to show up in the browser.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

const CSP_BUT_ANCESTORS: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors ";

// ---------------------------------------------------------------------------------------------
// Without a browser: what the page's responses carry.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_carry_a_strict_policy() {
    let origins = "https://app.example.com,http://localhost:3000";
    let app = TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_ALLOWED_ORIGINS", origins)])
        .await
        .expect("sqlite is always available");

    for (path, content_type) in [
        ("/connect", "text/html; charset=utf-8"),
        ("/connect/app.js", "text/javascript; charset=utf-8"),
        ("/connect/app.css", "text/css; charset=utf-8"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let h = response.headers();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(
            header("content-security-policy"),
            format!("{CSP_BUT_ANCESTORS}https://app.example.com http://localhost:3000"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert!(h.get("x-frame-options").is_none(), "allowed origins may frame the page");
        let body = response.text().await.unwrap();
        if path == "/connect" {
            assert!(
                body.contains(r#"<meta name="hexbroker-allowed-origins" content="[&quot;https://app.example.com&quot;,&quot;http://localhost:3000&quot;]">"#),
                "the allowed origins are written into the page, escaped"
            );
            assert!(body.contains("<title>Connect your Hex workspace</title>"));
            for id in
                [r#"id="subdomain""#, r#"id="token""#, r#"id="submit""#, r#"id="error""#, r#"id="success""#]
            {
                assert!(body.contains(id), "{id}");
            }
            assert!(!body.contains("<script>") && !body.contains("style="), "no inline script or style");
            assert!(!body.contains("src=\"http") && !body.contains("href=\"http"), "no external resources");
        }
    }

    let none = TestApp::start(Backend::Sqlite).await.unwrap();
    let response = none.http.get(none.url("/connect")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-security-policy"], format!("{CSP_BUT_ANCESTORS}'none'").as_str());
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(response.text().await.unwrap().contains(r#"content="[]""#));
}

// ---------------------------------------------------------------------------------------------
// In a real browser.

/// chromedriver on a port of its own, killed (with the browser it started) when dropped, panics
/// included.
pub(crate) struct Chromedriver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Chromedriver {
    pub(crate) async fn start(binary: &str) -> Self {
        // Port 0: chromedriver binds a free port itself and says which on stdout, so no port is
        // picked here and taken by something else before chromedriver binds it.
        let mut command = Command::new(binary);
        command.arg("--port=0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        // A process group of its own, so that the browser it starts goes with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting chromedriver {binary}: {e}"));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let port = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(port);
                }
            }
        });
        let mut driver = Self { child, port: 0, profile: tempfile::tempdir().expect("temp dir") };
        let deadline = Instant::now() + WAIT;
        driver.port = loop {
            if let Ok(port) = rx.try_recv() {
                break port;
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited before saying where it listens: {exit}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not start within {WAIT:?}");
            tokio::time::sleep(POLL).await;
        };

        let status = format!("http://127.0.0.1:{}/status", driver.port);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        loop {
            if let Ok(response) = http.get(&status).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited before answering: {exit}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer {status} within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    pub(crate) async fn browser(&self) -> Client {
        self.browser_with(false).await
    }

    /// A browser session; with `block_popups`, Chromium blocks popups that no click opened, as
    /// it does for people (chromedriver turns that off unless told otherwise).
    async fn browser_with(&self, block_popups: bool) -> Client {
        let chromium =
            std::env::var("HEXBROKER_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", self.profile.path().display()),
                    "--window-size=1000,900",
                ],
                "excludeSwitches": if block_popups { vec!["disable-popup-blocking"] } else { vec![] },
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromedriver session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // The whole group: chromedriver and the Chromium processes it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake Hex behind a gate: while the gate is shut, requests wait, so the page stays busy.
async fn gated_hex(hex: &FakeHex) -> (String, watch::Sender<bool>) {
    async fn gate(State(open): State<watch::Receiver<bool>>, request: Request, next: Next) -> Response {
        let mut open = open.clone();
        let _ = open.wait_for(|open| *open).await;
        next.run(request).await
    }
    let (tx, rx) = watch::channel(true);
    let router = hex.router().layer(axum::middleware::from_fn_with_state(rx, gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (FakeHex::url_template(addr), tx)
}

/// A page of another origin that frames whatever `src` holds and records the messages it gets.
async fn host_site(src: Arc<Mutex<String>>) -> String {
    async fn page(State(src): State<Arc<Mutex<String>>>) -> Html<String> {
        let src = src.lock().unwrap().replace('&', "&amp;").replace('"', "&quot;");
        Html(format!(
            "<!doctype html><title>An app that embeds hexbroker</title>\
             <script>window.received = []; window.addEventListener('message', function (e) \
             {{ window.received.push({{origin: e.origin, data: e.data}}); }});</script>\
             <h1>Host app</h1><iframe id=\"connect\" src=\"{src}\" width=\"900\" height=\"760\"></iframe>"
        ))
    }
    let router = axum::Router::new().route("/", axum::routing::get(page)).with_state(src);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts").join("connect-page");
    std::fs::create_dir_all(&dir).expect("create artifacts/connect-page");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).expect("write screenshot");
}

/// The page's `data-state`, its error text, and whether the submit button is enabled.
async fn page_state(browser: &Client) -> (String, String) {
    let value = browser
        .execute(
            "var m = document.getElementById('main'); var e = document.getElementById('error'); \
             return [m ? m.getAttribute('data-state') : '', e ? e.textContent : ''];",
            vec![],
        )
        .await
        .expect("read the page state");
    (value[0].as_str().unwrap_or_default().to_owned(), value[1].as_str().unwrap_or_default().to_owned())
}

/// Waits (bounded) until the page is in `state`; returns the error area's text.
async fn wait_for_state(browser: &Client, state: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (now, error) = page_state(browser).await;
        if now == state {
            return error;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not reach `{state}` within {WAIT:?}: it is `{now}`, error text {error:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Opens `url` as a fresh document (from `about:blank`, so that a link differing from the current
/// address only in its fragment still loads the page anew).
async fn open(browser: &Client, url: &str) {
    browser.goto("about:blank").await.unwrap();
    browser.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
}

async fn fill(browser: &Client, id: &str, text: &str) {
    let input = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn submit(browser: &Client) {
    browser.find(Locator::Id("submit")).await.expect("#submit").click().await.expect("click #submit");
}

async fn attr(browser: &Client, id: &str, name: &str) -> Option<String> {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).attr(name).await.unwrap()
}

async fn is_enabled(browser: &Client, id: &str) -> bool {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).is_enabled().await.unwrap()
}

async fn text(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).text().await.unwrap()
}

/// Creates a connect session for `end_user_id`; returns its id and its connect URL, moved to the
/// test app's origin (the configured public URL is the unbound listen address).
async fn session(app: &TestApp, key: &str, body: Value) -> (String, String) {
    let response =
        app.http.post(app.url("/v1/connect/sessions")).bearer_auth(key).json(&body).send().await.unwrap();
    let status = response.status();
    let created: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "create a connect session: {created}");
    let connect_url = created["connect_url"].as_str().expect("connect_url");
    let token = created["token"].as_str().expect("token");
    let url = url::Url::parse(connect_url).expect("connect_url is a URL");
    assert_eq!(url.path(), "/connect", "{connect_url}");
    assert_eq!(url.fragment(), Some(format!("token={token}").as_str()), "the token travels in the fragment");
    assert!(url.query().is_none(), "nothing in the query: {connect_url}");
    let id = created["id"].as_str().expect("id").to_owned();
    (id, format!("{}/connect#token={token}", app.base))
}

async fn connections_of(app: &TestApp, key: &str, end_user_id: &str) -> Vec<Value> {
    let response = app
        .http
        .get(app.url("/v1/connections"))
        .query(&[("end_user_id", end_user_id)])
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().expect("data").clone()
}

/// Makes a session expired, as time would.
async fn expire_session(app: &TestApp, id: &str) {
    let id = uuid::Uuid::parse_str(id).expect("session ids are UUIDs");
    let past = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
    let done = sqlx::query("update connect_session set expires_at = ? where id = ?")
        .bind(past)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "the session row");
    pool.close().await;
}

/// Waits (bounded) until the framing page has received `n` messages; returns them.
async fn received_messages(browser: &Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = browser.execute("return window.received || [];", vec![]).await.unwrap();
        let messages = value.as_array().cloned().unwrap_or_default();
        if messages.len() >= n {
            return messages;
        }
        assert!(Instant::now() < deadline, "the host page got {messages:?}, expected {n} messages");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_connects_through_the_hosted_page() {
    let Ok(chromedriver) = std::env::var("HEXBROKER_TEST_CHROMEDRIVER") else {
        common::skip("the browser test", "set HEXBROKER_TEST_CHROMEDRIVER=/usr/bin/chromedriver");
        return;
    };

    // Hex, behind a gate so that the busy state can be seen; two sites of other origins, one
    // allowed to frame the page and one not.
    let hex = FakeHex::new();
    hex.add_workspace("acme");
    let (hex_url, gate) = gated_hex(&hex).await;
    let framed_src = Arc::new(Mutex::new(String::new()));
    let allowed_site = host_site(framed_src.clone()).await;
    let other_site = host_site(framed_src.clone()).await;
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[("HEXBROKER_HEX_URL", &hex_url), ("HEXBROKER_ALLOWED_ORIGINS", &allowed_site)],
    )
    .await
    .unwrap();
    let connect_key = app.key("connect").await;
    let read_key = app.key("connections:read").await;

    let driver = Chromedriver::start(&chromedriver).await;
    let browser = driver.browser().await;

    // 1. A link without its fragment: a clear message, and nothing to fill in.
    open(&browser, &app.url("/connect")).await;
    assert_eq!(browser.title().await.unwrap(), "Connect your Hex workspace");
    let error = wait_for_state(&browser, "blocked").await;
    assert!(error.contains("connect link is incomplete"), "{error}");
    for id in ["subdomain", "token", "submit"] {
        assert!(!is_enabled(&browser, id).await, "#{id} is disabled");
    }
    screenshot(&browser, "incomplete-link").await;

    // 2. The happy path: open the link, fill the form, see Hex's answer.
    let ada = hex.add_personal_token("acme", "ada@example.com");
    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-happy"})).await;
    open(&browser, &link).await;
    assert_eq!(wait_for_state(&browser, "ready").await, "");
    let shown = browser.current_url().await.unwrap();
    assert_eq!(shown.fragment(), None, "the token left the address bar at once: {shown}");
    assert_eq!(shown.path(), "/connect");
    assert!(is_enabled(&browser, "submit").await);
    assert_eq!(attr(&browser, "token", "type").await.as_deref(), Some("password"));
    assert_eq!(attr(&browser, "token", "autocomplete").await.as_deref(), Some("off"));
    screenshot(&browser, "ready").await;

    fill(&browser, "subdomain", "https://acme.hex.tech/acme/hex/0123/draft/logic").await;
    fill(&browser, "token", &ada).await;
    gate.send_replace(false);
    submit(&browser).await;
    wait_for_state(&browser, "busy").await;
    assert!(!is_enabled(&browser, "submit").await, "no second submission while checking");
    assert_eq!(attr(&browser, "submit", "aria-busy").await.as_deref(), Some("true"));
    assert_eq!(text(&browser, "submit").await, "Checking with Hex…");
    screenshot(&browser, "busy").await;
    gate.send_replace(true);

    assert_eq!(wait_for_state(&browser, "success").await, "");
    let shown = text(&browser, "success").await;
    assert!(shown.contains("acme"), "{shown}");
    let hint = format!("hxtp_…{}", &ada[ada.len() - 4..]);
    assert!(shown.contains(&hint), "the token hint {hint} is shown: {shown}");
    assert!(shown.contains("ada@example.com"), "{shown}");
    assert!(!shown.contains(&ada), "the token itself is not shown");
    screenshot(&browser, "success").await;

    let stored = connections_of(&app, &read_key, "u-happy").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["subdomain"], "acme");
    assert_eq!(stored[0]["token_hint"], hint.as_str());
    assert_eq!(stored[0]["status"], "active");
    let shown = browser.current_url().await.unwrap();
    assert_eq!(shown.fragment(), None, "{shown}");
    assert!(!shown.as_str().contains("hxbs_"), "{shown}");

    // 3. A token Hex rejects: a message that says what to do, nothing stored; then the fixed
    //    token in the same page works, because a failed try does not use the link up.
    let revoked = hex.add_personal_token("acme", "bob@example.com");
    hex.revoke_token(&revoked);
    let good = hex.add_personal_token("acme", "bob@example.com");
    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-rejected"})).await;
    open(&browser, &link).await;
    wait_for_state(&browser, "ready").await;
    fill(&browser, "subdomain", "acme").await;
    fill(&browser, "token", &revoked).await;
    submit(&browser).await;
    let error = wait_for_state(&browser, "error").await;
    assert!(error.contains("Hex did not accept this token"), "{error}");
    assert!(error.contains("Settings → API keys"), "{error}");
    assert_eq!(attr(&browser, "token", "aria-invalid").await.as_deref(), Some("true"));
    assert!(is_enabled(&browser, "submit").await, "the person can try again");
    screenshot(&browser, "token-rejected").await;
    browser.set_window_size(400, 860).await.unwrap();
    let sideways = browser
        .execute(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(sideways, Value::Bool(false), "no sideways scrolling at a phone's width");
    screenshot(&browser, "token-rejected-narrow").await;
    browser.set_window_size(1000, 900).await.unwrap();
    assert!(connections_of(&app, &read_key, "u-rejected").await.is_empty(), "nothing stored");

    fill(&browser, "token", &good).await;
    submit(&browser).await;
    assert_eq!(wait_for_state(&browser, "success").await, "");
    let stored = connections_of(&app, &read_key, "u-rejected").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["hex_user_email"], "bob@example.com");

    // 4. An expired link, and a used one: the page says so as it opens, before anything is
    //    typed, and offers nothing to fill in; looking did not use the link up.
    let (id, link) = session(&app, &connect_key, json!({"end_user_id": "u-expired", "expires_in": 60})).await;
    expire_session(&app, &id).await;
    open(&browser, &link).await;
    let error = wait_for_state(&browser, "blocked").await;
    assert!(error.contains("connect link has expired"), "{error}");
    assert!(error.contains("ask it for a new link"), "{error}");
    assert!(!is_enabled(&browser, "submit").await);
    assert!(!browser.find(Locator::Id("token")).await.unwrap().is_displayed().await.unwrap(), "no form");
    screenshot(&browser, "session-expired").await;
    assert!(connections_of(&app, &read_key, "u-expired").await.is_empty());

    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-used"})).await;
    open(&browser, &link).await;
    wait_for_state(&browser, "ready").await;
    fill(&browser, "subdomain", "acme").await;
    fill(&browser, "token", &hex.add_personal_token("acme", "cy@example.com")).await;
    submit(&browser).await;
    wait_for_state(&browser, "success").await;
    open(&browser, &link).await;
    let error = wait_for_state(&browser, "blocked").await;
    assert!(error.contains("already been used"), "{error}");
    assert!(!browser.find(Locator::Id("token")).await.unwrap().is_displayed().await.unwrap(), "no form");
    screenshot(&browser, "session-used").await;

    // A reconnect link says what it is for.
    let reconnect = json!({"end_user_id": "u-used", "connection_id": connections_of(&app, &read_key, "u-used").await[0]["id"]});
    let (_, link) = session(&app, &connect_key, reconnect).await;
    open(&browser, &link).await;
    wait_for_state(&browser, "ready").await;
    assert_eq!(text(&browser, "title").await, "Reconnect your Hex workspace");
    screenshot(&browser, "reconnect").await;

    // 5. Framed by the allowed origin: the page tells its host, and only its host, about the
    //    connection; a used link tells it why it cannot go on.
    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-framed"})).await;
    *framed_src.lock().unwrap() = link;
    open(&browser, &allowed_site).await;
    browser.find(Locator::Id("connect")).await.unwrap().enter_frame().await.unwrap();
    wait_for_state(&browser, "ready").await;
    fill(&browser, "subdomain", "acme").await;
    fill(&browser, "token", &hex.add_personal_token("acme", "dee@example.com")).await;
    submit(&browser).await;
    wait_for_state(&browser, "success").await;
    browser.enter_parent_frame().await.unwrap();
    screenshot(&browser, "framed-success").await;
    let stored = connections_of(&app, &read_key, "u-framed").await;
    assert_eq!(stored.len(), 1);
    let messages = received_messages(&browser, 1).await;
    assert_eq!(
        messages,
        [json!({
            "origin": app.base,
            "data": {"type": "hexbroker:connected", "connection_id": stored[0]["id"], "subdomain": "acme"},
        })]
    );

    open(&browser, &allowed_site).await; // the same link again: it was used, as it says at once
    browser.find(Locator::Id("connect")).await.unwrap().enter_frame().await.unwrap();
    let error = wait_for_state(&browser, "blocked").await;
    assert!(error.contains("already been used"), "{error}");
    browser.enter_parent_frame().await.unwrap();
    screenshot(&browser, "framed-session-used").await;
    let messages = received_messages(&browser, 1).await;
    assert_eq!(
        messages,
        [json!({"origin": app.base, "data": {"type": "hexbroker:error", "code": "session_used"}})]
    );

    // 6. Framed by an origin that is not allowed: the browser refuses to show the page.
    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-elsewhere"})).await;
    *framed_src.lock().unwrap() = link;
    open(&browser, &other_site).await;
    browser.find(Locator::Id("connect")).await.unwrap().enter_frame().await.unwrap();
    let framed = browser
        .execute("return document.getElementById('main') !== null;", vec![])
        .await
        .unwrap_or(Value::Bool(false));
    assert_eq!(framed, Value::Bool(false), "frame-ancestors keeps other origins from framing the page");
    browser.enter_parent_frame().await.unwrap();
    screenshot(&browser, "framed-by-other-origin").await;
    assert!(received_messages_now(&browser).await.is_empty());

    browser.close().await.unwrap();
    drop(driver);
}

async fn received_messages_now(browser: &Client) -> Vec<Value> {
    let value = browser.execute("return window.received || [];", vec![]).await.unwrap();
    value.as_array().cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The frontend snippet, `/connect/sdk.js`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_js_is_cacheable_and_loadable_from_any_origin() {
    let app =
        TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_ALLOWED_ORIGINS", "https://app.example.com")])
            .await
            .expect("sqlite is always available");
    let response = app.http.get(app.url("/connect/sdk.js")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header("cache-control"), "public, max-age=86400, stale-while-revalidate=604800");
    assert_eq!(header("access-control-allow-origin"), "*", "loadable with subresource integrity");
    assert_eq!(header("cross-origin-resource-policy"), "cross-origin");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("content-security-policy"), format!("{CSP_BUT_ANCESTORS}https://app.example.com"));
    let etag = header("etag");
    assert!(etag.len() > 10 && etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
    let body = response.text().await.unwrap();
    assert!(body.contains("root.hexbroker = {"), "the snippet itself");

    // A cached copy is revalidated without sending it again.
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let again =
            app.http.get(app.url("/connect/sdk.js")).header("if-none-match", &tag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{tag}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let changed =
        app.http.get(app.url("/connect/sdk.js")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.text().await.unwrap(), body);
}

/// A frontend of another origin that loads `sdk.js` from `broker` and connects through it: a
/// button per mode; `window.results` records how each call ended, `window.connectUrl` is the
/// link the next call opens.
async fn frontend_site(broker: Arc<Mutex<String>>) -> String {
    async fn page(State(broker): State<Arc<Mutex<String>>>) -> Html<String> {
        let broker = broker.lock().unwrap().replace('&', "&amp;").replace('"', "&quot;");
        Html(format!(
            "<!doctype html><title>A frontend</title>\
             <script src=\"{broker}/connect/sdk.js\"></script>\
             <script>window.results = []; window.connectUrl = ''; \
             function run(mode) {{ hexbroker.connect({{url: window.connectUrl, mode: mode, container: '#slot'}})\
             .then(function (id) {{ results.push({{connection_id: id}}); }}, \
             function (e) {{ results.push({{code: e.code, name: e.name}}); }}); }}</script>\
             <h1>A frontend</h1>\
             <button id=\"popup\" onclick=\"run('popup')\">Connect Hex (popup)</button>\
             <button id=\"iframe\" onclick=\"run('iframe')\">Connect Hex (here)</button>\
             <div id=\"slot\"></div>"
        ))
    }
    let router = axum::Router::new().route("/", axum::routing::get(page)).with_state(broker);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Waits (bounded) until the frontend has recorded `n` results; returns them.
async fn results(browser: &Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = browser.execute("return window.results || [];", vec![]).await.unwrap();
        let results = value.as_array().cloned().unwrap_or_default();
        if results.len() >= n {
            return results;
        }
        assert!(Instant::now() < deadline, "the frontend recorded {results:?}, expected {n} results");
        tokio::time::sleep(POLL).await;
    }
}

/// Sets the link the frontend's next call opens, then clicks one of its buttons (a real click,
/// so the browser lets it open a popup).
async fn start_connect(browser: &Client, link: &str, mode: &str) {
    browser.execute("window.connectUrl = arguments[0];", vec![json!(link)]).await.unwrap();
    browser.find(Locator::Id(mode)).await.unwrap().click().await.unwrap();
}

/// Waits (bounded) for a window other than `home` and switches to it.
async fn switch_to_popup(browser: &Client, home: &fantoccini::wd::WindowHandle) {
    let deadline = Instant::now() + WAIT;
    loop {
        let windows = browser.windows().await.unwrap();
        if let Some(popup) = windows.into_iter().find(|w| w != home) {
            browser.switch_to_window(popup).await.unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "no popup opened within {WAIT:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (bounded) until only `home` is left open.
async fn wait_for_popup_gone(browser: &Client, home: &fantoccini::wd::WindowHandle) {
    let deadline = Instant::now() + WAIT;
    loop {
        let windows = browser.windows().await.unwrap();
        if windows == std::slice::from_ref(home) {
            return;
        }
        assert!(Instant::now() < deadline, "the popup is still open: {windows:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Clicks `#id` in a window or frame that the click itself closes or removes: chromedriver may
/// answer that it is gone before it answers the click, so only finding the element must work
/// (what the click did is checked through the frontend's results).
async fn click_and_let_go(browser: &Client, id: &str) {
    let element = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    let _ = element.click().await;
}

async fn enter_connect_frame(browser: &Client) {
    let frame = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#slot iframe"))
        .await
        .expect("the connect frame");
    frame.enter_frame().await.unwrap();
}

async fn frames_in_slot(browser: &Client) -> usize {
    browser.find_all(Locator::Css("#slot iframe")).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_on_another_origin_connects_with_sdk_js() {
    let Ok(chromedriver) = std::env::var("HEXBROKER_TEST_CHROMEDRIVER") else {
        common::skip("the browser test", "set HEXBROKER_TEST_CHROMEDRIVER=/usr/bin/chromedriver");
        return;
    };
    let broker = Arc::new(Mutex::new(String::new()));
    let frontend = frontend_site(broker.clone()).await;
    let app =
        TestApp::start_with(Backend::Sqlite, &[("HEXBROKER_ALLOWED_ORIGINS", &frontend)]).await.unwrap();
    *broker.lock().unwrap() = app.base.clone();
    app.fake.add_workspace("acme");
    let connect_key = app.key("connect").await;
    let read_key = app.key("connections:read").await;

    let driver = Chromedriver::start(&chromedriver).await;
    let browser = driver.browser_with(true).await;
    open(&browser, &frontend).await;
    let home = browser.window().await.unwrap();
    let loaded = browser.execute("return typeof hexbroker.connect;", vec![]).await.unwrap();
    assert_eq!(loaded, json!("function"), "sdk.js loaded from hexbroker's origin");

    // 1. Popup: the person connects in the popup; the promise resolves with the connection's
    //    id and the popup closes.
    let (_, popup_link) = session(&app, &connect_key, json!({"end_user_id": "u-popup"})).await;
    start_connect(&browser, &popup_link, "popup").await;
    switch_to_popup(&browser, &home).await;
    wait_for_state(&browser, "ready").await;
    assert!(browser.find(Locator::Id("cancel")).await.unwrap().is_displayed().await.unwrap());
    screenshot(&browser, "sdk-popup").await;
    fill(&browser, "subdomain", "acme").await;
    fill(&browser, "token", &app.fake.add_personal_token("acme", "pop@example.com")).await;
    click_and_let_go(&browser, "submit").await;
    browser.switch_to_window(home.clone()).await.unwrap();
    // The promise resolves once the connect is stored: wait for it before listing.
    let ended = results(&browser, 1).await;
    let stored = connections_of(&app, &read_key, "u-popup").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(ended, [json!({"connection_id": stored[0]["id"]})]);
    wait_for_popup_gone(&browser, &home).await;

    // 2. A frame in the frontend's page: the same, and the frame goes once it is done.
    let (_, frame_link) = session(&app, &connect_key, json!({"end_user_id": "u-frame"})).await;
    start_connect(&browser, &frame_link, "iframe").await;
    enter_connect_frame(&browser).await;
    wait_for_state(&browser, "ready").await;
    fill(&browser, "subdomain", "acme").await;
    fill(&browser, "token", &app.fake.add_personal_token("acme", "frame@example.com")).await;
    browser.enter_parent_frame().await.unwrap();
    screenshot(&browser, "sdk-iframe").await;
    enter_connect_frame(&browser).await;
    click_and_let_go(&browser, "submit").await;
    browser.switch_to_window(home.clone()).await.unwrap(); // the top, even once the frame is gone
    let ended = results(&browser, 2).await;
    let stored = connections_of(&app, &read_key, "u-frame").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(ended[1], json!({"connection_id": stored[0]["id"]}));
    assert_eq!(frames_in_slot(&browser).await, 0, "the frame is removed");

    // 3. A used link rejects with its code in either mode, before anyone types; so does an
    //    expired one.
    start_connect(&browser, &frame_link, "iframe").await;
    let ended = results(&browser, 3).await;
    assert_eq!(ended[2], json!({"code": "session_used", "name": "HexbrokerConnectError"}));
    assert_eq!(frames_in_slot(&browser).await, 0);
    start_connect(&browser, &popup_link, "popup").await;
    assert_eq!(results(&browser, 4).await[3]["code"], "session_used");
    wait_for_popup_gone(&browser, &home).await;
    let (id, expired_link) = session(&app, &connect_key, json!({"end_user_id": "u-late"})).await;
    expire_session(&app, &id).await;
    start_connect(&browser, &expired_link, "popup").await;
    assert_eq!(results(&browser, 5).await[4]["code"], "session_expired");
    wait_for_popup_gone(&browser, &home).await;

    // 4. The person gives up: cancelling in the frame, or closing the popup. A message from any
    //    other origin than hexbroker's (here the frontend's own) is not believed.
    let (_, link) = session(&app, &connect_key, json!({"end_user_id": "u-gives-up"})).await;
    start_connect(&browser, &link, "iframe").await;
    browser
        .execute("window.postMessage({type: 'hexbroker:connected', connection_id: 'forged'}, '*');", vec![])
        .await
        .unwrap();
    enter_connect_frame(&browser).await;
    wait_for_state(&browser, "ready").await;
    click_and_let_go(&browser, "cancel").await;
    browser.switch_to_window(home.clone()).await.unwrap();
    let ended = results(&browser, 6).await;
    assert_eq!(ended.len(), 6, "the forged message was ignored: {ended:?}");
    assert_eq!(ended[5]["code"], "cancelled");

    start_connect(&browser, &link, "popup").await; // cancelling left the link usable
    switch_to_popup(&browser, &home).await;
    wait_for_state(&browser, "ready").await;
    browser.close_window().await.unwrap();
    browser.switch_to_window(home.clone()).await.unwrap();
    assert_eq!(results(&browser, 7).await[6]["code"], "closed");

    // 5. A popup that no click opened is blocked by the browser, and the promise says so.
    browser.execute("window.connectUrl = arguments[0]; run('popup');", vec![json!(link)]).await.unwrap();
    assert_eq!(results(&browser, 8).await[7]["code"], "popup_blocked");
    assert_eq!(browser.windows().await.unwrap(), std::slice::from_ref(&home));
    assert!(connections_of(&app, &read_key, "u-gives-up").await.is_empty());

    // 6. Nothing but a link to a connect page is opened.
    browser
        .execute(
            "hexbroker.connect({url: 'javascript:alert(1)', mode: 'popup'})\
             .catch(function (e) { results.push({code: e.code}); });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(results(&browser, 9).await[8]["code"], "invalid_options");

    browser.close().await.unwrap();
    drop(driver);
}
