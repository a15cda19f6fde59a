//! The harness every integration test uses: a real hexbroker on port 0, a fake Hex on port 0,
//! and a fresh database of its own (a temporary SQLite file, or a new Postgres database on
//! `HEXBROKER_TEST_POSTGRES_URL`, or on the local Postgres when that is unset and one answers).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use fake_hex::FakeHex;
use hexbroker::crypto::Keyring;
use hexbroker::{AppState, Config};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Writes `#[tokio::test]`s named `<name>_on_sqlite` and `<name>_on_postgres` for each
/// `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

/// Says that the running test cannot do its work here because `what` is missing (`how` says what
/// to set), or, under `CI=true`, fails the test: CI must run everything.
///
/// libtest counts a test that returns early as passed, so the skips are counted, and when the
/// test binary exits it writes one line to stderr (which a plain `cargo test` shows) that says how
/// many tests did not run, for each missing part what to set, and in which modules:
/// `SKIPPED in tests/it: … (in proxy.rs 20, connect.rs 20)`. One line for the whole binary:
/// libtest offers no hook at the end of the run.
pub fn skip(what: &str, how: &str) {
    let test = std::thread::current().name().unwrap_or("this test").to_owned();
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} needs {what}, and CI=true runs everything: {how}");
    }
    // libtest names the thread after the test, `module::on_sqlite::name`.
    let module = test.split_once("::").map_or("?", |(module, _)| module).to_owned();
    let first = {
        let Ok(mut skipped) = skipped().lock() else { return };
        let first = skipped.is_empty();
        let entry = skipped
            .entry(what.to_owned())
            .or_insert_with(|| Skipped { how: how.to_owned(), ..Default::default() });
        entry.count += 1;
        *entry.modules.entry(module).or_default() += 1;
        first
    };
    if first {
        report_skips_at_exit();
    }
}

/// The tests skipped for one missing part: how many, what to set, and how many in each module.
#[derive(Default)]
struct Skipped {
    count: usize,
    how: String,
    modules: std::collections::BTreeMap<String, usize>,
}

/// Tests skipped so far, by missing part.
fn skipped() -> &'static std::sync::Mutex<std::collections::BTreeMap<String, Skipped>> {
    static SKIPPED: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeMap<String, Skipped>>> =
        std::sync::OnceLock::new();
    SKIPPED.get_or_init(Default::default)
}

/// The line [`skip`] leaves at exit: `SKIPPED in tests/it: 40 tests passed without running: 40
/// need the Postgres half (set …; in connect.rs 20, proxy.rs 20)`; `None` when nothing was
/// skipped.
fn skip_summary() -> Option<String> {
    let skipped = skipped().lock().ok()?;
    let total: usize = skipped.values().map(|s| s.count).sum();
    if total == 0 {
        return None;
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let binary = binary.split('-').next().unwrap_or("?");
    let parts: Vec<String> = skipped
        .iter()
        .map(|(what, s)| {
            let modules: Vec<String> =
                s.modules.iter().map(|(module, n)| format!("{module}.rs {n}")).collect();
            format!("{} {} {what} ({}; in {})", s.count, verb(s.count), s.how, modules.join(", "))
        })
        .collect();
    let tests = if total == 1 { "test" } else { "tests" };
    fn verb(n: usize) -> &'static str {
        if n == 1 {
            "needs"
        } else {
            "need"
        }
    }
    Some(format!("SKIPPED in tests/{binary}: {total} {tests} passed without running: {}", parts.join("; ")))
}

/// Registers, once, a C `atexit` handler that writes [`skip_summary`]: libtest's `main` returns
/// (or calls `exit`) after its own summary, so the line comes last. The handler only reads a
/// mutex and writes to stderr, neither of which is torn down before `atexit` handlers run.
fn report_skips_at_exit() {
    extern "C" fn report() {
        use std::io::Write as _;
        if let Some(line) = std::panic::catch_unwind(skip_summary).ok().flatten() {
            let _ = writeln!(std::io::stderr(), "\n{line}");
        }
    }
    extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
    }
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: `atexit` is the C library's, which std links; `report` is a plain `extern "C"` fn
    // that lives as long as the program and does not unwind (panics are caught).
    REGISTERED.call_once(|| unsafe {
        atexit(report);
    });
}

/// What to set for the Postgres half.
pub const POSTGRES_HOW: &str = "HEXBROKER_TEST_POSTGRES_URL is unset (or off) and no Postgres answered on 127.0.0.1:5432 as postgres without a \
     password; set HEXBROKER_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres";

/// The local Postgres the tests use when `HEXBROKER_TEST_POSTGRES_URL` is unset (trust auth, as
/// on a developer's machine with the distribution's defaults and in CI).
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Postgres server the tests may create databases on: `HEXBROKER_TEST_POSTGRES_URL` when set
/// (`off` for none), else the local one at [`LOCAL_POSTGRES`] when it answers; `None` when
/// neither. Looked for once per test binary.
pub fn postgres_admin_url() -> Option<String> {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| match std::env::var("HEXBROKER_TEST_POSTGRES_URL") {
            Ok(url) if url.trim() == "off" => None,
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => local_postgres(),
        })
        .clone()
}

/// [`LOCAL_POSTGRES`] when a TCP connection opens at once and a login succeeds.
fn local_postgres() -> Option<String> {
    use std::time::Duration;
    let address = SocketAddr::from(([127, 0, 0, 1], 5432));
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()?;
    // On a thread of its own: the caller may be inside a runtime already.
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let connect = <sqlx::PgConnection as sqlx::Connection>::connect(LOCAL_POSTGRES);
            let conn = tokio::time::timeout(Duration::from_secs(5), connect).await.ok()?.ok()?;
            let _ = sqlx::Connection::close(conn).await;
            Some(LOCAL_POSTGRES.to_owned())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// A database of one test's own, dropped with it.
pub struct TestDb {
    pub url: String,
    pub sqlite_file: Option<PathBuf>,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database, or `None` (after saying so) for Postgres when no server is configured.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let file = dir.path().join("hexbroker.db");
                Some(Self {
                    url: format!("sqlite://{}", file.display()),
                    sqlite_file: Some(file),
                    postgres: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let Some(admin) = postgres_admin_url() else {
                    skip("the Postgres half", POSTGRES_HOW);
                    return None;
                };
                let name = format!("hbt_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("connect to Postgres");
                sqlx::query(&format!("create database {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("HEXBROKER_TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                Some(Self {
                    url: url.to_string(),
                    sqlite_file: None,
                    postgres: Some((admin, name)),
                    _dir: None,
                })
            }
        }
    }
}

/// A pool on a test's database that goes past the store, for reading and tampering with tables
/// raw; see [`raw!`](crate::raw).
pub enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `body` with `pool` bound to a [`RawPool`]'s pool on `db` (a [`TestDb`]), whichever backend
/// it is: the body is written once and compiled for both, e.g.
/// `raw!(app.db, |pool| sqlx::query(sql).bind(past).execute(&pool).await.unwrap())`.
#[macro_export]
macro_rules! raw {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.raw_pool().await {
            $crate::common::RawPool::Sqlite($pool) => $body,
            $crate::common::RawPool::Postgres($pool) => $body,
        }
    };
}

impl TestDb {
    /// A fresh pool on this database, past the store.
    pub async fn raw_pool(&self) -> RawPool {
        match &self.sqlite_file {
            Some(_) => RawPool::Sqlite(sqlx::SqlitePool::connect(&self.url).await.expect("open SQLite raw")),
            None => RawPool::Postgres(sqlx::PgPool::connect(&self.url).await.expect("open Postgres raw")),
        }
    }

    /// Runs one statement raw; returns the rows it touched.
    pub async fn execute(&self, sql: &str) -> u64 {
        crate::raw!(self, |pool| sqlx::query(sql).execute(&pool).await.expect(sql).rows_affected())
    }

    /// A `bigint`/`integer` (`count(*)` and the like) read raw.
    pub async fn count(&self, sql: &str) -> i64 {
        crate::raw!(self, |pool| sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql))
    }

    /// Text values read raw, one per row.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        crate::raw!(self, |pool| sqlx::query_scalar(sql).fetch_all(&pool).await.expect(sql))
    }

    /// An id as this backend stores it, for a literal in raw SQL.
    pub fn id_literal(&self, id: &str) -> String {
        let id = uuid::Uuid::parse_str(id).expect("an id");
        match &self.sqlite_file {
            Some(_) => format!("x'{}'", id.simple()),
            None => format!("'{id}'"),
        }
    }

    /// Bytes as this backend stores them, for a literal in raw SQL.
    pub fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match &self.sqlite_file {
            Some(_) => format!("x'{hex}'"),
            None => format!("'\\x{hex}'::bytea"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime: clean up on a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                        let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running hexbroker with a fake Hex behind it.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub fake: FakeHex,
    pub fake_addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub env: HashMap<String, String>,
    /// The replica's background work (webhook delivery, pruning); `None` once stopped.
    pub background: Option<hexbroker::background::Background>,
    /// The base URL of the metrics listener, when `HEXBROKER_METRICS_LISTEN` is set (the harness
    /// binds it on a port of its own).
    pub metrics_base: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// Starts hexbroker on `backend`; `None` when that backend is not available here.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, &[]).await
    }

    /// Starts hexbroker with extra `HEXBROKER_*` settings.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let fake = FakeHex::new();
        let fake_addr = fake.spawn().await.expect("start the fake Hex");
        let mut env: HashMap<String, String> = HashMap::from([
            ("HEXBROKER_LISTEN".into(), "127.0.0.1:0".into()),
            ("HEXBROKER_DATABASE_URL".into(), db.url.clone()),
            ("HEXBROKER_HEX_URL".into(), FakeHex::url_template(fake_addr)),
            ("HEXBROKER_ENCRYPTION_KEYS".into(), Keyring::generate_entry()),
        ]);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration");
        let state = AppState::new(config).await.expect("build the app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let background = hexbroker::background::Background::spawn(&state).expect("start background work");
        let metrics_listener = match state.config.metrics_listen {
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let metrics_base = metrics_listener.as_ref().map(|l| format!("http://{}", l.local_addr().unwrap()));
        tokio::spawn(hexbroker::app::serve_app(state.clone(), listener, metrics_listener, async {
            let _ = rx.await;
        }));
        Some(Self {
            base: format!("http://{addr}"),
            addr,
            state,
            fake,
            fake_addr,
            http: reqwest::Client::new(),
            db,
            env,
            background: Some(background),
            metrics_base,
            shutdown: Some(tx),
        })
    }

    /// A second app state on this app's database, settings and keys, with `overrides` applied.
    pub async fn state_with(&self, overrides: &[(&str, &str)]) -> anyhow::Result<AppState> {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        AppState::new(Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration")).await
    }

    /// Starts a second hexbroker on this app's database with `overrides`; returns its base URL.
    pub async fn second_broker(&self, overrides: &[(&str, &str)]) -> String {
        serve_state(self.state_with(overrides).await.expect("build the second app")).await
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new API key in the default tenant.
    pub async fn key(&self, scopes: &str) -> String {
        self.key_in("default", scopes).await
    }

    /// A new API key in `tenant`.
    pub async fn key_in(&self, tenant: &str, scopes: &str) -> String {
        use secrecy::ExposeSecret;
        let created = hexbroker::auth::create_api_key(&self.state, "test", tenant, scopes.parse().unwrap())
            .await
            .expect("create key");
        created.secret.expose_secret().to_owned()
    }

    /// `POST /v1/connect` with `key` and `body`.
    pub async fn connect(&self, key: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url("/v1/connect")).bearer_auth(key).json(&body).send().await.unwrap()
    }

    /// Connects a fresh personal token of workspace `acme` for end user `u1`; returns the
    /// connection id and the Hex token.
    pub async fn connected(&self, key: &str) -> (String, String) {
        self.fake.add_workspace("acme");
        let token = self.fake.add_personal_token("acme", "ada@example.com");
        let response =
            self.connect(key, json!({"subdomain": "acme", "token": token, "end_user_id": "u1"})).await;
        assert_eq!(response.status(), 201, "connect failed");
        let body: Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), token)
    }

    /// The number of stored connections, read raw.
    pub async fn connection_count(&self) -> i64 {
        self.db.count("select count(*) from connection").await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `state` (with its background work) on a fresh port until the test ends; returns the
/// base URL.
pub async fn serve_state(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let background = hexbroker::background::Background::spawn(&state).expect("start background work");
    tokio::spawn(async move {
        let _background = background;
        hexbroker::app::serve_app(state, listener, None, std::future::pending()).await
    });
    base
}

/// The audit context of hexbroker's own actions, for tests that call the store directly.
pub fn system_audit() -> hexbroker::audit::AuditContext {
    hexbroker::audit::AuditContext::system(hexbroker::audit::Action::KeyRevoke)
}

/// Asserts the contract's error shape and returns the code.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-request-id"), "every response carries x-request-id");
    let body: Value = response.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"].as_str().expect("error.code").to_owned();
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error.message");
    (status, code)
}

/// What [`gated_hex`] hands back: the URL template, the gate (add permits to let calls through),
/// and one message per call that reached a gated path.
pub type GatedHex =
    (String, std::sync::Arc<tokio::sync::Semaphore>, tokio::sync::mpsc::UnboundedReceiver<()>);

/// A Hex on a real socket that holds every request whose path starts with `gated` (`"/"`: all of
/// them) until the test adds a permit to the gate, reporting each arrival; other paths answer at
/// once. Either way the answer is `{"values": []}`.
#[allow(dead_code)] // not every test binary holds calls
pub async fn gated_hex(gated: &'static str) -> GatedHex {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let router = {
        let gate = gate.clone();
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (gate, arrived) = (gate.clone(), arrived.clone());
            async move {
                if uri.path().starts_with(gated) {
                    let _ = arrived.send(());
                    gate.acquire().await.unwrap().forget();
                }
                axum::Json(json!({ "values": [] }))
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/{{subdomain}}"), gate, arrivals)
}

/// An address where connections are refused, held so for as long as the returned socket lives: a
/// socket bound and not listening. (A port bound, read and released could be taken meanwhile.)
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}
