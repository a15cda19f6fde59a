//! The spec walk: every operation in Hex's OpenAPI file, called with a well-formed request by a
//! token holding every scope, under unlimited rate limits, answers its documented success status
//! with a body that validates against its documented schema (or no body where none is
//! documented), and every timestamp in it is in Hex's format. All failures are reported at once.
//!
//! Path parameters name objects made first through the fake's API (groups, collections, data
//! connections, cells, guides, threads, runs) or its Rust API (projects, a chart cell, a semantic
//! project, users). Request bodies are generated from the spec's request schemas (required fields
//! only), with a few per-operation additions so that they name real objects.

use std::collections::HashMap;
use std::time::Duration;

use fake_hex::{RateLimits, Scope};
use reqwest::Method;
use serde_json::{json, Value};

use crate::openapi::{Operation, Spec};
use crate::support::{is_hex_timestamp, Harness};

/// The objects the walk's requests name.
pub struct Fixtures {
    /// By parameter or body field name (`projectId`, `groupId`, …).
    ids: HashMap<&'static str, String>,
    /// Per operation, where it needs another object than the default (`DeleteGroup` deletes a
    /// group of its own).
    special: HashMap<(&'static str, &'static str), String>,
}

impl Fixtures {
    fn id(&self, operation: &str, name: &str) -> Option<String> {
        let special = self.special.iter().find(|((op, n), _)| *op == operation && *n == name).map(|(_, v)| v);
        special.or_else(|| self.ids.get(name)).cloned()
    }
}

fn id_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_else(|| panic!("{key} in {value}")).to_owned()
}

/// Makes everything the walk names, in workspace `acme`.
pub async fn fixtures(h: &Harness, token: &str) -> Fixtures {
    let hex = &h.hex;
    let project = hex.add_project("acme", "Revenue");
    let chart = hex.add_chart_cell("acme", &project, "Revenue by month").expect("a chart cell");
    let semantic = hex.add_semantic_project("acme", "Metrics", &["orders"], &["revenue"]);
    hex.add_topic("acme", "revenue");
    let leaver = hex.add_user("acme", "leaver@example.com", Some("Leaver"));
    let viewer = hex.add_user("acme", "viewer@example.com", None);

    let post =
        |path: &'static str, body: Value, status: u16| h.json(Method::POST, path, token, Some(body), status);
    let group = id_of(&post("/v1/groups", json!({ "name": "Analysts" }), 201).await, "id");
    let doomed_group = id_of(&post("/v1/groups", json!({ "name": "Temporary" }), 201).await, "id");
    let collection = id_of(&post("/v1/collections", json!({ "name": "Finance" }), 201).await, "id");
    let connection = post(
        "/v1/data-connections",
        json!({
            "name": "Warehouse",
            "type": "postgres",
            "connectionDetails": { "postgres": {
                "hostname": "db.example.com", "port": 5432, "database": "analytics",
                "username": "hex", "password": "secret",
            }},
        }),
        201,
    )
    .await;
    let connection = id_of(&connection, "id");
    let sql = json!({
        "projectId": project, "cellType": "SQL",
        "contents": { "sqlCell": { "source": "select * from public.orders", "dataConnectionId": connection } },
    });
    let sql_cell = id_of(&post("/v1/cells", sql, 200).await, "id");
    let code = json!({ "projectId": project, "cellType": "CODE", "contents": { "codeCell": { "source": "1 + 1" } } });
    let doomed_cell = id_of(&post("/v1/cells", code, 200).await, "id");
    let guides = h
        .json(
            Method::PUT,
            "/v1/guides/draft",
            token,
            Some(json!({ "files": [
                { "filePath": "style.md", "contents": "# Style" },
                { "filePath": "scratch.md", "contents": "# Scratch" },
            ]})),
            200,
        )
        .await;
    let (guide, doomed_guide) = (id_of(&guides["files"][0], "id"), id_of(&guides["files"][1], "id"));
    let thread =
        id_of(&post("/v1/threads", json!({ "prompt": "How is revenue doing?" }), 200).await, "threadId");

    // One run to cancel (still pending), one that has completed (for its chart image).
    hex.set_run_durations(Duration::from_secs(600), Duration::from_secs(600));
    let runs = format!("/v1/projects/{project}/runs");
    let pending = h.json(Method::POST, &runs, token, None, 201).await;
    hex.set_run_durations(Duration::ZERO, Duration::ZERO);
    let completed = h.json(Method::POST, &runs, token, None, 201).await;

    let ids = HashMap::from([
        ("projectId", project),
        ("runId", id_of(&completed, "runId")),
        ("staticId", chart.static_id),
        ("cellId", sql_cell),
        ("groupId", group),
        ("collectionId", collection),
        ("dataConnectionId", connection),
        ("orgGuideFileId", guide.clone()),
        ("semanticProjectId", semantic),
        ("id", thread.clone()),
        ("threadId", thread),
        ("userId", leaver),
        ("viewerId", viewer),
    ]);
    let special = HashMap::from([
        (("DeleteGroup", "groupId"), doomed_group),
        (("DeleteCell", "cellId"), doomed_cell),
        (("GetChartImageFromLogic", "cellId"), chart.id),
        (("DeleteGuideDraft", "orgGuideFileId"), doomed_guide),
        (("CancelRun", "runId"), id_of(&pending, "runId")),
    ]);
    Fixtures { ids, special }
}

/// What each operation's generated body gets on top, so that it names real objects.
fn additions(operation: &str, f: &Fixtures) -> Value {
    let id = |name| f.id(operation, name).expect("a fixture");
    match operation {
        "EditProjectSharingUsers" => {
            json!({ "sharing": { "upsert": { "users": [{ "user": { "id": id("viewerId") }, "access": "CAN_VIEW" }] } } })
        }
        "EditProjectSharingGroups" => {
            json!({ "sharing": { "upsert": { "groups": [{ "group": { "id": id("groupId") }, "access": "APP_ONLY" }] } } })
        }
        "EditProjectSharingCollections" => json!({ "sharing": { "upsert": { "collections": [
            { "collection": { "id": id("collectionId") }, "access": "CAN_VIEW" },
        ] } } }),
        "EditProjectSharingOrgAndPublic" => {
            json!({ "sharing": { "workspace": "CAN_VIEW", "publicWeb": "APP_ONLY" } })
        }
        "UpdateSemanticProject" => {
            json!({ "updates": [{ "type": "DATASET", "name": "orders", "status": "Endorsed" }] })
        }
        "UpdateDataConnectionSchema" => {
            json!({ "updates": [{ "type": "TABLE", "name": "orders", "status": "Endorsed" }] })
        }
        "UpsertGuideDraft" => json!({ "files": [{ "filePath": "walk.md", "contents": "# Walk" }] }),
        "PublishGuideDrafts" => json!({ "orgGuideFileIds": [id("orgGuideFileId")] }),
        "UpdateProject" => json!({ "status": "Endorsed" }),
        "CreateThread" => json!({ "attachments": { "projectIds": [id("projectId")] } }),
        _ => json!({}),
    }
}

fn merge(target: &mut Value, addition: Value) {
    match (target, addition) {
        (Value::Object(target), Value::Object(addition)) => {
            for (key, value) in addition {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, addition) => *target = addition,
    }
}

/// The concrete requests for an operation: (path with ids and required query, body).
pub fn requests(
    spec: &Spec,
    op: &Operation,
    fill: &dyn Fn(&str) -> Option<String>,
    body_extra: Value,
) -> Vec<(String, Option<Value>)> {
    let query: Vec<String> = op
        .required_params("query")
        .iter()
        .map(|name| {
            format!("{name}={}", fill(name).unwrap_or_else(|| panic!("{}: no value for query {name}", op.id)))
        })
        .collect();
    let body = op.request.as_ref().map(|schema| {
        let pick = |name: &str| match name {
            "projectId" | "dataConnectionId" => fill(name).map(Value::from),
            _ => None,
        };
        let mut body = spec.example(schema, "", &pick);
        merge(&mut body, body_extra.clone());
        body
    });
    op.concrete_paths()
        .into_iter()
        .map(|path| {
            let mut path = path;
            for name in op.required_params("path") {
                let value = fill(&name).unwrap_or_else(|| panic!("{}: no value for {name}", op.id));
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            (path, body.clone())
        })
        .collect()
}

/// Names of fields that hold timestamps wherever they appear.
const TIMESTAMP_FIELDS: [&str; 13] = [
    "createdAt",
    "updatedAt",
    "lastLoginDate",
    "lastEditedAt",
    "lastPublishedAt",
    "archivedAt",
    "trashedAt",
    "startTime",
    "endTime",
    "timestamp",
    "publishedResultsUpdatedAt",
    "lastViewedAt",
    "warningsGeneratedAt",
];

/// Timestamps anywhere in `value` that are not in Hex's format.
pub fn bad_timestamps(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let path = format!("{at}.{key}");
                if let (true, Some(text)) = (TIMESTAMP_FIELDS.contains(&key.as_str()), item.as_str()) {
                    if !is_hex_timestamp(text) {
                        found.push(format!("{path}: {text:?} is not Hex's timestamp format"));
                    }
                }
                bad_timestamps(item, &path, found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                bad_timestamps(item, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// Walks every operation with `token`; returns what went wrong, and how many requests were sent.
async fn walk(h: &Harness, spec: &Spec, token: &str) -> (Vec<String>, usize) {
    h.hex.set_rate_limits(RateLimits::unlimited());
    let f = fixtures(h, token).await;
    let mut failures = Vec::new();
    let mut sent = 0;
    for op in spec.operations() {
        let fill = |name: &str| f.id(&op.id, name);
        for (path, body) in requests(spec, &op, &fill, additions(&op.id, &f)) {
            sent += 1;
            let method = Method::from_bytes(op.method.as_bytes()).unwrap();
            let response = h.send(method, "acme", &path, token, body.as_ref()).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let label = format!("{} {} {path}", op.id, op.method);
            if status != op.success.0 {
                failures.push(format!("{label}: status {status}, documented {}: {text}", op.success.0));
                continue;
            }
            match &op.success.1 {
                None if !text.is_empty() => {
                    failures.push(format!("{label}: a body where none is documented: {text}"))
                }
                None => {}
                Some(schema) => match serde_json::from_str::<Value>(&text) {
                    Err(e) => failures.push(format!("{label}: not JSON ({e}): {text}")),
                    Ok(body) => {
                        let mut errors = spec.validate(&body, schema);
                        bad_timestamps(&body, "$", &mut errors);
                        failures.extend(errors.into_iter().map(|e| format!("{label}: {e}")));
                    }
                },
            }
        }
    }
    (failures, sent)
}

fn report(failures: &[String], sent: usize, spec: &Spec) {
    let operations = spec.operations();
    assert_eq!(operations.len(), 52, "the spec's operations");
    let expected: usize = operations.iter().map(|o| o.concrete_paths().len()).sum();
    assert_eq!(sent, expected, "every operation (both semantic prefixes) was called");
    assert!(failures.is_empty(), "{} of {sent} calls failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn every_operation_answers_as_documented_for_an_admins_personal_token() {
    let spec = Spec::load();
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let (failures, sent) = walk(&h, &spec, &token).await;
    report(&failures, sent, &spec);
}

#[tokio::test]
async fn every_operation_answers_as_documented_for_a_workspace_token_with_every_scope() {
    let spec = Spec::load();
    let h = Harness::start().await;
    let token = h.hex.add_workspace_token("acme", &Scope::all());
    let (failures, sent) = walk(&h, &spec, &token).await;
    report(&failures, sent, &spec);
}
