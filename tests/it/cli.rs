//! The `hexbroker` binary: commands, configuration errors, the SQLite key file, and logs that
//! never carry a secret.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use fake_hex::FakeHex;
use serde_json::{json, Value};

fn hexbroker(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hexbroker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEXBROKER_DATABASE_URL", format!("sqlite://{}/hb.db", dir.display()))
        .current_dir(dir);
    command
}

#[test]
fn encryption_key_generate_prints_a_usable_entry() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_hexbroker")).args(["encryption-key", "generate"]).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(hexbroker::crypto::Keyring::parse(line.trim()).is_ok(), "{line}");
}

#[test]
fn a_bad_setting_stops_the_process_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = hexbroker(dir.path()).env("HEXBROKER_LISTEN", "everywhere").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HEXBROKER_LISTEN"), "{stderr}");
}

#[test]
fn postgres_without_encryption_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        hexbroker(dir.path()).env("HEXBROKER_DATABASE_URL", "postgres://127.0.0.1:1/none").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("HEXBROKER_ENCRYPTION_KEYS"), "{stderr}");
}

#[test]
fn keys_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let out = hexbroker(dir.path())
        .args(["keys", "create", "--name", "ci", "--scopes", "proxy,connect", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.lines().last().unwrap();
    assert!(secret.starts_with("hxbk_") && secret.len() > 40, "{stdout}");
    assert_eq!(stdout.trim(), secret, "the secret is alone on stdout");

    let list = hexbroker(dir.path()).args(["keys", "list"]).output().unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains("ci") && listing.contains("acme") && listing.contains(&secret[..12]),
        "{listing}"
    );
    assert!(!listing.contains(secret), "listing never shows secrets");
    let id =
        listing.lines().find(|l| l.contains(" ci ")).unwrap().split_whitespace().next().unwrap().to_owned();

    // Output is captured, not inherited: the second revoke's error is expected, not news.
    assert!(hexbroker(dir.path()).args(["keys", "revoke", &id]).output().unwrap().status.success());
    let twice = hexbroker(dir.path()).args(["keys", "revoke", &id]).output().unwrap();
    assert!(!twice.status.success(), "twice fails");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("no active key"));
    let listing =
        String::from_utf8(hexbroker(dir.path()).args(["keys", "list"]).output().unwrap().stdout).unwrap();
    assert!(listing.contains("revoked"), "{listing}");

    let bad =
        hexbroker(dir.path()).args(["keys", "create", "--name", "x", "--scopes", "root"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8(bad.stderr).unwrap().contains("unknown scope"));
}

#[test]
fn migrate_applies_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = hexbroker(dir.path()).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("hb.db").exists());
}

/// The embedded default end to end: no keys configured, a key file appears (0600) with a
/// warning; a connect and a proxied call work; and at debug level no log line holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_defaults_works_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHex::new();
    let fake_addr = fake.spawn().await.unwrap();
    fake.add_workspace("acme");
    let token = fake.add_personal_token("acme", "ada@example.com");

    let key_out = hexbroker(dir.path())
        .args(["keys", "create", "--name", "t", "--scopes", "connect,proxy,connections:read"])
        .output()
        .unwrap();
    let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();
    let key_file = dir.path().join("hb.db.key");
    assert!(key_file.exists(), "a key file is generated beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(String::from_utf8(key_out.stderr).unwrap().contains("HEXBROKER_ENCRYPTION_KEYS is unset"));

    let mut child = hexbroker(dir.path())
        .env("HEXBROKER_LISTEN", "127.0.0.1:0")
        .env("HEXBROKER_HEX_URL", FakeHex::url_template(fake_addr))
        .env("HEXBROKER_LOG", "trace")
        .env("HEXBROKER_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });

    let http = reqwest::Client::new();
    let connected = http
        .post(format!("http://{address}/v1/connect"))
        .bearer_auth(&key)
        .header("cookie", "sid=cookie-secret")
        .json(&json!({"subdomain": "acme", "token": token, "end_user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 201);
    let id = connected.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let wrong = http
        .post(format!("http://{address}/v1/connect"))
        .bearer_auth(&key)
        .json(&json!({"subdomain": "acme", "token": "hxtp_wrong-token-value", "end_user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    let proxied = http
        .get(format!("http://{address}/v1/proxy/v1/projects"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);

    // SIGTERM drains and exits.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown on SIGTERM");
    logs.push_str(&reader.join().unwrap());

    assert!(logs.contains("/v1/proxy/{*path}"), "requests are logged by route template: {logs}");
    for secret in
        [token.as_str(), &token[5..], key.as_str(), &key[5..], "hxtp_wrong-token-value", "cookie-secret"]
    {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    let key_bytes = std::fs::read_to_string(&key_file).unwrap();
    assert!(!logs.contains(key_bytes.trim().split_once(':').unwrap().1));
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn encryption_keys_made_in_the_same_second_have_different_ids() {
    let entries: Vec<String> = (0..3)
        .map(|_| {
            let out = Command::new(env!("CARGO_BIN_EXE_hexbroker"))
                .args(["encryption-key", "generate"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.split_once(':').unwrap().0).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(hexbroker::crypto::Keyring::parse(&entries.join(",")).is_ok(), "they make one keyring");
}

#[test]
fn help_points_at_the_environment_and_the_readme() {
    let out = Command::new(env!("CARGO_BIN_EXE_hexbroker")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in ["HEXBROKER_DATABASE_URL", "HEXBROKER_ENCRYPTION_KEYS", "README.md", "healthcheck"] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

#[test]
fn a_bad_log_filter_stops_the_process_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for filter in ["verbose", "debug,sqlx=wrn"] {
        let out = hexbroker(dir.path()).arg("migrate").env("HEXBROKER_LOG", filter).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{filter}");
        let stderr = stderr_of(&out);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("HEXBROKER_LOG:"), "{stderr}");
    }
    assert!(!dir.path().join("hb.db").exists(), "nothing ran");
}

/// A Postgres that refuses connections is named by address, once, without the URL's password,
/// in both log formats.
#[test]
fn a_refused_postgres_connection_is_reported_once_by_address() {
    let dir = tempfile::tempdir().unwrap();
    // Bound and never listening, so nothing else takes the port while the test runs.
    let (_held, address) = crate::common::refusing_address();
    let port = address.port();
    for format in ["pretty", "json"] {
        let out = hexbroker(dir.path())
            .arg("migrate")
            .env("HEXBROKER_DATABASE_URL", format!("postgres://ada:sekrit-pw@127.0.0.1:{port}/hexbroker"))
            .env("HEXBROKER_LOG_FORMAT", format)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = stderr_of(&out);
        assert_eq!(stderr.lines().count(), 1, "{format}: {stderr}");
        assert!(stderr.contains(&format!("connection refused at 127.0.0.1:{port}")), "{stderr}");
        assert!(!stderr.contains("sekrit-pw") && !stderr.contains("timed out"), "{stderr}");
    }
}

#[test]
fn a_missing_postgres_database_is_reported_once() {
    let Some(admin) = common::postgres_admin_url() else {
        common::skip("the Postgres half", common::POSTGRES_HOW);
        return;
    };
    let mut url = url::Url::parse(&admin).unwrap();
    let name = format!("hbt_missing_{}", uuid::Uuid::new_v4().simple());
    url.set_path(&name);
    let dir = tempfile::tempdir().unwrap();
    let out = hexbroker(dir.path())
        .arg("migrate")
        .env("HEXBROKER_DATABASE_URL", url.as_str())
        .env("HEXBROKER_LOG_FORMAT", "pretty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&name).count(), 2, "named once, and once in the fix: {stderr}");
    assert!(stderr.contains("has no database"), "{stderr}");
}

#[test]
fn keys_list_marks_expired_keys_and_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let create = |name: &str| {
        let out = hexbroker(dir.path())
            .args(["keys", "create", "--name", name, "--scopes", "proxy"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    };
    create("live");
    create("old");
    create("gone");
    let list = || {
        let out = hexbroker(dir.path()).args(["keys", "list", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("stdout is one JSON array")
    };
    let id_of = |name: &str| {
        list().into_iter().find(|k| k["name"] == name).unwrap()["id"].as_str().unwrap().to_owned()
    };
    let (old, gone) = (id_of("old"), id_of("gone"));
    assert!(hexbroker(dir.path()).args(["keys", "revoke", &gone]).output().unwrap().status.success());
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}/hb.db", dir.path().display())).await.unwrap();
        let past = chrono::Utc::now() - chrono::Duration::hours(1);
        let done = sqlx::query("update api_key set expires_at = $1 where id = $2")
            .bind(past)
            .bind(uuid::Uuid::parse_str(&old).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    });

    let keys = list();
    let status: std::collections::BTreeMap<&str, &str> =
        keys.iter().map(|k| (k["name"].as_str().unwrap(), k["status"].as_str().unwrap())).collect();
    assert_eq!(status, [("gone", "revoked"), ("live", "active"), ("old", "expired")].into());
    for key in &keys {
        assert!(key["prefix"].as_str().is_some_and(|p| p.starts_with("hxbk_")), "{key}");
        assert!(key.get("hash").is_none() && key.get("secret").is_none(), "{key}");
    }
    let table =
        String::from_utf8(hexbroker(dir.path()).args(["keys", "list"]).output().unwrap().stdout).unwrap();
    let row = table.lines().find(|l| l.contains(" old ")).unwrap();
    assert!(row.contains("expired") && !row.contains("revoked"), "{table}");
}

/// Starts `hexbroker serve` on `port` with `extra` settings; returns the child and its stderr up
/// to and including the line `until` matches.
// The child is handed back to the caller, who waits for it in `stop`.
#[allow(clippy::zombie_processes)]
fn serve_until(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    until: impl Fn(&str) -> bool,
) -> (std::process::Child, BufReader<std::process::ChildStderr>, String, u16) {
    let mut command = hexbroker(dir);
    // Port 0: the server binds a free port itself and says which, so no port is picked, released
    // and bound later (where another process could take it meanwhile).
    command.env("HEXBROKER_LISTEN", "127.0.0.1:0").stderr(Stdio::piped());
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut port = None;
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let status = child.wait();
            panic!("hexbroker exited ({status:?}): {seen}");
        }
        seen.push_str(&line);
        if port.is_none() && (line.contains("hexbroker listening") || line.contains("ready at")) {
            port = bound_port(&line);
        }
        if until(&line) {
            let port = port.unwrap_or_else(|| panic!("no bound address before the awaited line: {seen}"));
            return (child, stderr, seen, port);
        }
    }
}

/// The port of the first `127.0.0.1:PORT` in `text`.
fn bound_port(text: &str) -> Option<u16> {
    let after = &text[text.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

fn stop(mut child: std::process::Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_terminal_start_says_where_everything_is_and_what_to_run_next() {
    let dir = tempfile::tempdir().unwrap();
    let (child, mut stderr, mut seen, port) =
        serve_until(dir.path(), &[("HEXBROKER_LOG_FORMAT", "pretty")], |l| l.contains("stop:"));
    stop(child);
    let _ = std::io::Read::read_to_string(&mut stderr, &mut seen);
    let root = dir.path().canonicalize().unwrap();
    for needle in [
        format!("hexbroker is ready at http://127.0.0.1:{port}"),
        format!("database:    SQLite, {}", root.join("hb.db").display()),
        format!("encryption:  key file {}", root.join("hb.db.key").display()),
        "next:        hexbroker keys create --name my-app --scopes connect,connections:read,proxy".to_owned(),
    ] {
        assert!(seen.contains(&needle), "start-up lacks {needle:?}: {seen}");
    }
}

/// On a real terminal (a pseudo-terminal that util-linux's `script` makes) with a password in
/// the Postgres URL: the banner names Postgres and where it is, never the password, and started
/// the way `cargo run` starts it, the next command is one that works without `PATH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_start_on_postgres_names_it_and_never_shows_the_password() {
    use std::io::Read as _;
    if Command::new("script").arg("--version").output().is_err() {
        common::skip("util-linux's `script` (a pseudo-terminal)", "install util-linux");
        return;
    }
    let Some(db) = common::TestDb::new(common::Backend::Postgres).await else { return };
    let mut url = url::Url::parse(&db.url).unwrap();
    if url.username().is_empty() {
        url.set_username("postgres").unwrap();
    }
    url.set_password(Some("s3cretpw")).unwrap();
    let name = url.path().trim_start_matches('/').to_owned();
    let dir = tempfile::tempdir().unwrap();
    // The shell writes its pid (hexbroker's, after `exec`) so that the test can stop hexbroker
    // itself: the hang-up that closing the terminal sends is ignored when the tests run under
    // `nohup`, and the server would outlive them.
    let pid_file = dir.path().join("hexbroker.pid");
    let program =
        format!("echo $$ > '{}'; exec '{}' serve", pid_file.display(), env!("CARGO_BIN_EXE_hexbroker"));
    let mut child = Command::new("script")
        .args(["-qfec", &program, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "dumb")
        .env("HEXBROKER_DATABASE_URL", url.as_str())
        .env("HEXBROKER_ENCRYPTION_KEYS", hexbroker::crypto::Keyring::generate_entry())
        .env("HEXBROKER_LISTEN", "127.0.0.1:0")
        // What `cargo run` sets for the program it runs.
        .env("CARGO", "/usr/local/bin/cargo")
        .env("CARGO_PKG_NAME", "hexbroker")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The terminal's input stays open while it runs: `script` ends at its end.
    let _input = child.stdin.take();
    let mut output = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = output.read(&mut buffer) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&seen).contains("stop:") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let seen = rx.recv_timeout(std::time::Duration::from_secs(60));
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.expect("the banner within a minute").replace('\r', "");
    assert!(!seen.contains("s3cretpw"), "the password is shown: {seen}");
    let port = bound_port(&seen[seen.find("ready at").expect("the ready line")..]).expect("the bound port");
    for needle in [
        format!("hexbroker is ready at http://127.0.0.1:{port}"),
        format!("database:    Postgres, postgres@127.0.0.1:5432/{name}"),
        "encryption:  HEXBROKER_ENCRYPTION_KEYS".to_owned(),
        "next:        cargo run -- keys create --name my-app --scopes connect,connections:read,proxy"
            .to_owned(),
    ] {
        assert!(seen.contains(&needle), "start-up lacks {needle:?}: {seen}");
    }
    assert!(!seen.contains("SQLite"), "{seen}");
}

#[test]
fn healthcheck_says_whether_the_server_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, nothing) = crate::common::refusing_address();
    let nothing = nothing.port();
    let check = |port: u16| {
        hexbroker(dir.path())
            .args(["healthcheck", "--timeout", "2s"])
            .env("HEXBROKER_LISTEN", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
    };
    assert_eq!(check(nothing).status.code(), Some(1), "nothing listens there");

    let (child, _stderr, _, port) =
        serve_until(dir.path(), &[("HEXBROKER_LOG_FORMAT", "json")], |l| l.contains("hexbroker listening"));
    let ready = check(port);
    stop(child);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr_of(&ready));
    assert!(ready.stdout.is_empty() && ready.stderr.is_empty());
}

#[test]
fn healthcheck_fails_on_a_server_that_is_not_ready_or_never_answers() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let not_ready = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = [not_ready.local_addr().unwrap().port(), silent.local_addr().unwrap().port()];
    std::thread::spawn(move || {
        for stream in not_ready.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let held = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    for port in ports {
        let started = std::time::Instant::now();
        let out = hexbroker(dir.path())
            .args(["healthcheck", "--timeout", "500ms"])
            .env("HEXBROKER_LISTEN", format!("127.0.0.1:{port}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
        assert_eq!(stderr_of(&out).lines().count(), 1, "{}", stderr_of(&out));
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "bounded by --timeout");
    }
    drop(held);
}

/// Starts `hexbroker serve` with `grace` and opens a request that stays in progress (a connect
/// whose body is half sent); returns the child and the socket holding the request.
fn serving_with_a_request_in_progress(
    dir: &std::path::Path,
    grace: &str,
) -> (std::process::Child, std::net::TcpStream) {
    use std::io::Write;
    let out = hexbroker(dir).args(["keys", "create", "--name", "k", "--scopes", "connect"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let extra = [("HEXBROKER_SHUTDOWN_GRACE", grace), ("HEXBROKER_LOG_FORMAT", "json")];
    let (child, stderr, _, port) = serve_until(dir, &extra, |l| l.contains("hexbroker listening"));
    std::thread::spawn(move || stderr.lines().for_each(drop));
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // `Expect: 100-continue`: the server says `100 Continue` when the handler starts reading the
    // body, so the request is known to be in progress once that is read back.
    let head = format!(
        "POST /v1/connect HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        let n = std::io::Read::read(&mut socket, &mut byte).expect("the server answers 100 Continue");
        assert_eq!(n, 1, "the server closed the connection: {}", String::from_utf8_lossy(&seen));
        seen.push(byte[0]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&seen));
    socket.set_read_timeout(None).unwrap();
    socket.write_all(b"{\"subdomain\":").unwrap();
    (child, socket)
}

fn signal(child: &std::process::Child, name: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits up to `within` for the child to exit.
fn exited_within(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn the_end_of_the_grace_period_ends_a_shutdown_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _socket) = serving_with_a_request_in_progress(dir.path(), "1s");
    let signalled = std::time::Instant::now();
    signal(&child, "TERM");
    assert!(
        exited_within(&mut child, std::time::Duration::from_millis(500)).is_none(),
        "it waits for the request"
    );
    let status =
        exited_within(&mut child, std::time::Duration::from_secs(10)).expect("exits after the grace period");
    assert!(status.success(), "{status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_second_signal_ends_a_shutdown_at_once() {
    use std::os::unix::process::ExitStatusExt as _;
    for (name, code) in [("TERM", 143), ("INT", 130)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, _socket) = serving_with_a_request_in_progress(dir.path(), "60s");
        signal(&child, name);
        assert!(
            exited_within(&mut child, std::time::Duration::from_millis(500)).is_none(),
            "it waits for the request"
        );
        let second = std::time::Instant::now();
        signal(&child, name);
        let status =
            exited_within(&mut child, std::time::Duration::from_secs(5)).expect("a second signal ends it");
        assert_eq!(status.code(), Some(code), "SIG{name}: {status:?} (signal {:?})", status.signal());
        assert!(second.elapsed() < std::time::Duration::from_secs(2), "{:?}", second.elapsed());
    }
}

/// A webhook receiver on a real socket: the first delivery is read and never answered (the
/// process delivering it is killed meanwhile); later ones are answered 200. Each delivery's
/// `webhook-id` is sent on the returned channel as it arrives.
async fn holding_receiver() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut socket, _)) = listener.accept().await {
            let hold = std::mem::replace(&mut first, false);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then as much body as content-length says.
                let (head, body_len) = loop {
                    let Ok(n) = socket.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (head, end + 4 + length);
                    }
                };
                while seen.len() < body_len {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                let id =
                    head.lines().find_map(|l| l.strip_prefix("webhook-id:")).unwrap_or("").trim().to_owned();
                let _ = tx.send(id);
                if hold {
                    std::future::pending::<()>().await;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, rx)
}

/// `kill -9` while a delivery is in flight: the claim it held is not lost. Once its lease is over
/// (fast-forwarded here in the database; the lapse itself is `store`'s
/// `a_claim_that_was_never_finished_lapses_with_its_lease`), the next start delivers the same
/// event again, and the outbox shows it delivered on the second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_short_by_kill_9_is_made_again_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let hex = FakeHex::new();
    let hex_addr = hex.spawn().await.unwrap();
    let (receiver, mut deliveries) = holding_receiver().await;
    let template = FakeHex::url_template(hex_addr);
    let hook = format!("http://{receiver}/hook");
    let extra = [
        ("HEXBROKER_HEX_URL", template.as_str()),
        ("HEXBROKER_WEBHOOK_URL", hook.as_str()),
        ("HEXBROKER_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("HEXBROKER_WEBHOOK_POLL", "100ms"),
        ("HEXBROKER_LOG_FORMAT", "json"),
    ];
    let created = hexbroker(dir.path())
        .args(["keys", "create", "--name", "k", "--scopes", "connect,admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr_of(&created));
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let (mut first, stderr, _, port) = serve_until(dir.path(), &extra, |l| l.contains("hexbroker listening"));
    std::thread::spawn(move || stderr.lines().for_each(drop));

    hex.add_workspace("acme");
    let token = hex.add_personal_token("acme", "ada@example.com");
    let http = reqwest::Client::new();
    let connected = http
        .post(format!("http://127.0.0.1:{port}/v1/connect"))
        .bearer_auth(&key)
        .json(&json!({"subdomain": "acme", "token": token, "end_user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 201);
    let event = tokio::time::timeout(std::time::Duration::from_secs(20), deliveries.recv())
        .await
        .expect("the first delivery within 20 s")
        .unwrap();
    assert!(!event.is_empty(), "a webhook-id header");
    first.kill().unwrap();
    first.wait().unwrap();

    // The lease the dead process held runs out.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/hb.db", dir.path().display())).await.unwrap();
    let held: i64 = sqlx::query_scalar(
        "select count(*) from webhook_delivery where locked_until is not null and state = 'pending'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(held, 1, "the killed process's claim is still on record");
    sqlx::query("update webhook_delivery set locked_until = '2000-01-01T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (second, stderr, _, port) = serve_until(dir.path(), &extra, |l| l.contains("hexbroker listening"));
    std::thread::spawn(move || stderr.lines().for_each(drop));
    let again = tokio::time::timeout(std::time::Duration::from_secs(20), deliveries.recv())
        .await
        .expect("delivered again within 20 s")
        .unwrap();
    assert_eq!(again, event, "the same event, by its id");
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = http
            .get(format!("http://127.0.0.1:{port}/v1/events"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed["data"][0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop(second);
    assert_eq!(listed["data"][0]["id"], event.as_str(), "{listed}");
    assert_eq!(listed["data"][0]["state"], "delivered", "{listed}");
    assert_eq!(listed["data"][0]["attempts"], 2, "{listed}");
    assert!(deliveries.try_recv().is_err(), "no third delivery");
}
