//! `openapi.yaml` against the code: the same routes, the same shapes, the same error codes.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{Backend, TestApp};
use hexbroker::error::Code;
use hexbroker::routes::bodies;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

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

/// Every (METHOD, path) the router serves, from its own list ([`hexbroker::routes::operations`],
/// which the router is built from).
fn router_operations() -> Operations {
    let served = hexbroker::routes::operations();
    let operations: Operations =
        served.iter().map(|(method, path)| (method.as_str().to_owned(), openapi_path(path))).collect();
    assert_eq!(operations.len(), served.len(), "the router lists an operation twice: {served:?}");
    operations
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
        "openapi.yaml and the router disagree.\nIn the spec but not served:{}\nServed but not in the spec:{}",
        show(&only_spec),
        show(&only_router),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_operation_is_served() {
    let app = TestApp::start(Backend::Sqlite).await.expect("SQLite is always available");
    let admin = app.key("admin").await;
    let operations = spec_operations(&spec());
    let spec_json = spec_json();
    assert!(operations.len() >= 10, "the spec lists its operations");
    let (mut unserved, mut wrong_body) = (Vec::new(), Vec::new());
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
        // Sent with no body: a handler that reads JSON refuses it as 415 before anything else
        // but the credential, and one that reads none never does.
        let reads_json = reads_json(&spec_json, method, path);
        match (status, code.as_deref()) {
            (415, _) if !reads_json => wrong_body.push(format!("{method} {path}: 415, but no JSON body")),
            (415, _) | (401 | 403, _) => {}
            _ if reads_json && path != "/mcp" => {
                wrong_body.push(format!("{method} {path}: {status} {code:?}, not 415, without a body"))
            }
            _ => {}
        }
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
    assert!(wrong_body.is_empty(), "handlers read bodies other than the spec's: {wrong_body:#?}");
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
    let answered: BTreeSet<String> = Code::ALL.iter().map(|code| code.as_str().to_owned()).collect();
    assert_eq!(answered.len(), Code::ALL.len(), "Code::ALL names a code twice");
    let unlisted: Vec<_> = answered.difference(&listed).collect();
    let unanswered: Vec<_> = listed.difference(&answered).collect();
    assert!(
        unlisted.is_empty() && unanswered.is_empty(),
        "Error.code in openapi.yaml and Code::ALL disagree.\nIn the code but not listed: {unlisted:?}\nListed but not in the code: {unanswered:?}"
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

/// A probe of a request body type: its fields as serde reads them.
type Probe = fn() -> (Vec<Field>, bool);

/// The JSON request bodies: the operation, and the type its handler reads the body as.
const REQUEST_BODIES: [(&str, &str, &str, Probe); 6] = [
    ("POST", "/v1/connect", "ConnectBody", body_fields::<bodies::ConnectBody>),
    ("POST", "/v1/connect/sessions", "CreateSessionBody", body_fields::<bodies::CreateSessionBody>),
    ("PATCH", "/v1/connections/{id}", "UpdateBody", body_fields::<bodies::UpdateBody>),
    ("POST", "/v1/connections/{id}/keys", "CreateKeyBody", body_fields::<bodies::CreateKeyBody>),
    ("POST", "/v1/webhook-endpoints", "CreateEndpointBody", body_fields::<bodies::CreateEndpointBody>),
    ("PATCH", "/v1/webhook-endpoints/{id}", "UpdateEndpointBody", body_fields::<bodies::UpdateEndpointBody>),
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

    let mut problems = Vec::new();
    for (method, path, name, probe) in REQUEST_BODIES {
        let (fields, deny_unknown) = probe();
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

/// The fields of the body type `T` and whether it denies unknown fields, as serde reads them:
/// asked of the type itself, never of its source.
fn body_fields<T: DeserializeOwned>() -> (Vec<Field>, bool) {
    let names = struct_field_names::<T>();
    let refusal = |body: Json| serde_json::from_value::<T>(body).err().map(|e| e.to_string());
    let deny_unknown = refusal(serde_json::json!({"no_field_of_any_body": 1}))
        .is_some_and(|message| message.starts_with("unknown field"));
    // Required: the fields serde reports missing, filling each in (by trying a few values) until
    // the body is accepted.
    const CANDIDATES: [&str; 5] = [r#""x""#, r#"["x"]"#, "1", "true", "{}"];
    let mut body = serde_json::Map::new();
    let mut required = BTreeSet::new();
    let mut trying: Option<(String, usize)> = None;
    while let Some(message) = refusal(Json::Object(body.clone())) {
        if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            assert!(required.insert(field.to_owned()), "{field} is reported missing twice: {message}");
            trying = Some((field.to_owned(), 0));
        } else {
            let (field, tried) =
                trying.as_mut().unwrap_or_else(|| panic!("an empty body is refused: {message}"));
            *tried += 1;
            assert!(*tried < CANDIDATES.len(), "no value found for `{field}`: {message}");
        }
        let (field, tried) = trying.as_ref().unwrap();
        body.insert(field.clone(), serde_json::from_str(CANDIDATES[*tried]).unwrap());
    }
    let fields = names
        .iter()
        .map(|&name| Field {
            name: name.to_owned(),
            required: required.contains(name),
            // serde takes `null` for it when a body of it alone is refused for anything else.
            nullable: refusal(serde_json::json!({ name: null }))
                .is_none_or(|message| !message.starts_with("invalid type: null")),
        })
        .collect();
    (fields, deny_unknown)
}

/// The field names serde's derived `Deserialize` of struct `T` gives to `deserialize_struct`.
fn struct_field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    /// A deserializer that only records the field names a struct asks for.
    struct Names<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for Names<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(de::Error::custom("names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut names = None;
    let _ = T::deserialize(Names(&mut names));
    names.expect("a request body is a struct")
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

/// Whether the spec gives `method path` a JSON request body.
fn reads_json(spec: &Json, method: &str, path: &str) -> bool {
    let operation = &spec["paths"][path][method.to_ascii_lowercase()];
    !resolve(spec, &operation["requestBody"])["content"]["application/json"].is_null()
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
