//! `openapi.yaml` against the code: the same routes, the same shapes, the same error codes.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Backend, TestApp};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The methods axum's `any` serves that the spec lists, one operation each.
const ANY_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// The keys of an OpenAPI path item that are operations.
const OPERATION_KEYS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

type Operations = BTreeSet<(String, String)>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn spec() -> Yaml {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).expect("read openapi.yaml");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

/// The spec as JSON, which is easier to walk.
fn spec_json() -> Json {
    serde_json::to_value(spec()).expect("openapi.yaml converts to JSON")
}

/// Every (METHOD, path) the spec describes.
fn spec_operations(spec: &Yaml) -> Operations {
    let paths = spec.get("paths").and_then(Yaml::as_mapping).expect("the spec has paths");
    let mut operations = Operations::new();
    for (path, item) in paths {
        let path = path.as_str().expect("paths are strings");
        let item = item.as_mapping().expect("path items are mappings");
        for key in item.keys().filter_map(Yaml::as_str) {
            if OPERATION_KEYS.contains(&key) {
                operations.insert((key.to_ascii_uppercase(), path.to_owned()));
            }
        }
    }
    operations
}

/// The text of the balanced `( … )` or `{ … }` starting at `open` (which is a `(` or `{`),
/// skipping string literals and `//` comments.
fn balanced(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (opening, closing) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("balanced: byte {open} is {:?}, not `(` or `{{`", other as char),
    };
    let (mut depth, mut in_string, mut escaped, mut in_comment) = (0usize, false, false, false);
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_comment {
            in_comment = b != b'\n';
            continue;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'/' if bytes.get(i + 1) == Some(&b'/') => in_comment = true,
            b if b == opening => depth += 1,
            b if b == closing => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced {:?} after byte {open}", opening as char);
}

/// The first string literal in `text`, if any.
fn first_literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}

/// Byte offsets where `needle` starts as a whole identifier (not preceded by an identifier char).
fn calls<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(needle).map(|(i, _)| i).filter(move |&i| {
        !text[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Every (METHOD, path) the router in `src/routes/mod.rs` serves, read from its source: the
/// `.route(` calls in `fn router` and in the functions of the same file whose routers it
/// `.merge(`s. Anything it cannot see (a merge of a router built elsewhere, `.nest`, a service)
/// fails the test, as does a `.route(` call outside the functions it reads.
fn router_operations() -> Operations {
    let source = std::fs::read_to_string(root().join("src/routes/mod.rs")).expect("read src/routes/mod.rs");
    read_router(&source)
}

/// [`router_operations`] of the text of `src/routes/mod.rs`.
fn read_router(source: &str) -> Operations {
    for unsupported in [".nest(", ".nest_service(", ".route_service(", ".on("] {
        assert!(
            !source.contains(unsupported),
            "src/routes/mod.rs uses `{unsupported}`: teach tests/it/openapi.rs to read it"
        );
    }
    let mut operations = Operations::new();
    let mut read = BTreeSet::new();
    let mut routes_read = 0;
    let mut pending = vec!["router".to_owned()];
    while let Some(function) = pending.pop() {
        if !read.insert(function.clone()) {
            continue;
        }
        let body = function_body(source, &function).unwrap_or_else(|| {
            panic!("src/routes/mod.rs has no `fn {function}(` for tests/it/openapi.rs to read")
        });
        for at in body.match_indices(".merge(").map(|(i, _)| i) {
            let merged = balanced(body, at + ".merge".len()).trim();
            let callee = local_call(merged).filter(|f| function_body(source, f).is_some());
            let callee = callee.unwrap_or_else(|| {
                panic!(
                    "src/routes/mod.rs merges `{merged}`: tests/it/openapi.rs reads only merges of a router \
                     that a function in src/routes/mod.rs builds from `.route(` calls; teach it this one"
                )
            });
            pending.push(callee.to_owned());
        }
        for at in body.match_indices(".route(").map(|(i, _)| i) {
            routes_read += 1;
            route_operations(balanced(body, at + ".route".len()), &mut operations);
        }
    }
    assert_eq!(
        routes_read,
        source.matches(".route(").count(),
        "src/routes/mod.rs has `.route(` calls outside `fn router` and the functions it merges \
         ({read:?}): teach tests/it/openapi.rs where they are served"
    );
    assert!(!operations.is_empty(), "no .route( calls found in src/routes/mod.rs");
    operations
}

/// The (METHOD, path) pairs of one `.route(` call, given the text between its parentheses.
fn route_operations(args: &str, operations: &mut Operations) {
    let path = first_literal(args).expect("a .route( call names its path as a literal");
    let path = openapi_path(path);
    let mut methods = BTreeSet::new();
    for (function, method) in [
        ("get(", "GET"),
        ("post(", "POST"),
        ("put(", "PUT"),
        ("patch(", "PATCH"),
        ("delete(", "DELETE"),
        ("head(", "HEAD"),
        ("options(", "OPTIONS"),
        ("trace(", "TRACE"),
    ] {
        if calls(args, function).next().is_some() {
            methods.insert(method);
        }
    }
    if calls(args, "any(").next().is_some() {
        methods.extend(ANY_METHODS);
    }
    for unsupported in ["connect(", "on(", "on_service(", "get_service(", "post_service(", "any_service("] {
        assert!(
            calls(args, unsupported).next().is_none(),
            "teach tests/it/openapi.rs `{unsupported}` ({path})"
        );
    }
    assert!(!methods.is_empty(), "no method found for route {path}");
    for method in methods {
        operations.insert((method.to_owned(), path.clone()));
    }
}

/// The body (between its braces) of `fn name(` in `source`, if `source` defines it.
fn function_body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("fn {name}(");
    let at = calls(source, &needle).next()?;
    let parameters = at + needle.len() - 1;
    let after = parameters + balanced(source, parameters).len() + 2;
    let open = after + source[after..].find('{')?;
    Some(balanced(source, open))
}

/// `name` when `expression` is a call `name(…)` of a plain (unqualified) function.
fn local_call(expression: &str) -> Option<&str> {
    let end = expression.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    (end > 0 && expression[end..].starts_with('(')).then_some(&expression[..end])
}

/// axum's `{*rest}` wildcard is OpenAPI's `{rest}`.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

fn show(operations: &Operations) -> String {
    operations.iter().map(|(m, p)| format!("\n  {m} {p}")).collect()
}

#[test]
fn the_spec_and_the_router_name_the_same_routes() {
    let spec = spec_operations(&spec());
    let router = router_operations();
    let only_spec: Operations = spec.difference(&router).cloned().collect();
    let only_router: Operations = router.difference(&spec).cloned().collect();
    assert!(
        only_spec.is_empty() && only_router.is_empty(),
        "openapi.yaml and src/routes/mod.rs disagree.\nIn the spec but not served:{}\nServed but not in the spec:{}",
        show(&only_spec),
        show(&only_router),
    );
}

#[test]
fn the_router_reader_refuses_what_it_cannot_see() {
    let read = |source: &str| std::panic::catch_unwind(|| read_router(source));
    let helper = r#"
        fn browser(state: &AppState) -> Router<AppState> {
            // A comment with a "quote" and a { brace.
            Router::new().route("/v1/connect", post(connect::connect).options(preflight))
        }
        pub fn router(state: AppState) -> Router {
            Router::new().route("/healthz", get(health::healthz)).merge(browser(&state)).ROUTES
        }
    "#;
    let served = read(&helper.replace("ROUTES", r#"route("/api/{*path}", any(proxy::drop_in))"#))
        .expect("a merge of a router built in the same file is read");
    let expected: Operations = [("GET", "/healthz"), ("POST", "/v1/connect"), ("OPTIONS", "/v1/connect")]
        .into_iter()
        .chain(ANY_METHODS.iter().map(|m| (*m, "/api/{path}")))
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(served, expected);
    for unreadable in [
        r#"merge(proxy::routes())"#,
        r#"merge(Router::new().route("/x", get(x)))"#,
        r#"merge(elsewhere(&state))"#,
        r#"nest("/v2", browser(&state))"#,
        r#"route_service("/x", service)"#,
        r#"route("/x", get(x).connect(y))"#,
        r#"route("/x", on(MethodFilter::GET, x))"#,
    ] {
        assert!(read(&helper.replace("ROUTES", unreadable)).is_err(), "read `{unreadable}`");
    }
    let unmerged = format!("fn other() -> Router {{ Router::new().route(\"/x\", get(x)) }}\n{helper}");
    assert!(read(&unmerged.replace("ROUTES", "fallback(f)")).is_err(), "read a router that is not merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_operation_is_served() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let admin = app.key("admin").await;
    let operations = spec_operations(&spec());
    assert!(operations.len() >= 10, "the spec lists its operations");
    let mut unserved = Vec::new();
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{key_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{path}", "v1/projects");
        assert!(!concrete.contains('{'), "teach this test the parameters of {path}");
        let response = app
            .http
            .request(method.parse().unwrap(), app.url(&concrete))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(response.headers().contains_key("x-request-id"), "{method} {path}: no x-request-id");
        let code = if method == "HEAD" {
            None
        } else {
            response.json::<Json>().await.ok().and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
        };
        let refused = match (status, code.as_deref()) {
            (405, _) => true,
            (404, Some("route_not_found")) => true,
            // A HEAD answer has no body to tell a missing route from a missing connection.
            (404, None) if method == "HEAD" => true,
            _ => false,
        };
        if refused {
            unserved.push(format!("{method} {path} → {status} {code:?}"));
        }
    }
    assert!(unserved.is_empty(), "the spec lists operations the app does not serve: {unserved:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_spec_is_the_file() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let response = app.http.get(app.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let served = response.bytes().await.unwrap();
    let file = std::fs::read(root().join("openapi.yaml")).unwrap();
    assert!(served[..] == file[..], "GET /openapi.yaml serves a different text than openapi.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_every_field_the_spec_requires() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let (id, _) = app.connected(&app.key("connect").await).await;
    let read = app.key("connections:read").await;
    let response =
        app.http.get(app.url(&format!("/v1/connections/{id}"))).bearer_auth(&read).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let connection: Json = response.json().await.unwrap();
    let connection = connection.as_object().expect("a connection is a JSON object");

    let spec = spec_json();
    let schema = &spec["components"]["schemas"]["Connection"];
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .expect("Connection lists required")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let listed: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("Connection lists properties")
        .keys()
        .map(String::as_str)
        .collect();
    let present: BTreeSet<&str> = connection.keys().map(String::as_str).collect();

    let missing: Vec<_> = required.difference(&present).collect();
    assert!(missing.is_empty(), "the spec requires fields the connection lacks: {missing:?}");
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(unlisted.is_empty(), "the connection has fields the spec does not list: {unlisted:?}");
    let undefined: Vec<_> = required.difference(&listed).collect();
    assert!(undefined.is_empty(), "the spec requires fields it does not describe: {undefined:?}");

    let problems = check(&spec, &Json::Object(connection.clone()), schema, "connection");
    assert!(problems.is_empty(), "the connection does not fit the Connection schema: {problems:#?}");

    let page: Json = app
        .http
        .get(app.url("/v1/connections"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    let problems = check(&spec, &page, &spec["components"]["schemas"]["ConnectionPage"], "page");
    assert!(problems.is_empty(), "the list does not fit the ConnectionPage schema: {problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_match_the_error_schema() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let spec = spec_json();
    let schema = &spec["components"]["schemas"]["Error"];
    let required: Vec<&str> =
        schema["required"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    let inner = &schema["properties"]["error"];
    let inner_required: Vec<&str> =
        inner["required"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    assert_eq!(required, ["error"]);
    assert_eq!(inner_required, ["code", "message"]);

    let unauthorized = app.http.get(app.url("/v1/connections")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(unauthorized.headers()["www-authenticate"], "Bearer");
    let read = app.key("connections:read").await;
    let missing = app
        .http
        .get(app.url(&format!("/v1/connections/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    for (response, expected) in [(unauthorized, "unauthorized"), (missing, "not_found")] {
        assert!(response.headers().contains_key("x-request-id"));
        let body: Json = response.json().await.expect("error bodies are JSON");
        for field in &required {
            assert!(body.get(field).is_some(), "{expected}: the body lacks `{field}`: {body}");
        }
        for field in &inner_required {
            assert!(
                body["error"].get(field).is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())),
                "{expected}: the body lacks `error.{field}`: {body}"
            );
        }
        assert_eq!(body["error"]["code"], expected);
        let problems = check(&spec, &body, schema, expected);
        assert!(problems.is_empty(), "the {expected} body does not fit the Error schema: {problems:#?}");
    }
}

#[test]
fn the_spec_lists_exactly_the_error_codes_the_code_answers() {
    let spec = spec_json();
    let listed: BTreeSet<String> = spec["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .expect("Error.code lists its codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let answered = source_error_codes();
    let unlisted: Vec<_> = answered.difference(&listed).collect();
    let unanswered: Vec<_> = listed.difference(&answered).collect();
    assert!(
        unlisted.is_empty() && unanswered.is_empty(),
        "Error.code in openapi.yaml and the code disagree.\nAnswered but not listed: {unlisted:?}\nListed but never answered: {unanswered:?}"
    );
}

#[test]
fn every_spec_response_documents_x_request_id() {
    let spec = spec_json();
    let mut lacking = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !OPERATION_KEYS.contains(&method.as_str()) {
                continue;
            }
            for (status, response) in operation["responses"].as_object().expect("operations list responses") {
                let response = resolve(&spec, response);
                if response["headers"]["x-request-id"].is_null() {
                    lacking.push(format!("{method} {path} {status}"));
                }
                if status == "401" && response["headers"]["WWW-Authenticate"].is_null() {
                    lacking.push(format!("{method} {path} 401 (WWW-Authenticate)"));
                }
            }
        }
    }
    assert!(lacking.is_empty(), "responses without their headers documented: {lacking:#?}");
}

#[test]
fn every_path_parameter_is_declared() {
    let spec = spec_json();
    let mut problems = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, operation) in item.as_object().unwrap() {
            if !OPERATION_KEYS.contains(&method.as_str()) {
                continue;
            }
            let own = operation["parameters"].as_array().cloned().unwrap_or_default();
            let mut declared = BTreeSet::new();
            for parameter in shared.iter().chain(&own) {
                let parameter = resolve(&spec, parameter);
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().expect("parameters have names");
                    if parameter["required"] != true {
                        problems.push(format!("{method} {path}: path parameter `{name}` is not required"));
                    }
                    declared.insert(name);
                }
            }
            if declared != in_path {
                problems.push(format!("{method} {path}: declares path parameters {declared:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "path parameters and paths disagree: {problems:#?}");
}

/// The JSON request bodies: the operation, and the struct in `src/routes` that reads its body.
const REQUEST_BODIES: [(&str, &str, &str, &str); 6] = [
    ("POST", "/v1/connect", "src/routes/connect.rs", "ConnectBody"),
    ("POST", "/v1/connect/sessions", "src/routes/sessions.rs", "CreateSessionBody"),
    ("PATCH", "/v1/connections/{id}", "src/routes/connections.rs", "UpdateBody"),
    ("POST", "/v1/connections/{id}/keys", "src/routes/keys.rs", "CreateKeyBody"),
    ("POST", "/v1/webhook-endpoints", "src/routes/webhooks.rs", "CreateEndpointBody"),
    ("PATCH", "/v1/webhook-endpoints/{id}", "src/routes/webhooks.rs", "UpdateEndpointBody"),
];

#[test]
fn request_schemas_name_the_fields_the_code_reads() {
    let spec = spec_json();
    let mut in_spec = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // POST /mcp reads JSON-RPC messages by hand (src/mcp), checked by tests/it/mcp.rs.
            if OPERATION_KEYS.contains(&method.as_str())
                && path != "/mcp"
                && !resolve(&spec, &operation["requestBody"])["content"]["application/json"].is_null()
            {
                in_spec.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let taught: BTreeSet<_> =
        REQUEST_BODIES.iter().map(|(m, p, _, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(in_spec, taught, "the spec's JSON request bodies are not those REQUEST_BODIES names");

    // Every JSON body a handler extracts is one that REQUEST_BODIES names.
    let mut extracted = BTreeSet::new();
    for file in rust_files(&root().join("src/routes")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, needle) in text.match_indices("): Json<") {
            let rest = &text[at + needle.len()..];
            extracted.insert(rest[..rest.find('>').unwrap()].to_owned());
        }
    }
    let named: BTreeSet<_> = REQUEST_BODIES.iter().map(|(_, _, _, s)| s.to_string()).collect();
    assert_eq!(extracted, named, "handlers extract JSON bodies that REQUEST_BODIES does not name");

    let mut problems = Vec::new();
    for (method, path, file, name) in REQUEST_BODIES {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let (fields, deny_unknown) = struct_fields(&text, name);
        let operation = &spec["paths"][path][method.to_ascii_lowercase()];
        let schema = resolve(
            &spec,
            &resolve(&spec, &operation["requestBody"])["content"]["application/json"]["schema"],
        );
        let at = format!("{method} {path} ({name})");
        // A `oneOf` (one shape per kind of caller) is read as the code reads it: one struct with
        // the union of the shapes' fields, needing what every shape requires.
        let shapes: Vec<&Json> = match schema["oneOf"].as_array() {
            Some(shapes) => shapes.iter().map(|shape| resolve(&spec, shape)).collect(),
            None => vec![schema],
        };
        let mut properties = serde_json::Map::new();
        for shape in &shapes {
            for (field, property) in shape["properties"].as_object().expect("request schemas list properties")
            {
                properties
                    .entry(field.clone())
                    .or_insert(Json::Array(vec![]))
                    .as_array_mut()
                    .unwrap()
                    .push(resolve(&spec, property).clone());
            }
        }
        let listed: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let read: BTreeSet<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        if listed != read {
            problems.push(format!("{at}: the spec lists {listed:?}, the code reads {read:?}"));
        }
        let required_by = |shape: &Json| -> BTreeSet<String> {
            shape["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        };
        let required =
            shapes.iter().map(|shape| required_by(shape)).reduce(|a, b| &a & &b).unwrap_or_default();
        let needed: BTreeSet<String> = fields.iter().filter(|f| f.required).map(|f| f.name.clone()).collect();
        if required != needed {
            problems.push(format!("{at}: the spec requires {required:?}, the code needs {needed:?}"));
        }
        for shape in &shapes {
            if deny_unknown != (shape["additionalProperties"] == false) {
                problems.push(format!(
                    "{at}: deny_unknown_fields is {deny_unknown}, additionalProperties is {}",
                    shape["additionalProperties"]
                ));
            }
        }
        for field in fields.iter().filter(|f| f.nullable) {
            let variants = properties.get(&field.name).and_then(Json::as_array);
            if variants.is_some_and(|v| !v.iter().any(|p| p["nullable"] == true)) {
                problems
                    .push(format!("{at}: `{}` accepts null, but the spec does not say nullable", field.name));
            }
        }
    }
    assert!(problems.is_empty(), "request schemas and the code disagree: {problems:#?}");
}

/// One field of a request body struct, as serde reads it.
struct Field {
    name: String,
    /// serde fails without it (not an `Option`, no `#[serde(default)]`).
    required: bool,
    /// serde takes `null` for it (an `Option`).
    nullable: bool,
}

/// The fields of `struct name` in `text`, and whether it denies unknown fields.
fn struct_fields(text: &str, name: &str) -> (Vec<Field>, bool) {
    let needle = format!("struct {name} {{");
    let at = calls(text, &needle).next().unwrap_or_else(|| panic!("no `{needle}`"));
    let above = &text[..text[..at].rfind('\n').unwrap_or(0)];
    let attributes: Vec<&str> = above
        .lines()
        .rev()
        .map(str::trim)
        .take_while(|line| line.starts_with("#[") || line.starts_with("///"))
        .filter(|line| line.starts_with("#["))
        .collect();
    assert!(
        !attributes.iter().any(|a| a.contains("rename") || a.contains("tag") || a.contains("default")),
        "teach tests/it/openapi.rs the serde attributes of {name}: {attributes:?}"
    );
    let deny_unknown = attributes.iter().any(|a| a.contains("deny_unknown_fields"));
    let mut fields = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for line in balanced(text, at + needle.len() - 1).lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with("#[") {
            pending.push(line);
            continue;
        }
        let line = line.strip_prefix("pub ").unwrap_or(line);
        let (field, ty) = line.split_once(':').unwrap_or_else(|| panic!("{name}: cannot read `{line}`"));
        assert!(
            !pending.iter().any(|a| a.contains("rename") || a.contains("flatten") || a.contains("skip")),
            "teach tests/it/openapi.rs the serde attributes of {name}.{field}: {pending:?}"
        );
        let optional = ty.trim().starts_with("Option<");
        let defaulted = pending.iter().any(|a| a.contains("default"));
        fields.push(Field {
            name: field.trim().to_owned(),
            required: !optional && !defaulted,
            nullable: optional,
        });
        pending.clear();
    }
    (fields, deny_unknown)
}

/// The spec's response to `method path` answering `status` (resolved); fails if undocumented.
fn documented_response<'a>(spec: &'a Json, method: &str, path: &str, status: u16) -> &'a Json {
    let operation = &spec["paths"][path][method.to_ascii_lowercase()];
    assert!(operation.is_object(), "the spec has no {method} {path}");
    let response = &operation["responses"][status.to_string()];
    assert!(!response.is_null(), "{method} {path} answered {status}, which the spec does not document");
    resolve(spec, response)
}

/// Checks a JSON answer against the body the spec documents for it, and returns the body.
async fn fits(spec: &Json, method: &str, path: &str, response: reqwest::Response) -> Json {
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-request-id"), "{method} {path}: no x-request-id");
    let schema = &documented_response(spec, method, path, status)["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} {status}: the spec documents no JSON body");
    let body: Json = response.json().await.expect("a JSON body");
    let problems = check(spec, &body, schema, &format!("{method} {path} {status}"));
    assert!(problems.is_empty(), "{method} {path} {status} does not fit the spec: {problems:#?}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keys_and_verify_answer_as_the_spec_documents() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let spec = spec_json();
    let connect = app.key("connect").await;
    let writer = app.key("connections:write,proxy").await;

    // A connect session, used once by a browser.
    let response = app
        .http
        .post(app.url("/v1/connect/sessions"))
        .bearer_auth(&connect)
        .json(
            &serde_json::json!({"end_user_id": "u7", "end_user_email": "u7@example.com", "expires_in": 600}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session = fits(&spec, "POST", "/v1/connect/sessions", response).await;
    let session_token = session["token"].as_str().unwrap().to_owned();
    app.fake.add_workspace("acme");
    let hex_token = app.fake.add_personal_token("acme", "u7@example.com");
    let body = serde_json::json!({"subdomain": "acme", "token": hex_token});
    let response = app.connect(&session_token, body.clone()).await;
    assert_eq!(response.status(), 201);
    let connection = fits(&spec, "POST", "/v1/connect", response).await;
    let id = connection["id"].as_str().unwrap().to_owned();
    let again = fits(&spec, "POST", "/v1/connect", app.connect(&session_token, body).await).await;
    assert_eq!(again["error"]["code"], "session_used");

    let response = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/verify")))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    fits(&spec, "POST", "/v1/connections/{id}/verify", response).await;

    // A read-only connection key: it reads through /api, may not write, and is refused on /v1.
    let response = app
        .http
        .post(app.url(&format!("/v1/connections/{id}/keys")))
        .bearer_auth(&writer)
        .json(&serde_json::json!({"scopes": ["proxy:read"], "expires_in": 3600, "name": "reports"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let key = fits(&spec, "POST", "/v1/connections/{id}/keys", response).await;
    let secret = key["key"].as_str().unwrap();
    let read = app.http.get(app.url("/api/v1/projects")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["hexbroker-upstream"], "hex");
    let write = app.http.post(app.url("/api/v1/projects")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(fits(&spec, "POST", "/api/{path}", write).await["error"]["code"], "read_only_key");
    let on_v1 = app.http.get(app.url("/v1/connections")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(
        fits(&spec, "GET", "/v1/connections", on_v1).await["error"]["code"],
        "connection_key_not_allowed"
    );
    let api_key_on_api = app.http.get(app.url("/api/v1/projects")).bearer_auth(&writer).send().await.unwrap();
    let refused = fits(&spec, "GET", "/api/{path}", api_key_on_api).await;
    assert_eq!(refused["error"]["code"], "connection_key_required");

    let revoke_path = format!("/v1/connections/{id}/keys/{}", key["id"].as_str().unwrap());
    let revoked = app.http.delete(app.url(&revoke_path)).bearer_auth(&writer).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    documented_response(&spec, "DELETE", "/v1/connections/{id}/keys/{key_id}", 204);
    let twice = app.http.delete(app.url(&revoke_path)).bearer_auth(&writer).send().await.unwrap();
    assert_eq!(
        fits(&spec, "DELETE", "/v1/connections/{id}/keys/{key_id}", twice).await["error"]["code"],
        "not_found"
    );
}

/// Every operation that needs no credential and has no path parameter, called plainly (with an
/// `Origin` and, for OPTIONS, a CORS preflight's headers), with and without allowed origins: its
/// status and media type are ones the spec documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_free_operations_answer_as_the_spec_documents() {
    let spec = spec_json();
    let mut public = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if OPERATION_KEYS.contains(&method.as_str())
                && operation["security"].as_array().is_some_and(Vec::is_empty)
                && !path.contains('{')
            {
                public.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    assert!(public.iter().any(|(m, _)| m == "OPTIONS"), "the CORS preflights need no credential");
    for extra in [&[][..], &[("HEXBROKER_ALLOWED_ORIGINS", "https://app.example.com")][..]] {
        let app = TestApp::start_with(Backend::Sqlite, extra).await.expect("SQLite is always available");
        for (method, path) in &public {
            let mut request = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .header("origin", "https://app.example.com");
            if method == "OPTIONS" {
                request = request
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "authorization,content-type");
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let at = format!("{method} {path} → {status} (allowed origins: {extra:?})");
            assert!(response.headers().contains_key("x-request-id"), "{at}: no x-request-id");
            let documented = documented_response(&spec, method, path, status);
            let media_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_owned());
            let body = response.bytes().await.unwrap();
            match (documented["content"].as_object(), media_type) {
                (Some(content), Some(media_type)) => {
                    assert!(content.contains_key(&media_type), "{at}: {media_type} is not documented")
                }
                (None, _) => assert!(body.is_empty(), "{at}: a body the spec does not document"),
                (Some(_), None) => panic!("{at}: no content-type"),
            }
        }
    }
}

/// Every error code the source constructs: the first string literal of each
/// `ApiError::new(…)`, `::unprocessable(…)` or `::bad_request(…)` call.
fn source_error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests at the bottom of a file quote codes without constructing them.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for constructor in ["::new(", "::unprocessable(", "::bad_request("] {
            // `Self::…` constructs an error only inside `impl ApiError`.
            let prefixes: &[&str] =
                if file.ends_with("src/error.rs") { &["ApiError", "Self"] } else { &["ApiError"] };
            for prefix in prefixes {
                let needle = format!("{prefix}{constructor}");
                for at in calls(text, &needle) {
                    let args = balanced(text, at + needle.len() - 1);
                    if let Some(code) = first_literal(args) {
                        if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                            codes.insert(code.to_owned());
                        }
                    }
                }
            }
        }
    }
    assert!(codes.contains("unauthorized") && codes.contains("route_not_found"), "found codes: {codes:?}");
    codes
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Follows a local `$ref`.
fn resolve<'a>(spec: &'a Json, node: &'a Json) -> &'a Json {
    match node.get("$ref").and_then(Json::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("only local references");
            resolve(spec, spec.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}")))
        }
        None => node,
    }
}

/// Checks `value` against the subset of OpenAPI 3.0 schema that this spec uses: `$ref`, `anyOf`,
/// `oneOf`, `allOf`, `type`, `nullable`, `enum`, `format` (uuid, date-time), `required`, `properties`,
/// `items` (`pattern` is left to the fuzzing run, `.ci/fuzz-spec`). An object
/// schema with `properties` and no `additionalProperties` is closed: a property it does not list is
/// drift between the code and the spec.
fn check(spec: &Json, value: &Json, schema: &Json, at: &str) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut problems = Vec::new();
    if value.is_null() {
        if schema["nullable"] != true {
            problems.push(format!("{at}: null, but the schema is not nullable"));
        }
        return problems;
    }
    if let Some(options) = schema["anyOf"].as_array() {
        if !options.iter().any(|option| check(spec, value, option, at).is_empty()) {
            problems.push(format!("{at}: {value} fits none of the schemas anyOf lists"));
        }
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fitting = options.iter().filter(|option| check(spec, value, option, at).is_empty()).count();
        if fitting != 1 {
            problems.push(format!("{at}: {value} fits {fitting} of the schemas oneOf lists, not one"));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        problems.extend(check(spec, value, part, at));
    }
    let fits = match schema["type"].as_str() {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !fits {
        problems.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return problems;
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            problems.push(format!("{at}: {value} is not one of {}", schema["enum"]));
        }
    }
    if let (Some(text), Some(format)) = (value.as_str(), schema["format"].as_str()) {
        let ok = match format {
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "date-time" => text.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !ok {
            problems.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            problems.extend(check(spec, item, &schema["items"], &format!("{at}[{i}]")));
        }
    }
    if let Some(object) = value.as_object() {
        for field in schema["required"].as_array().into_iter().flatten().filter_map(Json::as_str) {
            if !object.contains_key(field) {
                problems.push(format!("{at}: lacks required `{field}`"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            let closed = schema.get("additionalProperties").is_none_or(|a| a == false);
            for (field, field_value) in object {
                match properties.get(field) {
                    Some(field_schema) => {
                        problems.extend(check(spec, field_value, field_schema, &format!("{at}.{field}")))
                    }
                    None if closed => problems.push(format!("{at}: `{field}` is not in the schema")),
                    None => {}
                }
            }
        }
    }
    problems
}
