//! Revocation reaches every replica within a second: a second hexbroker process shares the
//! Postgres database with the test's own instance, each with its own caches, pool and listening
//! connection; what one revokes, the other stops honouring, though its cache TTL is a minute.

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use serde_json::{json, Value};

/// A `hexbroker serve` process, killed on drop.
struct Replica {
    child: std::process::Child,
    base: String,
}

impl Replica {
    fn start(env: &std::collections::HashMap<String, String>) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hexbroker"))
            .env_clear()
            .envs(env)
            .env("HEXBROKER_LOG_FORMAT", "json")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("the replica exited").unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "hexbroker listening" {
                    break v["address"].as_str().unwrap().to_owned();
                }
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base: format!("http://{address}") }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds, for at most a second; returns how long it took.
async fn within_a_second<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: the second replica still honoured it after one second");
}

/// Replica A in the test (Postgres, entries cached for 60 s, so only a notice can end them) and
/// replica B, a hexbroker process of its own on the same database and keys; `None` without
/// Postgres.
async fn two_replicas() -> Option<(TestApp, Replica)> {
    let a = TestApp::start_with(Backend::Postgres, &[("HEXBROKER_CACHE_TTL", "60s")]).await?;
    let replica = Replica::start(&a.env);
    Some((a, replica))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_second_replica_within_a_second() {
    let Some((a, replica)) = two_replicas().await else { return };
    let b = replica.base.clone();

    let (id, _) = a.connected(&a.key("connect").await).await;
    let proxy_key = a.key("proxy").await;
    let writer = a.key("connections:write,connect,proxy").await;
    let made: Value = a
        .http
        .post(a.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&writer)
        .json(&json!({"scopes": ["proxy"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (conn_key_id, conn_key) =
        (made["id"].as_str().unwrap().to_owned(), made["key"].as_str().unwrap().to_owned());

    let http = a.http.clone();
    let via_b_proxy = |key: String| {
        let (http, url, id) = (http.clone(), format!("{b}/v1/proxy/v1/projects"), id.clone());
        async move {
            http.get(url).bearer_auth(key).header("connection-id", id).send().await.unwrap().status().as_u16()
        }
    };
    let via_b_drop_in = |key: String| {
        let (http, url) = (http.clone(), format!("{b}/api/v1/projects"));
        async move { http.get(url).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    // Warm B's caches.
    assert_eq!(via_b_proxy(proxy_key.clone()).await, 200);
    assert_eq!(via_b_drop_in(conn_key.clone()).await, 200);

    // A connection key revoked on A.
    let revoked = a
        .http
        .delete(a.url(&format!("/v1/connections/{id}/keys/{conn_key_id}")))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let took = within_a_second("a revoked connection key", || {
        let f = via_b_drop_in(conn_key.clone());
        async move { f.await == 401 }
    })
    .await;
    eprintln!("connection key revocation seen by B after {took:?}");

    // A connection invalidated on A (Hex said 401 there).
    let (other, other_token) = {
        let token = a.fake.add_personal_token("acme", "second@example.com");
        let c: Value = a
            .connect(&writer, json!({"subdomain": "acme", "token": token, "end_user_id": "u2"}))
            .await
            .json()
            .await
            .unwrap();
        (c["id"].as_str().unwrap().to_owned(), token)
    };
    let via_b_other = || {
        let (http, url, id, key) =
            (http.clone(), format!("{b}/v1/proxy/v1/projects"), other.clone(), proxy_key.clone());
        async move {
            http.get(url).bearer_auth(key).header("connection-id", id).send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(via_b_other().await, 200);
    a.fake.revoke_token(&other_token);
    let seen_by_a = a
        .http
        .get(a.url("/v1/proxy/v1/projects"))
        .bearer_auth(&proxy_key)
        .header("connection-id", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(seen_by_a.status(), 401);
    within_a_second("an invalidated connection", || {
        let f = via_b_other();
        async move { f.await == 424 }
    })
    .await;

    // A connection deleted on A.
    assert_eq!(
        a.http
            .delete(a.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&writer)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    within_a_second("a deleted connection", || {
        let f = via_b_proxy(proxy_key.clone());
        async move { f.await == 404 }
    })
    .await;

    // An API key revoked on A (as `hexbroker keys revoke` does).
    let key_id =
        a.state.store.api_key_by_hash(&a.state.hasher.secret_hash(&proxy_key)).await.unwrap().unwrap().id;
    assert!(a.state.store.revoke_api_key(key_id, &common::system_audit()).await.unwrap());
    within_a_second("a revoked API key", || {
        let f = via_b_proxy(proxy_key.clone());
        async move { f.await == 401 }
    })
    .await;
}

/// The same after the LISTEN connections were killed (`pg_terminate_backend`, as a failover or a
/// connection reaper does): each replica listens again within seconds, and a revocation made after
/// that reaches the other replica within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_second_replica_after_its_listener_was_killed() {
    let Some((a, replica)) = two_replicas().await else { return };
    let b = replica.base.clone();
    let (id, _) = a.connected(&a.key("connect").await).await;
    let proxy_key = a.key("proxy").await;
    let via_b = || {
        let (http, url, id, key) =
            (a.http.clone(), format!("{b}/v1/proxy/v1/projects"), id.clone(), proxy_key.clone());
        async move {
            http.get(url).bearer_auth(key).header("connection-id", id).send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(via_b().await, 200, "B's caches warm");

    let pool = sqlx::PgPool::connect(&a.env["HEXBROKER_DATABASE_URL"]).await.unwrap();
    let listening = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = listening().await;
    assert!(before >= 1, "B listens");
    let killed: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity \
         where datname = current_database() and query ilike 'listen %' and pg_terminate_backend(pid)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed.len() as i64, before);
    let still_there = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from pg_stat_activity where pid = any($1)")
            .bind(&killed)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let started = Instant::now();
    // The killed sessions leave pg_stat_activity, and fresh ones take their place.
    while still_there().await > 0 || listening().await < before {
        assert!(started.elapsed() < Duration::from_secs(10), "the listeners did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("listening again after {:?}", started.elapsed());
    assert_eq!(via_b().await, 200, "B still serves");

    let key_id =
        a.state.store.api_key_by_hash(&a.state.hasher.secret_hash(&proxy_key)).await.unwrap().unwrap().id;
    assert!(a.state.store.revoke_api_key(key_id, &common::system_audit()).await.unwrap());
    within_a_second("a revoked API key after the listener was killed", || {
        let f = via_b();
        async move { f.await == 401 }
    })
    .await;
}
