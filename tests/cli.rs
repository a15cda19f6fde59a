//! The `hexbroker` binary: commands, configuration errors, the SQLite key file, and logs that
//! never carry a secret.

mod common;

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

    assert!(hexbroker(dir.path()).args(["keys", "revoke", &id]).status().unwrap().success());
    assert!(!hexbroker(dir.path()).args(["keys", "revoke", &id]).status().unwrap().success(), "twice fails");
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
