//! Reading Hex's OpenAPI 3.0 file: its operations, a small schema validator, and a generator of
//! minimal request bodies.
//!
//! The validator covers what the file uses: `type` (integer apart from number), `properties`,
//! `required`, `items`, `enum`, `nullable`, `anyOf`/`oneOf`/`allOf`, `$ref` into
//! `components/schemas`, `additionalProperties` (false, or a schema), string lengths, numeric
//! bounds, array sizes, and formats: `date-time` and `timestamp` must be Hex's exact timestamp
//! (`2024-01-01T00:00:00.000Z`), `uuid` (and the UUID `pattern`) a UUID, `int32` in range. Any
//! other `pattern` is reported, so a spec that grows one is noticed.

use serde_json::{Map, Value};

use crate::support::is_hex_timestamp;

const UUID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// One operation of the spec.
#[derive(Clone, Debug)]
pub struct Operation {
    pub id: String,
    pub method: String,
    /// As written in the spec (`/v1/semantic-(projects|models)/…` included).
    pub path: String,
    pub parameters: Vec<Value>,
    /// The JSON request body schema, if the operation takes a body.
    pub request: Option<Value>,
    /// The first 2xx status and its JSON schema (`None`: no body).
    pub success: (u16, Option<Value>),
    pub responses: Map<String, Value>,
}

impl Operation {
    /// The concrete paths the spec's path stands for: `semantic-(projects|models)` is both.
    pub fn concrete_paths(&self) -> Vec<String> {
        match self.path.contains("(projects|models)") {
            true => {
                ["projects", "models"].iter().map(|k| self.path.replace("(projects|models)", k)).collect()
            }
            false => vec![self.path.clone()],
        }
    }

    /// The JSON schema of the documented response `status`, if any.
    pub fn response_schema(&self, status: u16) -> Option<Value> {
        self.responses.get(&status.to_string())?.pointer("/content/application~1json/schema").cloned()
    }

    /// Names of parameters `location` (`path`, `query`) that are required.
    pub fn required_params(&self, location: &str) -> Vec<String> {
        self.parameters
            .iter()
            .filter(|p| p["in"] == location && (location == "path" || p["required"] == true))
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Hex's OpenAPI file.
pub struct Spec {
    pub doc: Value,
}

impl Spec {
    /// The vendored spec.
    pub fn load() -> Spec {
        Spec { doc: crate::support::spec() }
    }

    /// Every operation, in file order.
    pub fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let responses = op["responses"].as_object().cloned().unwrap_or_default();
                let (status, response) = responses
                    .iter()
                    .find(|(code, _)| code.starts_with('2'))
                    .map(|(code, r)| (code.parse().expect("a status"), r.clone()))
                    .expect("a success response");
                operations.push(Operation {
                    id: op["operationId"].as_str().unwrap_or_default().to_owned(),
                    method: method.to_uppercase(),
                    path: path.clone(),
                    parameters: op["parameters"].as_array().cloned().unwrap_or_default(),
                    request: op.pointer("/requestBody/content/application~1json/schema").cloned(),
                    success: (status, response.pointer("/content/application~1json/schema").cloned()),
                    responses,
                });
            }
        }
        operations
    }

    /// A named component schema.
    pub fn component(&self, name: &str) -> Value {
        self.doc["components"]["schemas"][name].clone()
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let target = self.doc.pointer(reference.trim_start_matches('#')).expect("$ref resolves");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Every way `value` breaks `schema`, each prefixed with where (`$.values[0].id`).
    pub fn validate(&self, value: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, schema, "$", &mut errors);
        errors
    }

    fn check(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let mut fail = |message: String| errors.push(format!("{at}: {message}"));
        if value.is_null() {
            let allowed = schema["nullable"] == true
                || schema["enum"].as_array().is_some_and(|e| e.contains(&Value::Null))
                || (schema.get("type").is_none()
                    && schema.get("allOf").is_none()
                    && schema.get("anyOf").is_none()
                    && schema.get("oneOf").is_none());
            if !allowed {
                fail("null is not allowed".into());
            }
            return;
        }
        if let Some(kind) = schema["type"].as_str() {
            let ok = match kind {
                "string" => value.is_string(),
                "integer" => {
                    value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                other => {
                    fail(format!("unsupported type {other}"));
                    true
                }
            };
            if !ok {
                return fail(format!("expected {kind}, got {value}"));
            }
        }
        if let Some(options) = schema["enum"].as_array() {
            if !options.contains(value) {
                fail(format!("{value} is not one of {}", Value::Array(options.clone())));
            }
        }
        if let Some(text) = value.as_str() {
            let length = text.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|min| length < min) {
                fail(format!("shorter than {}", schema["minLength"]));
            }
            if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
                fail(format!("longer than {}", schema["maxLength"]));
            }
            match schema["format"].as_str() {
                Some("date-time" | "timestamp") if !is_hex_timestamp(text) => {
                    fail(format!("{text:?} is not Hex's timestamp format"));
                }
                Some("uuid") if uuid::Uuid::parse_str(text).is_err() => {
                    fail(format!("{text:?} is not a UUID"))
                }
                _ => {}
            }
            match schema["pattern"].as_str() {
                None => {}
                Some(UUID_PATTERN) if !(text.len() == 36 && uuid::Uuid::parse_str(text).is_ok()) => {
                    fail(format!("{text:?} does not match the UUID pattern"));
                }
                Some(UUID_PATTERN) => {}
                Some(other) => fail(format!("the validator does not support pattern {other}")),
            }
        }
        if let Some(number) = value.as_f64() {
            let exclusive = schema["exclusiveMinimum"] == true;
            if let Some(min) = schema["minimum"].as_f64() {
                if number < min || (exclusive && number == min) {
                    fail(format!("{number} is below the minimum {min}"));
                }
            }
            if schema["maximum"].as_f64().is_some_and(|max| number > max) {
                fail(format!("{number} is above the maximum {}", schema["maximum"]));
            }
            if schema["format"] == "int32" && !(i32::MIN as f64..=i32::MAX as f64).contains(&number) {
                fail(format!("{number} is not an int32"));
            }
        }
        if let Some(items) = value.as_array() {
            if schema["maxItems"].as_u64().is_some_and(|max| items.len() as u64 > max) {
                fail(format!("more than {} items", schema["maxItems"]));
            }
            if schema["minItems"].as_u64().is_some_and(|min| (items.len() as u64) < min) {
                fail(format!("fewer than {} items", schema["minItems"]));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item, item_schema, &format!("{at}[{i}]"), errors);
                }
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(object, schema, at, errors);
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            self.check(value, part, at, errors);
        }
        if let Some(options) = schema["anyOf"].as_array() {
            let results: Vec<Vec<String>> = options.iter().map(|o| self.validate(value, o)).collect();
            if results.iter().all(|r| !r.is_empty()) {
                errors.push(format!("{at}: matches none of anyOf: {}", summary(&results)));
            }
        }
        if let Some(options) = schema["oneOf"].as_array() {
            let results: Vec<Vec<String>> = options.iter().map(|o| self.validate(value, o)).collect();
            let matching = results.iter().filter(|r| r.is_empty()).count();
            if matching != 1 {
                errors.push(format!("{at}: matches {matching} of oneOf (one wanted): {}", summary(&results)));
            }
        }
    }

    fn check_object(&self, object: &Map<String, Value>, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(format!("{at}: missing required {name:?}"));
            }
        }
        for (key, item) in object {
            let path = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(property) => self.check(item, property, &path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{path}: not allowed (additionalProperties: false)"))
                    }
                    Some(extra @ Value::Object(_)) => self.check(item, extra, &path, errors),
                    _ => {}
                },
            }
        }
    }

    /// A minimal value for `schema`: required properties only, empty arrays, first enum values and
    /// first `anyOf`/`oneOf` variants. `pick` may supply a value for a property by its name.
    pub fn example(&self, schema: &Value, name: &str, pick: &dyn Fn(&str) -> Option<Value>) -> Value {
        if let Some(value) = pick(name) {
            return value;
        }
        let schema = self.resolve(schema);
        if let Some(first) = schema["enum"].as_array().and_then(|e| e.iter().find(|v| !v.is_null())) {
            return first.clone();
        }
        if let Some(parts) = schema["allOf"].as_array() {
            let mut merged = Map::new();
            for part in parts {
                match self.example(part, name, pick) {
                    Value::Object(fields) => merged.extend(fields),
                    other => return other,
                }
            }
            return Value::Object(merged);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(first) = schema[key].as_array().and_then(|o| o.first()) {
                return self.example(first, name, pick);
            }
        }
        match schema["type"].as_str() {
            Some("string") if schema["format"] == "uuid" => Value::from(uuid::Uuid::new_v4().to_string()),
            Some("string") => Value::from("example"),
            Some("integer") | Some("number") => {
                Value::from(schema["minimum"].as_f64().unwrap_or(1.0).max(1.0) as i64)
            }
            Some("boolean") => Value::Bool(false),
            Some("array") => match schema["minItems"].as_u64() {
                Some(n) if n > 0 => Value::Array(vec![self.example(&schema["items"], name, pick)]),
                _ => Value::Array(Vec::new()),
            },
            Some("object") | None if schema.get("properties").is_some() || schema["type"] == "object" => {
                let mut object = Map::new();
                for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str)
                {
                    let property = &schema["properties"][required];
                    object.insert(required.to_owned(), self.example(property, required, pick));
                }
                Value::Object(object)
            }
            _ => Value::from("example"),
        }
    }
}

/// The first error of each failed alternative, for anyOf/oneOf messages.
fn summary(results: &[Vec<String>]) -> String {
    results.iter().map(|r| r.first().cloned().unwrap_or_else(|| "ok".into())).collect::<Vec<_>>().join(" | ")
}

#[test]
fn the_validator_catches_what_the_spec_forbids() {
    let spec = Spec::load();
    let project = spec.component("ProjectApiResource");
    let good = serde_json::json!({
        "id": "6a3b0c4e-1f2d-4c5b-8a9e-0d1c2b3a4f5e", "title": "t", "description": null, "type": "PROJECT",
        "creator": {"email": "a@b.c"}, "owner": {"email": "a@b.c"}, "status": null, "categories": [],
        "reviews": {"required": false},
        "analytics": {"publishedResultsUpdatedAt": null, "lastViewedAt": null,
            "appViews": {"lastThirtyDays": 0, "lastFourteenDays": 0, "lastSevenDays": 0, "allTime": 0}},
        "lastEditedAt": "2024-01-01T00:00:00.000Z", "lastPublishedAt": null, "createdAt": "2024-01-01T00:00:00.000Z",
        "archivedAt": null, "trashedAt": null, "schedules": []
    });
    assert_eq!(spec.validate(&good, &project), Vec::<String>::new());
    let cases: [(&str, Value); 6] = [
        ("/createdAt", Value::from("2024-01-01T00:00:00Z")),
        ("/id", Value::from("not-a-uuid")),
        ("/type", Value::from("NOTEBOOK")),
        ("/title", Value::Null),
        ("/analytics/appViews/allTime", Value::from(1.5)),
        ("/extra", Value::from(1)),
    ];
    for (pointer, bad) in cases {
        let mut body = good.clone();
        match body.pointer_mut(pointer) {
            Some(slot) => *slot = bad,
            None => body["extra"] = bad,
        }
        assert!(!spec.validate(&body, &project).is_empty(), "{pointer} should fail");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("schedules");
    assert!(!spec.validate(&missing, &project).is_empty());
    // anyOf: a workspace token's Me body matches the second variant only.
    let me = spec.operations().into_iter().find(|o| o.id == "Me").unwrap().success.1.unwrap();
    assert!(spec.validate(&serde_json::json!({"org": {"id": "x"}, "token": {"exp": null}}), &me).is_empty());
    assert!(!spec.validate(&serde_json::json!({"token": {"exp": null}}), &me).is_empty());
}
