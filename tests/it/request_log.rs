//! The request log (§11): every proxied call recorded beside the hot path, on both backends.
//! Entries are written by a background writer, so tests poll for them with a deadline.

use crate::common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{error_code, Backend, TestApp};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

/// How long a test waits for the writer or the pruner before failing.
const DEADLINE: Duration = Duration::from_secs(15);

/// A new API key in `tenant`: its secret and its id.
async fn key_with_id(app: &TestApp, tenant: &str, scopes: &str) -> (String, String) {
    let created = hexbroker::auth::create_api_key(&app.state, "test", tenant, scopes.parse().unwrap())
        .await
        .expect("create key");
    (created.secret.expose_secret().to_owned(), created.key.id.to_string())
}

/// A connection key of connection `id`: its secret and its id.
async fn connection_key(app: &TestApp, id: &str, scopes: &[&str]) -> (String, String) {
    let response = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(app.key("connections:write,proxy").await)
        .json(&json!({ "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (body["key"].as_str().unwrap().to_owned(), body["id"].as_str().unwrap().to_owned())
}

/// `GET path` with `key`, as JSON, asserting 200.
async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The entries `path` lists (one page of up to 200), once there are `n` of them.
async fn wait_for_entries(app: &TestApp, key: &str, path: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = get_json(app, key, &format!("{path}{sep}limit=200")).await;
        let data = page["data"].as_array().unwrap().clone();
        if data.len() >= n {
            return data;
        }
        assert!(started.elapsed() < DEADLINE, "{path}: {} entries of {n} after {DEADLINE:?}", data.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxied call on `/v1/proxy` with an API key; returns the status and the request id.
async fn proxied(app: &TestApp, key: &str, id: &str, method: reqwest::Method, path: &str) -> (u16, String) {
    let response = app
        .http
        .request(method, app.url(&format!("/v1/proxy{path}")))
        .bearer_auth(key)
        .header("connection-id", id)
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let status = response.status().as_u16();
    let _ = response.bytes().await.unwrap();
    (status, request_id)
}

/// The entry with this request id.
fn entry<'a>(entries: &'a [Value], request_id: &str) -> &'a Value {
    entries.iter().find(|e| e["request_id"] == request_id).unwrap_or_else(|| panic!("no entry {request_id}"))
}

async fn each_surface_and_answer_kind_is_recorded_with_its_fields(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let (proxy_key, proxy_key_id) = key_with_id(&app, "default", "proxy").await;
    let (read_key, read_key_id) = key_with_id(&app, "default", "proxy:read,connections:read").await;
    let (drop_in, drop_in_id) = connection_key(&app, &id, &["proxy:read"]).await;
    let before = chrono::Utc::now() - TimeDelta::seconds(1);

    // Hex answers 200, on the first attempt.
    let (status, ok) = proxied(&app, &proxy_key, &id, reqwest::Method::GET, "/v1/projects?limit=2").await;
    assert_eq!(status, 200);
    // Hex answers 503 once, then 200: one retry.
    app.fake.fail_next(1, 503, None);
    let (status, retried) = proxied(&app, &proxy_key, &id, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 200);
    // Hex's own 404 is Hex's answer.
    let missing_path = "/v1/projects/00000000-0000-0000-0000-000000000000";
    let (status, missing) = proxied(&app, &proxy_key, &id, reqwest::Method::GET, missing_path).await;
    assert_eq!(status, 404);
    // hexbroker refuses a path it will not forward.
    let (status, bad_path) = proxied(&app, &proxy_key, &id, reqwest::Method::GET, "/v1/projects%2Fx").await;
    assert_eq!(status, 400);
    // A read-only key's POST on /v1/proxy: refused by scope, with the connection named.
    let (status, no_scope) = proxied(&app, &read_key, &id, reqwest::Method::POST, "/v1/projects").await;
    assert_eq!(status, 403);
    // The drop-in surface with a connection key: Hex's answer, then a refused POST.
    let response = app.http.get(app.url("/api/v1/projects")).bearer_auth(&drop_in).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let drop_in_ok = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let response = app.http.post(app.url("/api/v1/projects")).bearer_auth(&drop_in).send().await.unwrap();
    let drop_in_refused = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(error_code(response).await, (403, "read_only_key".into()));
    // Calls that name no connection of the caller's tenant are nobody's: not recorded.
    let nobody = uuid::Uuid::now_v7().to_string();
    let (status, _) = proxied(&app, &proxy_key, &nobody, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 404);
    let (other_tenant, _) = key_with_id(&app, "other", "proxy").await;
    let (status, _) = proxied(&app, &other_tenant, &id, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 404);

    let entries = wait_for_entries(&app, &read_key, &format!("/v1/connections/{id}/requests"), 7).await;
    assert_eq!(entries.len(), 7, "{entries:#?}");
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    for e in &entries {
        assert_eq!(e["connection_id"], id.as_str());
        let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
        assert!(at >= before && at <= chrono::Utc::now(), "{e}");
        assert!(e["duration_ms"].as_i64().unwrap() >= 0);
        assert!(e.get("tenant").is_none(), "the tenant is not shown");
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 14, "exactly §11's fields: {keys:?}");
    }

    let e = entry(&entries, &ok);
    assert_eq!(
        (&e["method"], &e["path"], &e["status"], &e["answered_by"], &e["code"], &e["via"], &e["retries"]),
        (
            &json!("GET"),
            &json!("/v1/projects"),
            &json!(200),
            &json!("hex"),
            &Value::Null,
            &json!("proxy"),
            &json!(0)
        )
    );
    assert!(e["hex_duration_ms"].as_i64().is_some());
    assert!(e["duration_ms"].as_i64() >= e["hex_duration_ms"].as_i64());
    assert_eq!(e["key_id"], proxy_key_id.as_str());

    let e = entry(&entries, &retried);
    assert_eq!((&e["status"], &e["retries"], &e["answered_by"]), (&json!(200), &json!(1), &json!("hex")));

    let e = entry(&entries, &missing);
    assert_eq!((&e["status"], &e["answered_by"], &e["code"]), (&json!(404), &json!("hex"), &Value::Null));
    assert_eq!(e["path"], missing_path);

    let e = entry(&entries, &bad_path);
    assert_eq!(
        (&e["status"], &e["answered_by"], &e["code"], &e["hex_duration_ms"]),
        (&json!(400), &json!("hexbroker"), &json!("invalid_path"), &Value::Null)
    );

    let e = entry(&entries, &no_scope);
    assert_eq!(
        (&e["status"], &e["code"], &e["method"]),
        (&json!(403), &json!("insufficient_scope"), &json!("POST"))
    );
    assert_eq!(e["key_id"], read_key_id.as_str());

    let e = entry(&entries, &drop_in_ok);
    assert_eq!(
        (&e["via"], &e["path"], &e["status"], &e["answered_by"]),
        (&json!("api"), &json!("/v1/projects"), &json!(200), &json!("hex"))
    );
    assert_eq!(e["key_id"], drop_in_id.as_str());
    let e = entry(&entries, &drop_in_refused);
    assert_eq!(
        (&e["via"], &e["status"], &e["answered_by"], &e["code"]),
        (&json!("api"), &json!(403), &json!("hexbroker"), &json!("read_only_key"))
    );

    // The connection counts them (the 400 and both 403s and the 404 are errors).
    let shown = get_json(&app, &read_key, &format!("/v1/connections/{id}")).await;
    assert_eq!((&shown["calls_24h"], &shown["errors_24h"]), (&json!(7), &json!(4)), "{shown}");
    assert!(shown["last_error_at"].is_string());
    let listed = get_json(&app, &read_key, "/v1/connections").await;
    assert_eq!(listed["data"][0]["calls_24h"], 7);
}

async fn hexbroker_refusals_are_recorded_with_their_codes(backend: Backend) {
    let extra = [("HEXBROKER_PROXY_RETRY_BUDGET", "1ms")];
    let Some(app) = TestApp::start_with(backend, &extra).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read,connections:write").await;
    let response = app
        .http
        .patch(app.url(&format!("/v1/connections/{id}")))
        .bearer_auth(&key)
        .json(&json!({ "rate_limit_per_minute": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 200);
    let (status, limited) = proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 429);

    // Hex refuses the token: its 401 is relayed, then the connection turns invalid and
    // hexbroker answers 424 itself.
    app.fake.revoke_token(&token);
    let patch = json!({ "rate_limit_per_minute": null });
    let response =
        app.http.patch(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&key).json(&patch).send().await;
    assert_eq!(response.unwrap().status(), 200);
    let (status, unauthorized) = proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await;
    assert_eq!(status, 401);
    let started = Instant::now();
    let invalid = loop {
        let (status, request_id) = proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await;
        if status == 424 {
            break request_id;
        }
        assert!(started.elapsed() < DEADLINE, "never invalidated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entries = wait_for_entries(&app, &key, &format!("/v1/connections/{id}/requests?status=424"), 1).await;
    let e = entry(&entries, &invalid);
    assert_eq!(
        (&e["status"], &e["answered_by"], &e["code"], &e["hex_duration_ms"]),
        (&json!(424), &json!("hexbroker"), &json!("connection_invalid"), &Value::Null)
    );
    let all = wait_for_entries(&app, &key, &format!("/v1/connections/{id}/requests"), 4).await;
    let e = entry(&all, &limited);
    assert_eq!((&e["status"], &e["code"]), (&json!(429), &json!("connection_rate_limited")));
    let e = entry(&all, &unauthorized);
    assert_eq!((&e["status"], &e["answered_by"], &e["code"]), (&json!(401), &json!("hex"), &Value::Null));
}

/// Everything the request log's tables hold, as raw as the backend gives it: the SQLite files'
/// bytes (database and write-ahead log), or Postgres's text of every row.
async fn raw_dump(app: &TestApp) -> String {
    match &app.db.sqlite_file {
        Some(file) => {
            let mut bytes = std::fs::read(file).unwrap();
            let mut wal = file.clone().into_os_string();
            wal.push("-wal");
            bytes.extend(std::fs::read(wal).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar(
                "select r::text from request_log r union all select c::text from request_count c",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.join("\n")
        }
    }
}

async fn no_secret_query_string_header_or_body_reaches_the_log(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, hex_token) = app.connected(&app.key("connect").await).await;
    let (proxy_key, _) = key_with_id(&app, "default", "proxy,connections:read").await;
    let (drop_in, _) = connection_key(&app, &id, &["proxy"]).await;
    let canaries = ["CANARYQUERY", "CANARYHEADER", "CANARYBODY", "CANARYCOOKIE"];
    for (surface, key, extra) in [("/v1/proxy", &proxy_key, true), ("/api", &drop_in, false)] {
        for (method, path) in [
            (reqwest::Method::GET, "/v1/projects?token=CANARYQUERY&q=1"),
            (reqwest::Method::POST, "/v1/projects/x/runs?secret=CANARYQUERY"),
            (reqwest::Method::GET, "/v1/projects%2Fx?CANARYQUERY"),
        ] {
            let mut request = app
                .http
                .request(method, app.url(&format!("{surface}{path}")))
                .bearer_auth(key)
                .header("x-custom", "CANARYHEADER")
                .header("cookie", "s=CANARYCOOKIE")
                .body("{\"inputParams\": \"CANARYBODY\"}");
            if extra {
                request = request.header("connection-id", &id);
            }
            let _ = request.send().await.unwrap().bytes().await;
        }
    }
    wait_for_entries(&app, &proxy_key, &format!("/v1/connections/{id}/requests"), 6).await;
    let dump = raw_dump(&app).await;
    assert!(dump.contains("/v1/projects"), "the dump holds the entries");
    for secret in canaries.iter().copied().chain([hex_token.as_str(), proxy_key.as_str(), drop_in.as_str()]) {
        assert!(!dump.contains(secret), "{secret} is in the request log's raw storage");
    }
    let listed = get_json(&app, &proxy_key, &format!("/v1/connections/{id}/requests")).await.to_string();
    for secret in canaries.iter().copied().chain([hex_token.as_str(), proxy_key.as_str(), drop_in.as_str()]) {
        assert!(!listed.contains(secret), "{secret} is in the listed log");
    }
}

async fn filters_and_paging_select_the_right_entries(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let connect = app.key("connect").await;
    let (id, _) = app.connected(&connect).await;
    app.fake.add_workspace("globex");
    let other_token = app.fake.add_personal_token("globex", "bo@example.com");
    let other: Value = app
        .connect(&connect, json!({"subdomain": "globex", "token": other_token, "end_user_id": "u2"}))
        .await
        .json()
        .await
        .unwrap();
    let other = other["id"].as_str().unwrap().to_owned();
    let (key, _) = key_with_id(&app, "default", "proxy,connections:read").await;
    let admin = app.key("admin").await;
    let (drop_in, _) = connection_key(&app, &id, &["proxy:read"]).await;

    // An hour ago (by the app's clock): three good calls and a Hex 404.
    app.state.clock.advance(TimeDelta::hours(-1));
    for _ in 0..3 {
        assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    }
    let missing = "/v1/projects/00000000-0000-0000-0000-000000000000";
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, missing).await.0, 404);
    app.state.clock.advance(TimeDelta::hours(1));
    let now = app.state.clock.now();
    // Now: two drop-in calls, a refusal, and a call to the other connection.
    for _ in 0..2 {
        let response = app.http.get(app.url("/api/v1/projects")).bearer_auth(&drop_in).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/a%2Fb").await.0, 400);
    assert_eq!(proxied(&app, &key, &other, reqwest::Method::GET, "/v1/projects").await.0, 200);

    let mine = format!("/v1/connections/{id}/requests");
    let all = wait_for_entries(&app, &key, &mine, 7).await;
    assert_eq!(all.len(), 7);
    wait_for_entries(&app, &admin, "/v1/requests", 8).await;

    // Pages of three walk the whole list, newest first, without gaps or repeats.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{mine}?limit=3&cursor={c}"),
            None => format!("{mine}?limit=3"),
        };
        let page = get_json(&app, &key, &path).await;
        walked.extend(page["data"].as_array().unwrap().iter().map(|e| e["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, all.iter().map(|e| e["id"].clone()).collect::<Vec<_>>());

    let count = |query: &str| {
        let (app, key, mine) = (&app, &key, &mine);
        let query = query.to_owned();
        async move { get_json(app, key, &format!("{mine}?{query}")).await["data"].as_array().unwrap().len() }
    };
    assert_eq!(count("status=200").await, 5);
    assert_eq!(count("status=404").await, 1);
    assert_eq!(count("status=4xx").await, 2);
    assert_eq!(count("status=2XX").await, 5);
    assert_eq!(count("status=5xx").await, 0);
    assert_eq!(count("answered_by=hexbroker").await, 1);
    assert_eq!(count("answered_by=hex").await, 6);
    assert_eq!(count("via=api").await, 2);
    assert_eq!(count("via=proxy").await, 5);
    assert_eq!(count("via=mcp").await, 0);
    let half_hour_ago = (now - TimeDelta::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let since = url_escape(&half_hour_ago);
    assert_eq!(count(&format!("since={since}")).await, 3);
    assert_eq!(count(&format!("until={since}")).await, 4);
    assert_eq!(count(&format!("until={since}&status=404")).await, 1);
    assert_eq!(count(&format!("since={since}&until={since}")).await, 0);
    assert_eq!(count("status=200&via=proxy&limit=2").await, 2);

    // The admin list spans the tenant, or one connection.
    let everything = get_json(&app, &admin, "/v1/requests?limit=200").await;
    assert_eq!(everything["data"].as_array().unwrap().len(), 8);
    let theirs = get_json(&app, &admin, &format!("/v1/requests?connection_id={other}")).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["data"][0]["connection_id"], other.as_str());

    // Bad filters are 400 `invalid_query` (issue 19), never a 500; a control character in any of
    // the query's strings is the 422 of §5, checked first.
    for bad in [
        "status=abc",
        "status=600",
        "status=4x",
        "answered_by=nginx",
        "via=ftp",
        "since=yesterday",
        "until=2026-01-01",
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=nope",
        "colour=red",
        "status=4xx&status=5xx",
        "connection_id=00000000-0000-0000-0000-000000000000",
    ] {
        let response =
            app.http.get(app.url(&format!("{mine}?{bad}"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(error_code(response).await, (400, "invalid_query".into()), "{bad}");
    }
    for control in ["status=4%01x", "via=%7F", "limit=1%0A", "colour%00=red", "cursor=x%1F&limit=0"] {
        let response =
            app.http.get(app.url(&format!("{mine}?{control}"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(error_code(response).await, (422, "invalid_query".into()), "{control}");
    }
    for (bad, status) in [("connection_id=nope", 400), ("limit=500", 400), ("connection_id=%01", 422)] {
        let response =
            app.http.get(app.url(&format!("/v1/requests?{bad}"))).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(error_code(response).await, (status, "invalid_query".into()), "{bad}");
    }
    // The admin list needs admin.
    let response = app.http.get(app.url("/v1/requests")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(error_code(response).await.0, 403);

    // Connections by workspace.
    let listed = get_json(&app, &key, "/v1/connections?subdomain=globex").await;
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [other.as_str()]);
    let listed = get_json(&app, &key, "/v1/connections?subdomain=https://ACME.hex.tech/").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let listed = get_json(&app, &key, "/v1/connections?subdomain=-x-").await;
    assert_eq!(listed["data"], json!([]), "no workspace is called that");

    // Counts: all seven within 24 hours; a day on, none.
    let shown = get_json(&app, &key, &format!("/v1/connections/{id}")).await;
    assert_eq!((&shown["calls_24h"], &shown["errors_24h"]), (&json!(7), &json!(2)), "{shown}");
    app.state.clock.advance(TimeDelta::hours(25));
    let shown = get_json(&app, &key, &format!("/v1/connections/{id}")).await;
    assert_eq!((&shown["calls_24h"], &shown["errors_24h"]), (&json!(0), &json!(0)), "{shown}");
    assert!(shown["last_error_at"].is_string(), "the last error is kept beyond the day");
}

/// Percent-encodes what a query value cannot hold as it is (`+` and `:` in times).
fn url_escape(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn another_tenants_log_is_out_of_reach(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read").await;
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    wait_for_entries(&app, &key, &format!("/v1/connections/{id}/requests"), 1).await;

    let (outsider, _) = key_with_id(&app, "other", "connections:read,admin").await;
    let response = app
        .http
        .get(app.url(&format!("/v1/connections/{id}/requests")))
        .bearer_auth(&outsider)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (404, "not_found".into()));
    let theirs = get_json(&app, &outsider, "/v1/requests").await;
    assert_eq!(theirs["data"], json!([]));
    let theirs = get_json(&app, &outsider, &format!("/v1/requests?connection_id={id}")).await;
    assert_eq!(theirs["data"], json!([]));
    let response = app
        .http
        .get(app.url(&format!("/v1/connections/{}/requests", uuid::Uuid::now_v7())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (404, "not_found".into()));
}

/// The number of request log rows, read raw.
async fn stored_entries(app: &TestApp) -> i64 {
    match &app.db.sqlite_file {
        Some(_) => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from request_log").fetch_one(&pool).await.unwrap()
        }
        None => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from request_log").fetch_one(&pool).await.unwrap()
        }
    }
}

async fn wait_for_stored(app: &TestApp, what: &str, done: impl Fn(i64) -> bool) -> i64 {
    let started = Instant::now();
    loop {
        let n = stored_entries(app).await;
        if done(n) {
            return n;
        }
        assert!(started.elapsed() < DEADLINE, "{what}: {n} rows after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn old_entries_and_those_past_the_row_cap_are_pruned(backend: Backend) {
    let extra = [("HEXBROKER_REQUEST_LOG_MAX_ROWS", "3"), ("HEXBROKER_REQUEST_LOG_PRUNE_INTERVAL", "50ms")];
    let Some(app) = TestApp::start_with(backend, &extra).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read").await;
    let mut request_ids = Vec::new();
    for _ in 0..5 {
        // A second apart, so that "newest" is never a tie within a millisecond.
        app.state.clock.advance(TimeDelta::seconds(1));
        let (status, request_id) = proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await;
        assert_eq!(status, 200);
        request_ids.push(request_id);
    }
    // Five written (the counts say so), then cut to the newest three.
    let started = Instant::now();
    loop {
        let shown = get_json(&app, &key, &format!("/v1/connections/{id}")).await;
        if shown["calls_24h"] == 5 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "never counted: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_stored(&app, "the row cap", |n| n == 3).await;
    let kept = get_json(&app, &key, &format!("/v1/connections/{id}/requests")).await;
    let kept: Vec<&str> =
        kept["data"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    let newest: Vec<&str> = request_ids.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(kept, newest, "the newest are kept");

    // A week and a day on, the retention (7d by default) takes the rest.
    app.state.clock.advance(TimeDelta::days(8));
    wait_for_stored(&app, "the retention", |n| n == 0).await;
}

/// A database lock that holds the request log's writer still until dropped: an exclusive lock on
/// the table (Postgres), or the database's write lock (SQLite).
struct Blocked {
    release: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Blocked {
    async fn new(app: &TestApp) -> Self {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
        let url = app.db.url.clone();
        let sqlite = app.db.sqlite_file.is_some();
        let done = tokio::spawn(async move {
            use sqlx::Connection as _;
            if sqlite {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("begin immediate").execute(&mut conn).await.unwrap();
                let _ = locked.send(());
                let _ = released.await;
                sqlx::query("commit").execute(&mut conn).await.unwrap();
            } else {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                sqlx::query("lock table request_log in access exclusive mode")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let _ = locked.send(());
                let _ = released.await;
                tx.commit().await.unwrap();
            }
        });
        is_locked.await.unwrap();
        Self { release, done }
    }

    async fn release(self) {
        let _ = self.release.send(());
        self.done.await.unwrap();
    }
}

/// A counter's value in `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

async fn a_full_queue_drops_and_counts_without_slowing_calls(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_REQUEST_LOG_QUEUE", "2")]).await else {
        return;
    };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read").await;
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    wait_for_stored(&app, "the first entry", |n| n == 1).await;
    assert_eq!(metric(&app, "hexbroker_request_log_dropped_total").await, 0.0);

    // With the writer stuck on the database, calls go on: every one of them completes while the
    // lock is held, and what does not fit in the queue is dropped and counted.
    let blocked = Blocked::new(&app).await;
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "20 calls took {took:?} with the log's database blocked");
    let dropped = metric(&app, "hexbroker_request_log_dropped_total").await;
    // At most the queue (2) and the batch the writer took when it last woke (up to 3) wait.
    assert!(dropped >= 15.0, "{dropped} dropped");
    blocked.release().await;
    // What waited is written once the database is back (the writer may have given up on the batch
    // it held; what the queue held is written).
    let written = wait_for_stored(&app, "the queued entries", |n| n >= 3).await;
    assert!(written as f64 + dropped <= 21.0 + 0.5, "{written} written, {dropped} dropped");
}

async fn shutdown_writes_what_is_queued(backend: Backend) {
    let Some(mut app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read").await;
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    wait_for_stored(&app, "the first entry", |n| n == 1).await;

    // The writer is held on the database with entries queued behind it; the replica stops, the
    // database comes back within the grace period, and every entry is written before the stop
    // returns.
    let blocked = Blocked::new(&app).await;
    for _ in 0..5 {
        assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    }
    let background = app.background.take().unwrap();
    let stopping = tokio::spawn(background.stop());
    blocked.release().await;
    stopping.await.unwrap();
    assert_eq!(stored_entries(&app).await, 6);
}

async fn with_the_log_off_nothing_is_recorded(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_REQUEST_LOG", "off")]).await else { return };
    assert!(!app.state.proxy.request_log.is_on());
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = app.key("proxy,connections:read").await;
    assert_eq!(proxied(&app, &key, &id, reqwest::Method::GET, "/v1/projects").await.0, 200);
    let mut app = app;
    app.background.take().unwrap().stop().await;
    assert_eq!(stored_entries(&app).await, 0);
    let shown = get_json(&app, &key, &format!("/v1/connections/{id}")).await;
    assert_eq!(shown["calls_24h"], 0);
}

/// A Hex that answers `/slow` with its head and a first chunk at once, and the rest of the body
/// only when the test adds a permit to the gate; any other path answers `{"values": []}`.
async fn slow_body_hex() -> (String, std::sync::Arc<tokio::sync::Semaphore>) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let router = {
        let gate = gate.clone();
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let gate = gate.clone();
            async move {
                if !uri.path().ends_with("/slow") {
                    return axum::response::IntoResponse::into_response(axum::Json(json!({ "values": [] })));
                }
                let chunks = futures_util::stream::unfold(0, move |n| {
                    let gate = gate.clone();
                    async move {
                        match n {
                            0 => Some((
                                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"values\": [")),
                                1,
                            )),
                            1 => {
                                gate.acquire().await.unwrap().forget();
                                Some((Ok(bytes::Bytes::from_static(b"]}")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                axum::response::IntoResponse::into_response(axum::body::Body::from_stream(chunks))
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/{{subdomain}}"), gate)
}

async fn a_streamed_answer_is_recorded_when_its_body_ends(backend: Backend) {
    let (template, gate) = slow_body_hex().await;
    let Some(app) = TestApp::start_with(backend, &[("HEXBROKER_HEX_URL", &template)]).await else { return };
    let connect = app.key("connect").await;
    let response = app
        .connect(&connect, json!({"subdomain": "acme", "token": "hxtp_streaming", "end_user_id": "u1"}))
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let key = app.key("proxy,connections:read").await;
    let mut response = app
        .http
        .get(app.url("/v1/proxy/v1/slow"))
        .bearer_auth(&key)
        .header("connection-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"{"));
    // The body is held for a measured while after the head; the entry is written only once it
    // ends, and its duration covers the wait, while Hex's time to its head does not.
    let held = Duration::from_millis(600);
    tokio::time::sleep(held).await;
    assert_eq!(stored_entries(&app).await, 0, "not recorded before the body ends");
    gate.add_permits(1);
    while response.chunk().await.unwrap().is_some() {}
    let entries = wait_for_entries(&app, &key, &format!("/v1/connections/{id}/requests"), 1).await;
    let e = &entries[0];
    assert_eq!(
        (&e["status"], &e["answered_by"], &e["path"]),
        (&json!(200), &json!("hex"), &json!("/v1/slow"))
    );
    let duration = e["duration_ms"].as_i64().unwrap();
    let hex = e["hex_duration_ms"].as_i64().unwrap();
    assert!(duration >= held.as_millis() as i64, "{duration} ms");
    assert!(hex < held.as_millis() as i64, "{hex} ms to the head");
}

/// A batch written by the store reads back field for field, NULLs, non-ASCII paths, times before
/// Postgres's epoch and the hourly counts included (on Postgres the writer encodes its arrays
/// itself).
async fn a_written_batch_reads_back_exactly(backend: Backend) {
    use chrono::{DateTime, Utc};
    use hexbroker::store::{HourCount, NewRequest, RequestFilter};
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let connection_id: uuid::Uuid = id.parse().unwrap();
    let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
    let (early, late) = (at("1999-12-31T23:59:59.123456Z"), at("2026-12-07T10:11:12.345678Z"));
    let key_id = uuid::Uuid::now_v7();
    let rows = [
        NewRequest {
            id: hexbroker::store::id_with(early, 1),
            tenant: "default",
            connection_id,
            at: early,
            method: "GET",
            path: "/v1/projects/é ü",
            status: 200,
            answered_by: "hex",
            code: None,
            duration_ms: 0,
            hex_duration_ms: None,
            retries: 0,
            via: "proxy",
            key_id: None,
            request_id: None,
        },
        NewRequest {
            id: hexbroker::store::id_with(late, 2),
            tenant: "default",
            connection_id,
            at: late,
            method: "PATCH",
            path: "/",
            status: 429,
            answered_by: "hexbroker",
            code: Some("connection_rate_limited"),
            duration_ms: i64::MAX,
            hex_duration_ms: Some(-1),
            retries: i32::MAX,
            via: "mcp",
            key_id: Some(key_id),
            request_id: Some("req-1"),
        },
    ];
    let hour = at("2026-12-07T10:00:00Z");
    let counts = [HourCount { connection_id, hour, calls: 2, errors: 1, last_error_at: Some(late) }];
    app.state.store.insert_requests(&rows, &counts).await.unwrap();
    app.state.store.insert_requests(&rows[1..], &counts).await.unwrap_err(); // the same id twice
    let filter = RequestFilter { connection_id: Some(connection_id), limit: 10, ..Default::default() };
    let listed = app.state.store.list_requests("default", &filter).await.unwrap();
    let got: Vec<_> = listed
        .iter()
        .map(|r| {
            (
                (r.id, r.tenant.as_str(), r.connection_id, r.at, r.method.as_str(), r.path.as_str()),
                (r.status, r.answered_by.as_str(), r.code.as_deref(), r.duration_ms, r.hex_duration_ms),
                (r.retries, r.via.as_str(), r.key_id, r.request_id.as_deref()),
            )
        })
        .collect();
    let want: Vec<_> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                (r.id, r.tenant, r.connection_id, r.at, r.method, r.path),
                (r.status, r.answered_by, r.code, r.duration_ms, r.hex_duration_ms),
                (r.retries, r.via, r.key_id, r.request_id),
            )
        })
        .collect();
    assert_eq!(got, want);
    let counted = app.state.store.request_counts(&[connection_id], hour).await.unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(
        (counted[0].1.calls_24h, counted[0].1.errors_24h, counted[0].1.last_error_at),
        (2, 1, Some(late))
    );
}

on_both_backends!(
    each_surface_and_answer_kind_is_recorded_with_its_fields,
    hexbroker_refusals_are_recorded_with_their_codes,
    no_secret_query_string_header_or_body_reaches_the_log,
    filters_and_paging_select_the_right_entries,
    another_tenants_log_is_out_of_reach,
    old_entries_and_those_past_the_row_cap_are_pruned,
    a_full_queue_drops_and_counts_without_slowing_calls,
    shutdown_writes_what_is_queued,
    with_the_log_off_nothing_is_recorded,
    a_streamed_answer_is_recorded_when_its_body_ends,
    a_written_batch_reads_back_exactly,
);
