//! MCP tools derived from Hex's OpenAPI spec (the copy the project carries, embedded at build):
//! one tool per operation, named by its operationId in snake_case, with an input schema of its
//! path parameters, query parameters and JSON body. A newer spec file means new tools with no
//! code change.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde_json::{json, Map, Value};

/// Hex's published OpenAPI, as carried in `fake-hex/hex-api/openapi.json`.
pub const HEX_SPEC: &str = include_str!("../../fake-hex/hex-api/openapi.json");

/// One tool: what the client sees, and how a call becomes a request to Hex.
#[derive(Debug, Clone)]
pub struct Tool {
    /// `list_projects`.
    pub name: String,
    /// The operation's id as the spec spells it (`ListProjects`).
    pub operation_id: String,
    /// The HTTP method.
    pub method: Method,
    /// Hex's path below `/api`, with `{name}` placeholders (`/v1/projects/{projectId}`).
    pub path: String,
    /// The placeholders of `path`, with their schemas.
    pub path_params: Vec<(String, Value)>,
    /// Query parameters and their schemas.
    pub query_params: Vec<(String, Value)>,
    /// Whether the operation takes a JSON body, and whether it must.
    pub body: Option<bool>,
    /// GET or HEAD: reads only.
    pub read_only: bool,
    /// The MCP tool definition (`name`, `description`, `inputSchema`, `annotations`).
    pub definition: Value,
}

/// The tools of a spec, in the spec's order.
#[derive(Debug, Clone)]
pub struct Tools(Vec<Tool>);

/// Why the tools could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The spec is not an OpenAPI document this module can read.
    #[error("Hex's OpenAPI spec cannot be read: {0}")]
    Spec(String),
    /// `HEXBROKER_MCP_TOOLS` names tools that do not exist.
    #[error("no such tools: {0} (the tools are named after Hex's operations, e.g. list_projects)")]
    Unknown(String),
}

impl Tools {
    /// The tools of the embedded Hex spec, narrowed to `only` when it names some.
    pub fn from_hex_spec(only: Option<&[String]>) -> Result<Self, ToolsError> {
        let spec: Value = serde_json::from_str(HEX_SPEC).map_err(|e| ToolsError::Spec(e.to_string()))?;
        let tools = Self::from_spec(&spec)?;
        match only {
            Some(names) => tools.narrowed(names),
            None => Ok(tools),
        }
    }

    /// The tools of `spec`.
    pub fn from_spec(spec: &Value) -> Result<Self, ToolsError> {
        let paths = spec["paths"].as_object().ok_or_else(|| ToolsError::Spec("no paths".into()))?;
        let mut tools = Vec::new();
        let mut names = BTreeSet::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, operation) in item {
                let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else { continue };
                if !matches!(
                    method,
                    Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
                ) {
                    continue;
                }
                let tool = tool(spec, path, item, method, operation)?;
                if !names.insert(tool.name.clone()) {
                    return Err(ToolsError::Spec(format!("two operations are named {}", tool.name)));
                }
                tools.push(tool);
            }
        }
        Ok(Self(tools))
    }

    /// Only the tools named in `names`; an unknown name is an error.
    pub fn narrowed(self, names: &[String]) -> Result<Self, ToolsError> {
        let unknown: Vec<&str> =
            names.iter().filter(|n| !self.0.iter().any(|t| &t.name == *n)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(ToolsError::Unknown(unknown.join(", ")));
        }
        Ok(Self(self.0.into_iter().filter(|t| names.contains(&t.name)).collect()))
    }

    /// Every tool.
    pub fn all(&self) -> &[Tool] {
        &self.0
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.0.iter().find(|t| t.name == name)
    }
}

/// `ListProjects` → `list_projects`, `GetHTTPStatus` → `get_http_status`.
pub fn snake_case(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let mut out = String::with_capacity(id.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let next = chars.get(i + 1);
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// A path whose segments hold regex-like alternatives (`/v1/semantic-(projects|models)/{id}`,
/// as Hex's spec writes two spellings of one route): the first alternative, which Hex serves.
pub fn concrete_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('(') {
        let Some(close) = rest[open..].find(')').map(|c| open + c) else { break };
        out.push_str(&rest[..open]);
        let group = &rest[open + 1..close];
        out.push_str(group.split('|').next().unwrap_or(group));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Follows a local `$ref` (`#/components/...`) to what it names.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    let mut value = value;
    for _ in 0..8 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return value };
        let Some(pointer) = reference.strip_prefix('#') else { return value };
        match spec.pointer(pointer) {
            Some(target) => value = target,
            None => return value,
        }
    }
    value
}

/// `schema` with every `#/components/schemas/X` reference rewritten to `#/$defs/X`, collecting the
/// names it needs (transitively) into `defs`.
fn localise(spec: &Value, schema: &Value, defs: &mut BTreeMap<String, Value>) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
                        if !defs.contains_key(name) {
                            defs.insert(name.to_owned(), Value::Null);
                            let target =
                                spec["components"]["schemas"].get(name).cloned().unwrap_or(json!({}));
                            let local = localise(spec, &target, defs);
                            defs.insert(name.to_owned(), local);
                        }
                        out.insert(k.clone(), Value::String(format!("#/$defs/{name}")));
                        continue;
                    }
                }
                // OpenAPI 3.0's `nullable` and `example` are not JSON Schema keywords; dropping
                // `example` keeps the schema small, `nullable` is kept (clients ignore it).
                if k == "example" {
                    continue;
                }
                out.insert(k.clone(), localise(spec, v, defs));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| localise(spec, v, defs)).collect()),
        other => other.clone(),
    }
}

fn tool(
    spec: &Value,
    raw_path: &str,
    item: &Map<String, Value>,
    method: Method,
    operation: &Value,
) -> Result<Tool, ToolsError> {
    let operation_id = operation["operationId"]
        .as_str()
        .ok_or_else(|| ToolsError::Spec(format!("{method} {raw_path} has no operationId")))?
        .to_owned();
    let name = snake_case(&operation_id);
    let path = concrete_path(raw_path);
    let mut defs = BTreeMap::new();
    let mut properties = Map::new();
    let mut required = Vec::new();
    let (mut path_params, mut query_params) = (Vec::new(), Vec::new());
    let shared = item.get("parameters").and_then(Value::as_array).into_iter().flatten();
    let own = operation["parameters"].as_array().into_iter().flatten();
    for parameter in shared.chain(own) {
        let parameter = resolve(spec, parameter);
        let Some(pname) = parameter["name"].as_str() else { continue };
        let mut schema = localise(spec, parameter.get("schema").unwrap_or(&json!({})), &mut defs);
        if let (Some(description), Some(map)) = (parameter["description"].as_str(), schema.as_object_mut()) {
            map.entry("description").or_insert_with(|| Value::String(description.to_owned()));
        }
        match parameter["in"].as_str() {
            Some("path") => {
                let raw = parameter.get("schema").unwrap_or(&Value::Null);
                path_params.push((pname.to_owned(), resolve(spec, raw).clone()));
                required.push(Value::String(pname.to_owned()));
            }
            Some("query") => {
                // Checked against the schema it names, not the `$defs` reference the client sees.
                let raw = parameter.get("schema").unwrap_or(&Value::Null);
                let mut checked = resolve(spec, raw).clone();
                if let Some(items) = checked.get("items").map(|i| resolve(spec, i).clone()) {
                    checked["items"] = items;
                }
                query_params.push((pname.to_owned(), checked));
                if parameter["required"].as_bool() == Some(true) {
                    required.push(Value::String(pname.to_owned()));
                }
            }
            // Header and cookie parameters are not offered: hexbroker sends its own headers.
            _ => continue,
        }
        properties.insert(pname.to_owned(), schema);
    }
    let mut body = None;
    if let Some(request_body) = operation.get("requestBody") {
        let request_body = resolve(spec, request_body);
        if let Some(schema) = request_body["content"]["application/json"].get("schema") {
            let must = request_body["required"].as_bool() == Some(true);
            let mut schema = localise(spec, schema, &mut defs);
            if let Some(map) = schema.as_object_mut() {
                map.entry("description")
                    .or_insert_with(|| Value::String("The JSON body sent to Hex.".into()));
            }
            properties.insert("body".into(), schema);
            if must {
                required.push(Value::String("body".into()));
            }
            body = Some(must);
        }
    }
    let mut input = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    if !defs.is_empty() {
        input["$defs"] = Value::Object(defs.into_iter().collect());
    }
    let summary = operation["summary"].as_str().unwrap_or("").trim();
    let detail = operation["description"].as_str().unwrap_or("").trim();
    let mut description = match (summary.is_empty(), detail.is_empty()) {
        (false, false) if detail != summary => format!("{summary}\n\n{detail}"),
        (false, _) => summary.to_owned(),
        (true, _) => detail.to_owned(),
    };
    if description.is_empty() {
        description = format!("{method} {path}");
    }
    let read_only = method == Method::GET;
    let lowered = operation_id.to_ascii_lowercase();
    let destructive = !read_only
        && (method == Method::DELETE
            || ["delete", "deactivate", "remove", "archive", "cancel"].iter().any(|w| lowered.contains(w)));
    let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
    let title = if summary.is_empty() { operation_id.clone() } else { summary.to_owned() };
    let definition = json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": input,
        "annotations": {
            "title": title,
            "readOnlyHint": read_only,
            "destructiveHint": destructive,
            "idempotentHint": idempotent,
            "openWorldHint": true,
        },
    });
    Ok(Tool { name, operation_id, method, path, path_params, query_params, body, read_only, definition })
}

/// Why a tool's arguments do not fit its schema (sent as a JSON-RPC invalid-params error).
#[derive(Debug, PartialEq, Eq)]
pub struct BadArguments(pub String);

/// The Hex request a call makes: the path below `/api` with its query, and the body.
#[derive(Debug)]
pub struct Call {
    /// `/v1/projects/abc/runs?limit=1`.
    pub path_and_query: String,
    /// The JSON body, if the operation takes one and the call gave it.
    pub body: Option<Vec<u8>>,
}

impl Tool {
    /// Checks `arguments` against the tool's schema (its top level: names, presence and the
    /// types of path and query parameters; the body's inside is Hex's to judge) and builds the
    /// request. Nothing is sent when this fails.
    pub fn call(&self, arguments: Option<&Value>) -> Result<Call, BadArguments> {
        let empty = Map::new();
        let arguments = match arguments {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return Err(BadArguments("arguments must be an object".into())),
        };
        let known = |k: &str| {
            self.path_params.iter().any(|(p, _)| p == k)
                || self.query_params.iter().any(|(q, _)| q == k)
                || (k == "body" && self.body.is_some())
        };
        if let Some(unknown) = arguments.keys().find(|k| !known(k)) {
            return Err(BadArguments(format!("unknown argument `{unknown}` for {}", self.name)));
        }
        let mut path = self.path.clone();
        for (name, schema) in &self.path_params {
            let value = arguments
                .get(name)
                .ok_or_else(|| BadArguments(format!("missing required argument `{name}`")))?;
            check_type(name, value, schema)?;
            let text = scalar(value).ok_or_else(|| BadArguments(format!("`{name}` must be a string")))?;
            if text.is_empty() || text == "." || text == ".." {
                return Err(BadArguments(format!("`{name}` must be a non-empty id")));
            }
            path = path.replace(&format!("{{{name}}}"), &encode_segment(&text));
        }
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, schema) in &self.query_params {
            let Some(value) = arguments.get(name) else { continue };
            if value.is_null() {
                continue;
            }
            let values: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            if value.is_array() && schema["type"] != "array" && !schema["type"].is_null() {
                return Err(BadArguments(format!("`{name}` takes one value, not a list")));
            }
            let item_schema = if schema["type"] == "array" { &schema["items"] } else { schema };
            for v in values {
                check_type(name, v, item_schema)?;
                let text =
                    scalar(v).ok_or_else(|| BadArguments(format!("`{name}` must be a plain value")))?;
                query.append_pair(name, &text);
                any = true;
            }
        }
        if any {
            path.push('?');
            path.push_str(&query.finish());
        }
        let body = match (self.body, arguments.get("body")) {
            (Some(true), None) => return Err(BadArguments("missing required argument `body`".into())),
            (Some(_), Some(value)) if !value.is_object() && !value.is_array() => {
                return Err(BadArguments("`body` must be a JSON object".into()))
            }
            (Some(_), Some(value)) => Some(serde_json::to_vec(value).unwrap_or_default()),
            _ => None,
        };
        Ok(Call { path_and_query: path, body })
    }
}

/// A string, number or boolean as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks a query value against its schema's `type` and `enum` (when it has them).
fn check_type(name: &str, value: &Value, schema: &Value) -> Result<(), BadArguments> {
    let ok = match schema["type"].as_str() {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => !value.is_object() && !value.is_array(),
    };
    if !ok {
        return Err(BadArguments(format!(
            "`{name}` must be of type {}",
            schema["type"].as_str().unwrap_or("string, number or boolean")
        )));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(BadArguments(format!("`{name}` must be one of {}", Value::Array(allowed.clone()))));
        }
    }
    Ok(())
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_become_snake_case_names() {
        for (id, name) in [
            ("ListProjects", "list_projects"),
            ("RunProject", "run_project"),
            ("Me", "me"),
            ("EditProjectSharingOrgAndPublic", "edit_project_sharing_org_and_public"),
            ("GetHTTPStatus", "get_http_status"),
            ("getV2Thing", "get_v2_thing"),
        ] {
            assert_eq!(snake_case(id), name, "{id}");
        }
    }

    #[test]
    fn alternatives_in_a_path_take_the_first() {
        assert_eq!(
            concrete_path("/v1/semantic-(projects|models)/{id}/ingest"),
            "/v1/semantic-projects/{id}/ingest"
        );
        assert_eq!(concrete_path("/v1/projects/{id}"), "/v1/projects/{id}");
        assert_eq!(concrete_path("/v1/odd-(unclosed"), "/v1/odd-(unclosed");
    }

    #[test]
    fn path_arguments_are_encoded_and_bad_ones_refused() {
        let tools = Tools::from_hex_spec(None).unwrap();
        let status = tools.get("get_run_status").unwrap();
        let call = status.call(Some(&json!({"projectId": "a b/c", "runId": "r?1"}))).unwrap();
        assert_eq!(call.path_and_query, "/v1/projects/a%20b%2Fc/runs/r%3F1");
        assert!(status.call(Some(&json!({"projectId": "..", "runId": "r"}))).is_err());
        assert!(status.call(Some(&json!({"projectId": "p"}))).is_err());
        assert!(status.call(Some(&json!({"projectId": "p", "runId": "r", "extra": 1}))).is_err());
        assert!(status.call(Some(&json!({"projectId": {}, "runId": "r"}))).is_err());
        let list = tools.get("list_projects").unwrap();
        let call = list.call(Some(&json!({"limit": 2, "statuses": ["a b"]}))).unwrap();
        assert_eq!(call.path_and_query, "/v1/projects?statuses=a+b&limit=2");
        assert!(list.call(Some(&json!({"limit": "two"}))).is_err());
        assert!(list.call(Some(&json!([]))).is_err());
    }

    #[test]
    fn narrowing_to_an_unknown_tool_is_an_error() {
        let err = Tools::from_hex_spec(Some(&["list_projects".into(), "launch_rocket".into()])).unwrap_err();
        assert!(err.to_string().contains("launch_rocket"), "{err}");
        let tools = Tools::from_hex_spec(Some(&["list_projects".into()])).unwrap();
        assert_eq!(tools.all().len(), 1);
    }
}
