//! Project runs: RunProject, GetRunStatus and GetProjectRuns (coded error style) and CancelRun
//! (tsoa error style). The same handlers serve Hex's plural paths (`/v1/projects/{id}/runs…`) and
//! the legacy singular ones (`/v1/project/{id}/run…`) that orchestrator providers still call.
//!
//! Where the spec lists no 404 (all four operations), an unknown project or run still answers 404
//! in the endpoint's style: that is what a caller can act on, and it is how hexbroker reads "not
//! found". Malformed ids answer 400, since the spec declares them UUIDs.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::context::{int_param, Params, TraceId, WorkspaceCtx};
use super::projects::{parse_uuid, ProjectPath};
use crate::errors::{HexError, Style};
use crate::model::{Identity, Run, RunStatus, Scope};
use crate::{timestamp, FakeHex};

/// The `{projectId}/…/{runId}` path parameters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunPath {
    project_id: String,
    run_id: String,
}

/// Scopes that may read runs.
const READ_RUNS: [Scope; 2] = [Scope::ProjectsRead, Scope::ProjectsRun];

/// Starts a run of the project's published version: `201` with the run's ids and URLs.
/// `dryRun: true` validates and answers the same way, but no run is kept.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    uri: Uri,
    Path(path): Path<ProjectPath>,
    body: Bytes,
) -> Result<Response, HexError> {
    let style = Style::Coded;
    caller.require(&[Scope::ProjectsRun], style, &trace)?;
    let project_id = parse_uuid(&path.project_id, "projectId", style, &trace)?;
    let dry_run =
        parse_run_body(&body).map_err(|details| HexError::bad_request(style, details, trace.as_str()))?;

    let mut model = hex.lock();
    let plan = model.run_plan;
    let ws = model.workspaces.get_mut(&workspace.subdomain).expect("the front door checked the workspace");
    let version = ws
        .project(project_id)
        .ok_or_else(|| HexError::not_found(style, "Project", trace.as_str()))?
        .published_version;
    let run = Run {
        id: Uuid::new_v4(),
        project_id,
        project_version: version,
        created_at: timestamp::now(),
        plan,
        killed_at: None,
    };
    let body = json!({
        "projectId": project_id.to_string(),
        "runId": run.id.to_string(),
        "runUrl": run_url(&workspace, &run),
        // The status URL follows the path form the caller used (plural or legacy singular).
        "runStatusUrl": format!("{}{}/{}", workspace.origin, uri.path(), run.id),
        "traceId": trace.as_str(),
        "projectVersion": version,
    });
    if !dry_run {
        ws.runs.push(run);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Checks RunProject's optional JSON body; returns whether it asks for a dry run.
fn parse_run_body(body: &[u8]) -> Result<bool, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let object = value.as_object().ok_or("request body must be a JSON object")?;
    if object.get("inputParams").is_some_and(|v| !v.is_object()) {
        return Err("inputParams must be an object".into());
    }
    match object.get("dryRun") {
        None => Ok(false),
        Some(Value::Bool(dry)) => Ok(*dry),
        Some(_) => Err("dryRun must be a boolean".into()),
    }
}

/// The status of one run.
pub(crate) async fn status(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    Path(path): Path<RunPath>,
) -> Result<Json<Value>, HexError> {
    let style = Style::Coded;
    caller.require(&READ_RUNS, style, &trace)?;
    let project_id = parse_uuid(&path.project_id, "projectId", style, &trace)?;
    let run_id = parse_uuid(&path.run_id, "runId", style, &trace)?;
    let model = hex.lock();
    let run = model.workspaces[&workspace.subdomain]
        .runs
        .iter()
        .find(|r| r.id == run_id && r.project_id == project_id)
        .ok_or_else(|| HexError::not_found(style, "Run", trace.as_str()))?;
    Ok(Json(run_json(&workspace, run, timestamp::now(), &trace)))
}

/// Cancels a run: `204` with no body, and the run is KILLED. A run that already finished
/// answers 422.
pub(crate) async fn cancel(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    Path(path): Path<RunPath>,
) -> Result<StatusCode, HexError> {
    let style = Style::Tsoa;
    caller.require(&[Scope::ProjectsRun], style, &trace)?;
    let project_id = parse_uuid(&path.project_id, "projectId", style, &trace)?;
    let run_id = parse_uuid(&path.run_id, "runId", style, &trace)?;
    let mut model = hex.lock();
    let run = model
        .workspaces
        .get_mut(&workspace.subdomain)
        .expect("the front door checked the workspace")
        .runs
        .iter_mut()
        .find(|r| r.id == run_id && r.project_id == project_id)
        .ok_or_else(|| HexError::not_found(style, "Run", trace.as_str()))?;
    run.cancel(timestamp::now()).map_err(|finished| {
        HexError::new(
            style,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Run has already finished with status {}", finished.as_str()),
            trace.as_str(),
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A project's runs, newest first, with offset pagination.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    uri: Uri,
    params: Params,
    Path(path): Path<ProjectPath>,
) -> Result<Json<Value>, HexError> {
    let style = Style::Coded;
    caller.require(&READ_RUNS, style, &trace)?;
    let project_id = parse_uuid(&path.project_id, "projectId", style, &trace)?;
    let bad = |details: String| HexError::bad_request(style, details, trace.as_str());
    let limit = int_param(&params, "limit", 1, 100, 25).map_err(bad)?;
    let offset = int_param(&params, "offset", 0, u64::from(u32::MAX), 0).map_err(bad)?;
    let status_filter = match params.get("statusFilter") {
        None => None,
        Some(raw) => Some(
            RunStatus::parse(raw).ok_or_else(|| bad(format!("statusFilter {raw:?} is not a run status")))?,
        ),
    };
    // Every fake run is API-triggered.
    let api_runs_wanted = match params.get("runTriggerFilter") {
        None | Some("API") | Some("ALL") => true,
        Some("SCHEDULED") | Some("APP_REFRESH") => false,
        Some(raw) => return Err(bad(format!("runTriggerFilter {raw:?} is not a run trigger"))),
    };

    let now = timestamp::now();
    let model = hex.lock();
    let ws = &model.workspaces[&workspace.subdomain];
    ws.project(project_id).ok_or_else(|| HexError::not_found(style, "Project", trace.as_str()))?;
    let matching: Vec<&Run> = ws
        .runs
        .iter()
        .rev()
        .filter(|r| r.project_id == project_id && api_runs_wanted)
        .filter(|r| status_filter.is_none_or(|s| r.status(now) == s))
        .collect();
    let (limit, offset) = (limit as usize, offset as usize);
    let runs: Vec<Value> =
        matching.iter().skip(offset).take(limit).map(|r| run_json(&workspace, r, now, &trace)).collect();
    let page_url = |offset: usize| {
        let mut url = format!("{}{}?limit={limit}&offset={offset}", workspace.origin, uri.path());
        if let Some(status) = status_filter {
            url.push_str(&format!("&statusFilter={}", status.as_str()));
        }
        url
    };
    let next_page = (offset + limit < matching.len()).then(|| page_url(offset + limit));
    let previous_page = (offset > 0).then(|| page_url(offset.saturating_sub(limit)));
    Ok(Json(json!({
        "runs": runs,
        "nextPage": next_page,
        "previousPage": previous_page,
        "traceId": trace.as_str(),
    })))
}

/// Where a person would watch the run in Hex's app.
fn run_url(workspace: &WorkspaceCtx, run: &Run) -> String {
    format!("{}/app/{}/latest?runId={}", workspace.base_url, run.project_id, run.id)
}

/// A run as the spec's `ProjectRun` schema describes it; note `projectVersion` is a numeric
/// string here, while RunProject answers it as an integer.
fn run_json(workspace: &WorkspaceCtx, run: &Run, now: DateTime<Utc>, trace: &TraceId) -> Value {
    json!({
        "projectId": run.project_id.to_string(),
        "projectVersion": run.project_version.to_string(),
        "runId": run.id.to_string(),
        "runUrl": run_url(workspace, run),
        "status": run.status(now).as_str(),
        "runTrigger": "API",
        "startTime": run.start_time(now).map(timestamp::format),
        "endTime": run.end_time(now).map(timestamp::format),
        "elapsedTime": run.elapsed_ms(now),
        "traceId": trace.as_str(),
    })
}
