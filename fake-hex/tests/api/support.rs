//! Shared helpers: a spawned fake, a client, and checks of Hex's wire formats.

use std::net::SocketAddr;

use fake_hex::FakeHex;
use reqwest::{Method, Response};
use serde_json::Value;

/// A fake Hex serving on a port of its own, and a client for it.
pub struct Harness {
    pub hex: FakeHex,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Self {
        let hex = FakeHex::new();
        let addr = hex.spawn().await.expect("bind the fake");
        Harness { hex, addr, client: reqwest::Client::new() }
    }

    /// `http://ADDR/{subdomain}/api{path}`, built from the URL template as hexbroker would.
    pub fn url(&self, subdomain: &str, path: &str) -> String {
        let origin = FakeHex::url_template(self.addr).replace("{subdomain}", subdomain);
        format!("{origin}/api{path}")
    }

    pub async fn call(&self, method: Method, subdomain: &str, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.request(method, self.url(subdomain, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request reaches the fake")
    }

    pub async fn get(&self, subdomain: &str, path: &str, token: &str) -> Response {
        self.call(Method::GET, subdomain, path, Some(token)).await
    }

    /// GET and parse a JSON body, asserting the status.
    pub async fn get_json(&self, subdomain: &str, path: &str, token: &str, status: u16) -> Value {
        let response = self.get(subdomain, path, token).await;
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Sends `body` (if any) as JSON with a bearer token.
    pub async fn send(
        &self,
        method: Method,
        subdomain: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(subdomain, path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request reaches the fake")
    }

    /// Sends a JSON request in workspace `acme` and parses the JSON answer, asserting the status
    /// (bodiless answers parse as `null`).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let response = self.send(method.clone(), "acme", path, token, body.as_ref()).await;
        let got = response.status().as_u16();
        let text = response.text().await.expect("a body");
        assert_eq!(got, status, "{method} {path}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        }
    }
}

/// Asserts a plain-text `401 Unauthorized`, Hex's edge answer to a bad token.
pub async fn assert_plain_401(response: Response) {
    assert_eq!(response.status().as_u16(), 401);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(response.text().await.unwrap(), "Unauthorized");
}

/// Asserts a coded error body (`{code, message, issues}`) with this code.
pub fn assert_coded(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["issues"].is_array(), "{body}");
}

/// Asserts a tsoa error body (`{reason, details?, traceId}`).
pub fn assert_tsoa(body: &Value) {
    assert!(body["reason"].is_string(), "{body}");
    assert!(body["traceId"].is_string(), "{body}");
    assert!(body.get("code").is_none(), "{body}");
}

/// Whether `s` matches `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`, Hex's timestamp format.
pub fn is_hex_timestamp(s: &str) -> bool {
    const SHAPE: &str = "dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == SHAPE.len()
        && s.chars().zip(SHAPE.chars()).all(|(c, want)| match want {
            'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

#[test]
fn the_timestamp_check_accepts_only_hexs_format() {
    assert!(is_hex_timestamp("2024-01-01T00:00:00.000Z"));
    for bad in [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.000000Z",
        "2024-01-01T00:00:00.000+00:00",
        "2024-01-01 00:00:00.000Z",
        "",
    ] {
        assert!(!is_hex_timestamp(bad), "{bad}");
    }
}

/// Hex's OpenAPI file, vendored in `fake-hex/hex-api/` (see the README there for its source).
pub fn spec() -> Value {
    const SPEC: &str = include_str!("../../hex-api/openapi.json");
    serde_json::from_str(SPEC).expect("hex-api/openapi.json parses")
}

/// The schema of an operation's JSON response in the spec, `$ref` resolved.
pub fn response_schema(spec: &Value, path: &str, method: &str, status: &str) -> Value {
    let escaped = path.replace('~', "~0").replace('/', "~1");
    let pointer = format!("/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema");
    let schema = spec.pointer(&pointer).unwrap_or_else(|| panic!("{pointer} in spec")).clone();
    resolve(spec, schema)
}

/// A named component schema, `$ref` resolved.
pub fn component(spec: &Value, name: &str) -> Value {
    resolve(spec, spec["components"]["schemas"][name].clone())
}

fn resolve(spec: &Value, schema: Value) -> Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(spec, spec.pointer(pointer).expect("ref resolves").clone())
        }
        None => schema,
    }
}

/// Asserts `body` has every property `schema` requires, and, where the schema closes the object
/// (`additionalProperties: false`), nothing else.
pub fn assert_conforms(body: &Value, schema: &Value) {
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        assert!(body.get(name).is_some(), "missing required {name:?} in {body}");
    }
    if schema["additionalProperties"] == Value::Bool(false) {
        let properties = schema["properties"].as_object().unwrap();
        for key in body.as_object().unwrap().keys() {
            assert!(properties.contains_key(key), "{key:?} is not in the schema");
        }
    }
}
