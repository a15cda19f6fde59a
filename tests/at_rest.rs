//! Data at rest (§9): the database, read raw, never holds a Hex token or an API key in plaintext.

mod common;

use common::{Backend, TestApp};

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

on_both_backends!(no_token_or_key_is_stored_in_plaintext);
