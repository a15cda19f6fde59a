//! MCP for AI agents (§14): `/mcp` over real sockets, against the fake Hex, on both backends;
//! the tools made from Hex's spec; and the official MCP Python SDK as an independent client.

use crate::common;

use common::{error_code, Backend, TestApp};
use hexbroker::mcp::{snake_case, Tools, HEX_SPEC};
use serde_json::{json, Value};

/// An MCP client over plain HTTP: a bearer credential, maybe a `Connection-Id`, and the session.
struct Mcp {
    http: reqwest::Client,
    url: String,
    token: String,
    connection: Option<String>,
    session: Option<String>,
}

impl Mcp {
    fn new(app: &TestApp, token: &str, connection: Option<&str>) -> Self {
        Self {
            http: app.http.clone(),
            url: app.url("/mcp"),
            token: token.to_owned(),
            connection: connection.map(str::to_owned),
            session: None,
        }
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, &self.url).bearer_auth(&self.token);
        if let Some(id) = &self.connection {
            request = request.header("connection-id", id);
        }
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        request.header("accept", "application/json, text/event-stream")
    }

    /// Posts one message; returns the status and the JSON body (`Null` when there is none).
    async fn post(&self, message: Value) -> (u16, Value) {
        let response = self.request(reqwest::Method::POST).json(&message).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with `method` and `params`; returns the status and the whole response.
    async fn rpc(&self, method: &str, params: Value) -> (u16, Value) {
        self.post(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})).await
    }

    /// `initialize` then `notifications/initialized`; keeps the session id.
    async fn initialize(&mut self) -> Value {
        let response = self
            .request(reqwest::Method::POST)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "tests", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        self.session = Some(response.headers()["mcp-session-id"].to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        let (status, _) = self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(status, 202);
        body["result"].clone()
    }

    /// `tools/call`; returns the result (panics on a JSON-RPC error).
    async fn call(&self, name: &str, arguments: Value) -> Value {
        let (status, body) = self.rpc("tools/call", json!({"name": name, "arguments": arguments})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("error").is_none(), "{body}");
        body["result"].clone()
    }

    async fn tool_names(&self) -> Vec<String> {
        let (status, body) = self.rpc("tools/list", json!({})).await;
        assert_eq!(status, 200, "{body}");
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Mints a connection key with `scopes` for connection `id`.
async fn connection_key(app: &TestApp, id: &str, scopes: &[&str]) -> String {
    let writer = app.key("connections:write,proxy").await;
    let response = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(writer)
        .json(&json!({"scopes": scopes, "name": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
}

/// The spec's operations as (method, operationId).
fn spec_operations() -> Vec<(String, String)> {
    let spec: Value = serde_json::from_str(HEX_SPEC).unwrap();
    let mut out = Vec::new();
    for (_, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                out.push((method.to_ascii_uppercase(), id.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_operation_of_the_spec_is_a_tool_with_a_valid_input_schema() {
    let tools = Tools::from_hex_spec(None).unwrap();
    let operations = spec_operations();
    assert!(operations.len() >= 50, "the carried spec has its operations");
    for (method, id) in &operations {
        let tool = tools.get(&snake_case(id)).unwrap_or_else(|| panic!("no tool for {id}"));
        assert_eq!(tool.method.as_str(), method);
        assert_eq!(tool.definition["annotations"]["readOnlyHint"], method == "GET", "{id}");
    }
    assert_eq!(tools.all().len(), operations.len(), "one tool per operation, no more");
    for tool in tools.all() {
        let schema = &tool.definition["inputSchema"];
        assert_eq!(schema["type"], "object", "{}", tool.name);
        let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("{}", tool.name));
        for required in schema["required"].as_array().unwrap() {
            assert!(properties.contains_key(required.as_str().unwrap()), "{}: {required}", tool.name);
        }
        for (param, _) in &tool.path_params {
            assert!(schema["required"].as_array().unwrap().contains(&json!(param)), "{}", tool.name);
        }
        // Self-contained: every reference points into its own `$defs`.
        let text = schema.to_string();
        for (at, _) in text.match_indices("\"$ref\":\"") {
            let target = &text[at + 8..];
            let target = &target[..target.find('"').unwrap()];
            let name = target.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("{}: {target}", tool.name));
            assert!(schema["$defs"].get(name).is_some(), "{}: {name} is not in $defs", tool.name);
        }
        assert!(!tool.path.contains('(') && !tool.path.contains('|'), "{}", tool.path);
        assert!(!tool.definition["description"].as_str().unwrap().is_empty());
    }
    let cancel = tools.get("cancel_run").unwrap();
    assert_eq!(cancel.definition["annotations"]["destructiveHint"], true);
    assert_eq!(cancel.definition["annotations"]["idempotentHint"], true);
    assert_eq!(tools.get("deactivate_user").unwrap().definition["annotations"]["destructiveHint"], true);
    assert_eq!(tools.get("run_project").unwrap().definition["annotations"]["idempotentHint"], false);
    // The spec's `semantic-(projects|models)` routes become a real path.
    let ingest = tools.get("ingest_semantic_project").unwrap();
    assert_eq!(ingest.path, "/v1/semantic-projects/{semanticProjectId}/ingest");
}

#[test]
fn hexbroker_mcp_tools_narrows_the_list_and_refuses_unknown_names() {
    let config = |value: &str| {
        hexbroker::Config::from_lookup(|k| match k {
            "HEXBROKER_MCP_TOOLS" => Some(value.to_owned()),
            "HEXBROKER_DATABASE_URL" => Some("sqlite::memory:".into()),
            _ => None,
        })
    };
    let error = config("list_projects, launch_rockets").unwrap_err();
    assert_eq!(error.var, "HEXBROKER_MCP_TOOLS");
    assert!(error.problem.contains("launch_rockets"), "{}", error.problem);
    let narrowed = config("list_projects,get_project").unwrap();
    assert_eq!(narrowed.mcp_tools.unwrap(), ["list_projects", "get_project"]);
}

async fn full_and_read_keys_list_their_tools(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let mut full = Mcp::new(&app, &connection_key(&app, &id, &["proxy"]).await, None);
    let init = full.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["capabilities"]["tools"], json!({"listChanged": false}));
    assert_eq!(init["serverInfo"]["name"], "hexbroker");
    let (status, pong) = full.rpc("ping", json!({})).await;
    assert_eq!((status, &pong["result"]), (200, &json!({})));

    let operations = spec_operations();
    let names = full.tool_names().await;
    assert_eq!(names.len(), operations.len());
    assert!(names.contains(&"run_project".to_owned()));

    // An API key with proxy:read and Connection-Id: the read-only tools alone.
    let mut read = Mcp::new(&app, &app.key("proxy:read").await, Some(&id));
    let init = read.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-06-18");
    let names = read.tool_names().await;
    let gets = operations.iter().filter(|(m, _)| m == "GET").count();
    assert_eq!(names.len(), gets);
    assert!(names.contains(&"list_projects".to_owned()) && !names.contains(&"run_project".to_owned()));

    // Version negotiation: 2025-03-26 is served as asked, an unknown one gets the newest.
    for (asked, got) in [("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-06-18")] {
        let (status, body) = full
            .rpc("initialize", json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["result"]["protocolVersion"], got);
    }

    // HEXBROKER_MCP_TOOLS narrows what a replica offers.
    let narrow = app.second_broker(&[("HEXBROKER_MCP_TOOLS", "list_projects,get_project")]).await;
    let mut other = Mcp::new(&app, &full.token, None);
    other.url = format!("{narrow}/mcp");
    other.initialize().await;
    assert_eq!(other.tool_names().await, ["list_projects", "get_project"]);
}

async fn tool_calls_reach_hex_through_the_proxy(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    app.fake.add_project("acme", "Weekly");
    let mut mcp = Mcp::new(&app, &connection_key(&app, &id, &["proxy"]).await, None);
    mcp.initialize().await;
    app.fake.clear_requests();

    let listed = mcp.call("list_projects", json!({"limit": 1})).await;
    assert_ne!(listed["isError"], true, "{listed}");
    assert_eq!(listed["structuredContent"]["values"].as_array().unwrap().len(), 1);
    let text: Value = serde_json::from_str(listed["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, listed["structuredContent"]);

    let run = mcp.call("run_project", json!({"projectId": project, "body": {}})).await;
    assert_ne!(run["isError"], true, "{run}");
    let run_id = run["structuredContent"]["runId"].as_str().unwrap().to_owned();
    // Hex's own API links are rewritten to hexbroker's drop-in surface (the proxy's rule), where
    // the same connection key works: the agent never gets a URL that would send it to Hex.
    let status_url = run["structuredContent"]["runStatusUrl"].as_str().unwrap();
    assert!(status_url.contains(&format!("/api/v1/projects/{project}/runs/{run_id}")), "{status_url}");
    assert!(!status_url.contains(&app.fake_addr.to_string()), "{status_url}");
    let status = mcp.call("get_run_status", json!({"projectId": project, "runId": run_id})).await;
    assert_eq!(status["structuredContent"]["runId"], run_id.as_str());
    let cancelled = mcp.call("cancel_run", json!({"projectId": project, "runId": run_id})).await;
    assert_ne!(cancelled["isError"], true, "{cancelled}");
    assert_eq!(app.fake.run_status("acme", &run_id).map(|s| format!("{s:?}")).as_deref(), Some("Killed"));

    // Hex's 404: an error result carrying Hex's status and body.
    let missing = mcp.call("get_project", json!({"projectId": "00000000-0000-0000-0000-000000000000"})).await;
    assert_eq!(missing["isError"], true);
    assert_eq!(missing["structuredContent"]["error"]["answered_by"], "hex");
    assert_eq!(missing["structuredContent"]["error"]["status"], 404);

    // The spec's odd `semantic-(projects|models)` path reaches Hex as a real path.
    let semantic = app.fake.add_semantic_project("acme", "Sales", &["orders"], &["v"]);
    mcp.call("ingest_semantic_project", json!({"semanticProjectId": semantic, "body": {}})).await;

    let requests = app.fake.requests();
    let paths: Vec<(String, String)> = requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(paths[0], ("GET".into(), "/acme/api/v1/projects".into()));
    assert_eq!(requests[0].query.as_deref(), Some("limit=1"));
    assert!(paths.contains(&("POST".into(), format!("/acme/api/v1/projects/{project}/runs"))), "{paths:?}");
    assert!(paths.contains(&("DELETE".into(), format!("/acme/api/v1/projects/{project}/runs/{run_id}"))));
    assert!(paths.contains(&("POST".into(), format!("/acme/api/v1/semantic-projects/{semantic}/ingest"))));
    for request in &requests {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {token}").as_str()));
    }
    // No result carries the Hex token or the key.
    for result in [&listed, &run, &status, &cancelled, &missing] {
        let text = result.to_string();
        assert!(!text.contains(&token) && !text.contains(&mcp.token), "a secret in {text}");
    }

    // An answer over 1 MiB is not cut: the result says it is too large.
    let big = format!("{{\"values\": [\"{}\"]}}", "x".repeat(1024 * 1024));
    app.fake.answer_next(1, 200, &[("content-type", "application/json")], &big);
    let large = mcp.call("list_projects", json!({})).await;
    assert_eq!(large["isError"], true);
    assert!(large["content"][0]["text"].as_str().unwrap().contains("more than 1048576 bytes"), "{large}");
    assert!(large.get("structuredContent").is_none());

    // The proxy's metrics count the calls.
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"hexbroker_hex_responses_total{method="DELETE",status="204"} 1"#),
        "{metrics}"
    );

    // The request log has each tool call, as an MCP call with its Hex path (§11).
    let reader = app.key("connections:read").await;
    let url = app.url(&format!("/v1/connections/{id}/requests?via=mcp&limit=200"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logged = loop {
        let page: Value = app.http.get(&url).bearer_auth(&reader).send().await.unwrap().json().await.unwrap();
        let entries = page["data"].as_array().cloned().unwrap_or_default();
        if entries.iter().any(|e| e["method"] == "DELETE") || std::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(logged.iter().all(|e| e["via"] == "mcp"), "{logged:?}");
    let cancel =
        logged.iter().find(|e| e["method"] == "DELETE").expect("the cancel_run call is in the request log");
    assert_eq!(cancel["path"], format!("/v1/projects/{project}/runs/{run_id}"));
    assert_eq!(cancel["status"], 204);
    assert_eq!(cancel["answered_by"], "hex");
    assert!(logged.iter().any(|e| e["path"] == "/v1/projects" && e["method"] == "GET"), "{logged:?}");
}

async fn refusals_send_nothing_to_hex(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else { return };
    let (id, token) = app.connected(&app.key("connect").await).await;
    let project = app.fake.add_project("acme", "Daily");
    let mut read = Mcp::new(&app, &connection_key(&app, &id, &["proxy:read"]).await, None);
    read.initialize().await;
    let mut full = Mcp::new(&app, &connection_key(&app, &id, &["proxy"]).await, None);
    full.initialize().await;
    app.fake.clear_requests();

    // A read key on run_project: refused by hexbroker, named so.
    let refused = read.call("run_project", json!({"projectId": project, "body": {}})).await;
    assert_eq!(refused["isError"], true);
    assert_eq!(refused["structuredContent"]["error"]["code"], "read_only_key");

    // Bad arguments: invalid params, nothing sent.
    for arguments in [
        json!({"runId": "r"}),
        json!({"projectId": 5, "runId": "r"}),
        json!({"projectId": "p", "runId": "r", "extra": true}),
        json!({"projectId": "..", "runId": "r"}),
        json!("not an object"),
    ] {
        let (status, body) =
            full.rpc("tools/call", json!({"name": "get_run_status", "arguments": arguments})).await;
        assert_eq!(status, 200);
        assert_eq!(body["error"]["code"], -32602, "{arguments}: {body}");
    }
    let (_, body) = full.rpc("tools/call", json!({"name": "launch_rockets", "arguments": {}})).await;
    assert_eq!(body["error"]["code"], -32602);
    let (_, body) = full.rpc("resources/list", json!({})).await;
    assert_eq!(body["error"]["code"], -32601);
    let response = full.request(reqwest::Method::POST).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], -32700);
    for bad in [
        json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"}),
        json!({"jsonrpc": "2.0", "id": 1}),
        json!({"jsonrpc": "2.0", "id": 1, "result": "not an object"}),
        json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
    ] {
        let (status, body) = full.post(bad.clone()).await;
        assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)), "{bad}");
    }
    assert!(app.fake.requests().is_empty(), "nothing reached Hex");

    // An invalid connection: 424 connection_invalid from hexbroker, Hex not called.
    app.fake.revoke_token(&token);
    let seen = full.call("list_projects", json!({})).await;
    assert_eq!(seen["structuredContent"]["error"]["status"], 401, "Hex's own 401 first: {seen}");
    let admin = app.key("connections:read").await;
    let started = std::time::Instant::now();
    loop {
        let shown: Value = app
            .http
            .get(app.url(&format!("/v1/connections/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["status"] == "invalid" {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "never invalidated");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.fake.clear_requests();
    let invalid = full.call("list_projects", json!({})).await;
    assert_eq!(invalid["isError"], true);
    assert_eq!(invalid["structuredContent"]["error"]["answered_by"], "hexbroker");
    assert_eq!(invalid["structuredContent"]["error"]["code"], "connection_invalid");
    assert_eq!(invalid["structuredContent"]["error"]["status"], 424);
    assert!(app.fake.requests().is_empty());
}

async fn origin_credentials_and_sessions_are_checked(backend: Backend) {
    let allowed = [("HEXBROKER_ALLOWED_ORIGINS", "https://agent.example.com")];
    let Some(app) = TestApp::start_with(backend, &allowed).await else { return };
    let (id, _) = app.connected(&app.key("connect").await).await;
    let key = connection_key(&app, &id, &["proxy"]).await;
    let mut mcp = Mcp::new(&app, &key, None);

    // A foreign Origin (DNS rebinding): 403 before anything else; an allowed origin passes.
    let foreign =
        mcp.request(reqwest::Method::POST).header("origin", "https://evil.example").json(&json!({})).send();
    assert_eq!(error_code(foreign.await.unwrap()).await, (403, "origin_not_allowed".into()));
    let own = mcp
        .request(reqwest::Method::POST)
        .header("origin", "https://agent.example.com")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);

    // No or a wrong credential: 401 with WWW-Authenticate: Bearer.
    for bearer in [None, Some("hxbc_wrong")] {
        let mut request =
            app.http.post(app.url("/mcp")).json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_code(response).await.0, 401);
    }
    // An API key must name the connection, and hold a proxy scope.
    let no_connection = Mcp::new(&app, &app.key("proxy").await, None);
    let response = no_connection.request(reqwest::Method::POST).json(&json!({})).send().await.unwrap();
    assert_eq!(error_code(response).await, (400, "missing_connection_id".into()));
    let unscoped = Mcp::new(&app, &app.key("connections:read").await, Some(&id));
    let response = unscoped.request(reqwest::Method::POST).json(&json!({})).send().await.unwrap();
    assert_eq!(error_code(response).await.0, 403);

    // Sessions: optional (the credential is on every request), but one that is sent must be
    // live and the caller's: forged → 404, another key's → 404.
    let (status, _) = mcp.rpc("tools/list", json!({})).await;
    assert_eq!(status, 200);
    mcp.session = Some(format!("{}.{}", "a".repeat(32), "b".repeat(32)));
    assert_eq!(mcp.rpc("tools/list", json!({})).await.0, 404);
    mcp.initialize().await;
    let session = mcp.session.clone();
    let mut other = Mcp::new(&app, &connection_key(&app, &id, &["proxy"]).await, None);
    other.session = session.clone();
    assert_eq!(other.rpc("tools/list", json!({})).await.0, 404);

    // GET offers no stream: 405, naming what is allowed.
    let get = mcp.request(reqwest::Method::GET).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert!(get.headers()["allow"].to_str().unwrap().contains("POST"));

    // A session works on another replica (nothing is kept in memory) ...
    let second = app.second_broker(&[]).await;
    let mut elsewhere = Mcp::new(&app, &key, None);
    elsewhere.url = format!("{second}/mcp");
    elsewhere.session = session.clone();
    assert_eq!(elsewhere.rpc("ping", json!({})).await.0, 200);
    // ... and once ended (DELETE), it is gone on every replica.
    let ended = mcp.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(ended.status(), 204);
    assert_eq!(mcp.rpc("ping", json!({})).await.0, 404);
    assert_eq!(elsewhere.rpc("ping", json!({})).await.0, 404);
    assert_eq!(mcp.request(reqwest::Method::DELETE).send().await.unwrap().status(), 404);
    mcp.session = None;
    assert_eq!(mcp.request(reqwest::Method::DELETE).send().await.unwrap().status(), 400);
    // A response of the client's (to a request hexbroker never makes) is accepted and ignored.
    assert_eq!(mcp.post(json!({"jsonrpc": "2.0", "id": 3, "result": {}})).await.0, 202);
}

on_both_backends!(
    full_and_read_keys_list_their_tools,
    tool_calls_reach_hex_through_the_proxy,
    refusals_send_nothing_to_hex,
    origin_credentials_and_sessions_are_checked,
);

/// The MCP Inspector's command-line mode (npm `@modelcontextprotocol/inspector`, which `.ci/run`
/// installs), a second client written apart from the Python SDK, lists the tools for both kinds
/// of key and calls one through hexbroker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_cli_lists_and_calls_tools() {
    let cli =
        std::env::var("HEXBROKER_TEST_MCP_INSPECTOR").ok().filter(|p| std::path::Path::new(p).is_file());
    let Some(cli) = cli else {
        common::skip(
            "the MCP Inspector test",
            "set HEXBROKER_TEST_MCP_INSPECTOR to the inspector's cli/build/index.js (npm @modelcontextprotocol/inspector)",
        );
        return;
    };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (id, token) = app.connected(&app.key("connect").await).await;
    app.fake.add_project("acme", "Daily");
    app.fake.add_project("acme", "Weekly");
    let full = connection_key(&app, &id, &["proxy"]).await;
    let read = app.key("proxy:read").await;
    let url = app.url("/mcp");
    let inspector = |args: &[&str]| {
        let mut command = tokio::process::Command::new("node");
        command.arg(&cli).arg(&url).args(["--transport", "http"]).args(args);
        async move {
            let output = command.output().await.unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "the inspector failed: {stderr}");
            serde_json::from_slice::<Value>(output.stdout.trim_ascii())
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
        }
    };
    let names = |listed: &Value| -> Vec<String> {
        listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    app.fake.clear_requests();

    let full_auth = format!("Authorization: Bearer {full}");
    let listed = inspector(&["--header", &full_auth, "--method", "tools/list"]).await;
    let full_tools = names(&listed);
    assert_eq!(full_tools.len(), spec_operations().len(), "{full_tools:?}");
    assert!(full_tools.contains(&"run_project".to_owned()));

    let read_auth = format!("Authorization: Bearer {read}");
    let connection = format!("Connection-Id: {id}");
    let listed = inspector(&["--header", &read_auth, &connection, "--method", "tools/list"]).await;
    let read_tools = names(&listed);
    assert!(read_tools.contains(&"list_projects".to_owned()), "{read_tools:?}");
    assert!(!read_tools.contains(&"run_project".to_owned()), "{read_tools:?}");

    let called = inspector(&[
        "--header",
        &full_auth,
        "--method",
        "tools/call",
        "--tool-name",
        "list_projects",
        "--tool-arg",
        "limit=1",
    ])
    .await;
    assert_ne!(called["isError"], true, "{called}");
    assert_eq!(called["structuredContent"]["values"].as_array().unwrap().len(), 1, "{called}");

    let requests = app.fake.requests();
    assert_eq!(requests.len(), 1, "listing tools reaches no Hex; the call does, once");
    assert_eq!(requests[0].path, "/acme/api/v1/projects");
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {token}").as_str()));
}

/// The official MCP Python SDK (`mcp` from PyPI, in the venv `.ci/run` makes) drives `/mcp`
/// with its streamable HTTP client: initialize, list, call, a read key refused, bad arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_mcp_python_sdk_works_against_hexbroker() {
    let python = std::env::var("HEXBROKER_TEST_PYTHON").ok().filter(|python| {
        std::process::Command::new(python)
            .args(["-c", "import mcp"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        common::skip("the MCP Python SDK test", "set HEXBROKER_TEST_PYTHON to a Python with mcp installed");
        return;
    };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (id, token) = app.connected(&app.key("connect").await).await;
    app.fake.set_run_durations(std::time::Duration::from_secs(5), std::time::Duration::from_secs(30));
    let project = app.fake.add_project("acme", "Daily");
    let full = connection_key(&app, &id, &["proxy"]).await;
    // The read key is an API key naming the connection in Connection-Id.
    let read = app.key("proxy:read").await;
    app.fake.clear_requests();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mcp_walk.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("MCP_URL", app.url("/mcp"))
        .env("MCP_TOKEN", &full)
        .env("MCP_READ_TOKEN", &read)
        .env("MCP_READ_CONNECTION", &id)
        .env("PROJECT_ID", &project)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client failed: {stderr}");
    let seen: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    let full = &seen["full"];
    assert_eq!(full["protocol_version"], "2025-06-18");
    assert_eq!(full["server"], "hexbroker");
    assert_eq!(full["tools"].as_array().unwrap().len(), spec_operations().len());
    assert_eq!(full["run_read_only_hint"], json!([true]));
    assert_eq!(full["list_projects"]["is_error"], false);
    assert_eq!(full["list_projects"]["structured"]["values"].as_array().unwrap().len(), 1);
    assert_eq!(full["run_project"]["is_error"], false);
    assert_eq!(full["get_run_status"]["status"], "PENDING", "{seen}");
    assert_eq!(full["cancel_run"]["is_error"], false);
    assert!(full["bad_arguments"].as_str().unwrap().contains("Invalid params"), "{seen}");
    let read = &seen["read"];
    assert!(!read["tools"].as_array().unwrap().contains(&json!("run_project")));
    assert_eq!(read["run_project"]["is_error"], true, "{seen}");
    let requests = app.fake.requests();
    assert_eq!(
        requests.iter().filter(|r| r.method == "POST").count(),
        1,
        "only the full key's run reached Hex"
    );
    assert!(requests.iter().all(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())));
}

#[test]
fn the_readme_lists_every_tool_and_who_sees_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let tools = Tools::from_hex_spec(None).unwrap();
    for tool in tools.all() {
        let read = if tool.read_only { "yes" } else { "no" };
        let row = format!("| `{}` | `{} {}` | {read} |", tool.name, tool.method, tool.path);
        assert!(readme.contains(&row), "README.md's MCP table lacks: {row}");
    }
    let gets = tools.all().iter().filter(|t| t.read_only).count();
    let counts = format!("({} for a `proxy` key, {gets} for a `proxy:read` key;", tools.all().len());
    assert!(readme.contains(&counts), "README.md's MCP counts are stale: {counts}");
}
