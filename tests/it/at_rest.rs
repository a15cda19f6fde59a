//! Data at rest (§9): the database, read raw, never holds a Hex token or an API key in plaintext;
//! and a canary sweep: a broker process run with distinctive tokens and keys through connect,
//! proxy, errors, reconnect, verify and keys leaves none of them in any log line (trace level),
//! response, metric or database dump, in plain, hex or base64 form.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Backend, TestApp, TestDb};
use fake_hex::FakeHex;
use serde_json::{json, Value};

/// Every byte sequence that would give `secret` away: as is, hex-encoded, base64-encoded.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    vec![
        secret.as_bytes().to_vec(),
        hex::encode(secret).into_bytes(),
        base64::engine::general_purpose::STANDARD.encode(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn raw_database_contents(app: &TestApp) -> Vec<u8> {
    match &app.db.sqlite_file {
        Some(file) => {
            // Checkpoint nothing: read the main file and the write-ahead log as they are.
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{}{suffix}", file.display());
                if let Ok(b) = std::fs::read(&path) {
                    bytes.extend(b);
                }
            }
            bytes
        }
        None => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let mut text = String::new();
            for table in ["connection", "api_key", "sealed_secret"] {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("select row_to_json(t)::text from {table} t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                assert!(!rows.is_empty(), "{table} has rows to look at");
                text.push_str(&rows.join("\n"));
            }
            text.into_bytes()
        }
    }
}

async fn no_token_or_key_is_stored_in_plaintext(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let key = app.key("connect,proxy").await;
    let (id, token) = app.connected(&key).await;
    let proxied = app
        .http
        .get(app.url("/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "the stored token works");
    let raw = raw_database_contents(&app).await;
    assert!(
        contains(&raw, id.as_bytes()) || contains(&raw, uuid::Uuid::parse_str(&id).unwrap().as_bytes()),
        "the connection is there"
    );
    for secret in [&token, &key, &token[5..], &key[5..]] {
        for form in forms(secret) {
            assert!(!contains(&raw, &form), "a secret is readable in the database");
        }
    }
}

/// Every table of a database, read raw: the SQLite file and its write-ahead log as they are, or
/// every row of every Postgres table as JSON text.
async fn raw_dump(db: &TestDb) -> Vec<u8> {
    match &db.sqlite_file {
        Some(file) => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                if let Ok(b) = std::fs::read(format!("{}{suffix}", file.display())) {
                    bytes.extend(b);
                }
            }
            bytes
        }
        None => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "select table_name::text from information_schema.tables where table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(tables.iter().any(|t| t == "connection"), "{tables:?}");
            let mut text = String::new();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("select row_to_json(t)::text from \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                text.push_str(&rows.join("\n"));
            }
            text.into_bytes()
        }
    }
}

/// A broker process of its own, logging JSON at trace level; its stderr is collected.
struct Broker {
    child: std::process::Child,
    base: String,
    logs: String,
    rest: Option<std::thread::JoinHandle<String>>,
}

fn hexbroker(db: &TestDb, fake: std::net::SocketAddr, keys: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hexbroker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEXBROKER_DATABASE_URL", &db.url)
        .env("HEXBROKER_ENCRYPTION_KEYS", keys)
        .env("HEXBROKER_HEX_URL", FakeHex::url_template(fake))
        .env("HEXBROKER_LISTEN", "127.0.0.1:0")
        .env("HEXBROKER_LOG", "trace")
        .env("HEXBROKER_LOG_FORMAT", "json");
    command
}

impl Broker {
    fn start(mut command: Command) -> Self {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut logs = String::new();
        let address = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "hexbroker exited: {logs}");
            logs.push_str(&line);
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "hexbroker listening" {
                    break v["address"].as_str().unwrap().to_owned();
                }
            }
        };
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
            rest
        });
        Self { child, base: format!("http://{address}"), logs, rest: Some(rest) }
    }

    /// Stops the process with SIGTERM and returns every line it logged.
    fn stop(mut self) -> String {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(self.child.wait().unwrap().success(), "graceful shutdown");
        self.logs.push_str(&self.rest.take().unwrap().join().unwrap());
        self.logs
    }
}

/// Everything the test received: status, headers and body of each response.
#[derive(Default)]
struct Received(Vec<u8>);

impl Received {
    async fn take(&mut self, response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        for (name, value) in response.headers() {
            self.0.extend_from_slice(name.as_str().as_bytes());
            self.0.extend_from_slice(value.as_bytes());
        }
        let body = response.bytes().await.unwrap();
        self.0.extend_from_slice(&body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

async fn a_canary_sweep_finds_no_secret_in_logs_responses_metrics_or_the_database(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let fake = FakeHex::new();
    let fake_addr = fake.spawn().await.unwrap();
    fake.add_workspace("acme");
    let first_token = fake.add_personal_token("acme", "ada@example.com");
    let second_token = fake.add_personal_token("acme", "ada@example.com");
    let keys = hexbroker::crypto::Keyring::generate_entry();
    let rejected = "hxtp_CANARYrejected7q3Xv9LmZ2pW8";
    let wrong_key = "hxbk_CANARYwrongkey4T6yU8iO0pA2s";
    let cookie = "CANARYcookie5R7tY9uI1oP3";

    let created = hexbroker(&db, fake_addr, &keys)
        .args(["keys", "create", "--name", "sweep", "--scopes", "admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let admin = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let mut logs = String::from_utf8(created.stderr).unwrap();

    let broker = Broker::start(hexbroker(&db, fake_addr, &keys));
    let base = broker.base.clone();
    let http = reqwest::Client::new();
    let mut got = Received::default();
    let url = |path: &str| format!("{base}{path}");

    // Connect: accepted, refused by Hex, and with the token also in a field where it does not fit.
    let (status, connection) = got
        .take(
            http.post(url("/v1/connect"))
                .bearer_auth(&admin)
                .header("cookie", format!("sid={cookie}"))
                .json(&json!({"subdomain": "acme", "token": first_token, "end_user_id": "u1"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(status, 201);
    let id = connection["id"].as_str().unwrap().to_owned();
    for body in [
        json!({"subdomain": "acme", "token": rejected, "end_user_id": "u1"}),
        json!({"subdomain": "acme", "token": first_token, "end_user_id": "u1", "metadata": first_token}),
        json!({"subdomain": "acme", "token": [rejected], "end_user_id": "u1"}),
        json!({"subdomain": rejected, "token": first_token, "end_user_id": "u1"}),
    ] {
        let (status, _) = got
            .take(http.post(url("/v1/connect")).bearer_auth(&admin).json(&body).send().await.unwrap())
            .await;
        assert_eq!(status, 422, "{body}");
    }

    // Proxy: with the key, with a wrong key, with the cookie; verify.
    let proxy = |key: &str| {
        http.get(url("/v1/proxy/v1/projects"))
            .bearer_auth(key)
            .header("connection-id", &id)
            .header("cookie", cookie)
    };
    assert_eq!(got.take(proxy(&admin).send().await.unwrap()).await.0, 200);
    assert_eq!(got.take(proxy(wrong_key).send().await.unwrap()).await.0, 401);
    let verify = http.post(url(&format!("/v1/connections/{id}/verify"))).bearer_auth(&admin);
    assert_eq!(got.take(verify.send().await.unwrap()).await.0, 200);

    // A connection key: made (that one response shows it), used, revoked, refused.
    let made = http
        .post(url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&admin)
        .json(&json!({"scopes": ["proxy"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    let connection_key = made["key"].as_str().unwrap().to_owned();
    let drop_in = || http.get(url("/api/v1/projects")).bearer_auth(&connection_key);
    assert_eq!(got.take(drop_in().send().await.unwrap()).await.0, 200);
    let revoke = http.delete(url(&format!("/v1/connections/{id}/keys/{}", made["id"].as_str().unwrap())));
    assert_eq!(got.take(revoke.bearer_auth(&admin).send().await.unwrap()).await.0, 204);
    assert_eq!(got.take(drop_in().send().await.unwrap()).await.0, 401);

    // Reconnect through a session (its token shown once, in the response that makes it).
    let session = http
        .post(url("/v1/connect/sessions"))
        .bearer_auth(&admin)
        .json(&json!({"end_user_id": "u1", "connection_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 201);
    let session: Value = session.json().await.unwrap();
    let session_token = session["token"].as_str().unwrap().to_owned();
    let reconnect = || {
        http.post(url("/v1/connect"))
            .bearer_auth(&session_token)
            .json(&json!({"subdomain": "acme", "token": second_token}))
    };
    assert_eq!(got.take(reconnect().send().await.unwrap()).await.0, 200);
    assert_eq!(got.take(reconnect().send().await.unwrap()).await.0, 409);

    // Hex refuses the token: its 401 is relayed, then the connection answers 424.
    fake.revoke_token(&second_token);
    assert_eq!(got.take(proxy(&admin).send().await.unwrap()).await.0, 401);
    // The token is re-checked beside that response (§7); once Hex refuses it there too, 424.
    let mut status = 0;
    for _ in 0..100 {
        status = got.take(proxy(&admin).send().await.unwrap()).await.0;
        if status == 424 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 424);

    let metrics = http.get(url("/metrics")).send().await.unwrap().text().await.unwrap();
    logs.push_str(&broker.stop());
    assert!(logs.lines().count() > 20, "the sweep read the logs: {logs}");
    let dump = raw_dump(&db).await;

    let key_bytes = keys.split_once(':').unwrap().1.to_owned();
    let secrets = [
        first_token.as_str(),
        second_token.as_str(),
        rejected,
        wrong_key,
        cookie,
        admin.as_str(),
        connection_key.as_str(),
        session_token.as_str(),
        key_bytes.as_str(),
    ];
    let places: [(&str, &[u8]); 4] = [
        ("logs", logs.as_bytes()),
        ("responses", &got.0),
        ("metrics", metrics.as_bytes()),
        ("database", &dump),
    ];
    let mut hits = Vec::new();
    for secret in secrets {
        // The whole secret, and its random part without the recognisable prefix.
        let parts = [secret, secret.split_once('_').map_or(secret, |(_, rest)| rest)];
        for part in parts {
            for form in forms(part) {
                for (place, haystack) in places {
                    if contains(haystack, &form) {
                        hits.push(format!("{place}: {}…", &secret[..8.min(secret.len())]));
                    }
                }
            }
        }
    }
    assert!(hits.is_empty(), "secrets found: {hits:?}");
    eprintln!(
        "canary sweep: {} secrets × 3 forms over {} log lines, {} response bytes, {} metric bytes, {} database bytes: 0 hits",
        secrets.len(),
        logs.lines().count(),
        got.0.len(),
        metrics.len(),
        dump.len()
    );
}

on_both_backends!(
    no_token_or_key_is_stored_in_plaintext,
    a_canary_sweep_finds_no_secret_in_logs_responses_metrics_or_the_database,
);

/// With SQLite and no keys configured, the key file beside the database is made once; if it goes
/// missing while the database holds sealed values, start-up stops and says where it was expected,
/// and no fresh key is written in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_beside_a_used_database_stops_start_up() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let config = || {
        hexbroker::Config::from_lookup(|k| (k == "HEXBROKER_DATABASE_URL").then(|| db.url.clone())).unwrap()
    };
    let key_file = format!("{}.key", db.sqlite_file.as_ref().unwrap().display());
    drop(hexbroker::AppState::new(config()).await.expect("the first start makes the key file"));
    assert!(std::path::Path::new(&key_file).exists());
    std::fs::remove_file(&key_file).unwrap();
    let err = format!("{:#}", hexbroker::AppState::new(config()).await.unwrap_err());
    assert!(err.contains("key file is missing") && err.contains(&key_file), "{err}");
    assert!(!std::path::Path::new(&key_file).exists(), "no fresh key file was written");
}
