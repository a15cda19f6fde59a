//! Semantic projects (tsoa error style), under both `/v1/semantic-projects/…` and
//! `/v1/semantic-models/…`: IngestSemanticProject and UpdateSemanticProject. Semantic projects
//! are made with [`crate::FakeHex::add_semantic_project`]; the API has no call that creates one.
//!
//! Ingest takes the spec's JSON options (`verbose`, `debug`, `dryRun`), or a zip file sent as
//! `application/zip`, `application/octet-stream` or `multipart/form-data` (its bytes must start
//! like a zip; they are not unpacked). Any other content type is a 415.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::caller::Caller;
use super::context::PathParams;
use crate::errors::HexError;
use crate::model::Workspace;
use crate::{timestamp, FakeHex};

/// Syncs a semantic project: `201` listing what was synced (with `verbose`, the default).
pub(crate) async fn ingest(
    State(hex): State<FakeHex>,
    caller: Caller,
    headers: HeaderMap,
    path: PathParams,
    body: Bytes,
) -> Result<Response, HexError> {
    let id = caller.uuid(path.get("semanticProjectId"), "semanticProjectId")?;
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (verbose, debug, dry_run) = match media.as_str() {
        "application/json" => {
            let options = caller.body(&body)?;
            (
                options.opt_bool("verbose")?.unwrap_or(true),
                options.opt_bool("debug")?.unwrap_or(false),
                options.opt_bool("dryRun")?.unwrap_or(false),
            )
        }
        "application/zip" | "application/octet-stream" | "multipart/form-data" => {
            if !body.windows(4).any(|w| w == b"PK\x03\x04") {
                return Err(caller
                    .bad_request("The upload is not a zip file")
                    .with_field("problems", json!([])));
            }
            (true, false, false)
        }
        other => {
            return Err(
                caller.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Unsupported content type {other}"))
            );
        }
    };
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let project = ws
        .semantic_projects
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| caller.not_found("Semantic project"))?;
    let mut contents: Vec<String> = Vec::new();
    if verbose {
        contents.extend(project.datasets.iter().map(|d| format!("dataset:{}", d.name)));
        contents.extend(project.views.iter().map(|v| format!("view:{}", v.name)));
    }
    let mut warnings: Vec<String> = Vec::new();
    if project.datasets.is_empty() && project.views.is_empty() {
        warnings.push(format!("Semantic project {} has no datasets or views", project.name));
    }
    if !dry_run {
        project.syncs += 1;
        project.last_synced_at = Some(timestamp::now());
    }
    let mut answer = json!({
        "traceId": caller.trace.as_str(),
        "contents": contents,
        "warnings": warnings,
        "skipped": {},
        "problems": [],
    });
    if debug {
        answer["debug"] = json!({ "metricflowModelSchemas": {} });
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Sets or removes (`null`) statuses of datasets and views, all or nothing. Failures come back as
/// `details` items: 404 when every failure is `not_found`, else 400.
pub(crate) async fn update(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("semanticProjectId"), "semanticProjectId")?;
    let body = caller.body(&body)?;
    let mut updates = Vec::new();
    for update in body.objects("updates")? {
        let kind = update.enumerated("type", &["DATASET", "VIEW"])?;
        let name = update.str("name")?;
        let status = update.nullable_str("status")?.ok_or_else(|| update.bad("status", "is required"))?;
        updates.push((kind, name, status));
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let project = ws
        .semantic_projects
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| caller.not_found("Semantic project"))?;
    let mut failures: Vec<Value> = Vec::new();
    for (kind, name, status) in &updates {
        if let Some(bad) = status.as_deref().filter(|s| !Workspace::is_status(s)) {
            failures.push(json!({ "name": name, "type": kind, "reason": "invalid_status", "value": bad }));
        } else if !project.objects_mut(kind).iter().any(|o| o.name == *name) {
            failures.push(json!({ "name": name, "type": kind, "reason": "not_found" }));
        }
    }
    if !failures.is_empty() {
        let (status, message) = match failures.iter().all(|f| f["reason"] == "not_found") {
            true => (StatusCode::NOT_FOUND, "Semantic objects not found"),
            false => (StatusCode::BAD_REQUEST, "Invalid semantic object updates"),
        };
        return Err(caller.error(status, message).with_detail_list(failures));
    }
    let mut updated = json!({ "views": [], "datasets": [] });
    for (kind, name, status) in updates {
        if let Some(object) = project.objects_mut(&kind).iter_mut().find(|o| o.name == name) {
            object.status = status.clone();
        }
        let list = if kind == "VIEW" { "views" } else { "datasets" };
        updated[list].as_array_mut().expect("an array").push(json!({ "status": status, "name": name }));
    }
    Ok(Json(json!({ "updated": updated })))
}
