//! Project runs: RunProject, GetRunStatus and GetProjectRuns (coded error style) and CancelRun
//! (tsoa error style). The same handlers serve Hex's plural paths (`/v1/projects/{id}/runs…`) and
//! the legacy singular ones (`/v1/project/{id}/run…`) that orchestrator providers still call.
//!
//! Where the spec lists no 404 (all four operations), an unknown project or run still answers 404
//! in the endpoint's style: that is what a caller can act on, and it is how hexbroker reads "not
//! found". Malformed ids answer 400. A project that was never published cannot run (422).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, WorkspaceCtx};
use super::projects::ProjectPath;
use crate::errors::HexError;
use crate::model::{Notification, Run, RunStatus, Workspace};
use crate::{timestamp, FakeHex};

/// The `{projectId}/…/{runId}` path parameters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunPath {
    pub(crate) project_id: String,
    pub(crate) run_id: String,
}

/// Starts a run of the project's published version: `201` with the run's ids and URLs.
/// `dryRun: true` validates and answers the same way, but no run is kept.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    uri: Uri,
    Path(path): Path<ProjectPath>,
    body: Bytes,
) -> Result<Response, HexError> {
    let project_id = caller.uuid(&path.project_id, "projectId")?;
    let body = caller.optional_body(&body)?;
    let dry_run = match &body {
        Some(body) => check_run_body(body)?,
        None => false,
    };

    let mut model = hex.lock();
    let plan = model.run_plan;
    let ws = model.ws_mut(caller.subdomain());
    let project = ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    if !project.is_published() {
        return Err(caller.unprocessable("The project has no published version to run"));
    }
    let notifications = match &body {
        Some(body) => notifications(ws, body)?,
        None => Vec::new(),
    };
    let run = Run {
        id: Uuid::new_v4(),
        project_id,
        project_version: project.published_version,
        created_at: timestamp::now(),
        plan,
        killed_at: None,
        notifications,
    };
    let workspace = &caller.workspace;
    let mut answer = json!({
        "projectId": project_id.to_string(),
        "runId": run.id.to_string(),
        "runUrl": run_url(workspace, &run),
        // The status URL follows the path form the caller used (plural or legacy singular).
        "runStatusUrl": format!("{}/{}", workspace.url_of(uri.path()), run.id),
        "traceId": caller.trace.as_str(),
        "projectVersion": run.project_version,
    });
    if !run.notifications.is_empty() {
        answer["notifications"] = notifications_json(&run);
    }
    if !dry_run {
        ws.runs.push(run);
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Checks RunProject's optional body; returns whether it asks for a dry run.
fn check_run_body(body: &Fields) -> Result<bool, HexError> {
    if body.get("inputParams").is_some_and(|v| !v.is_object()) {
        return Err(body.bad("inputParams", "must be an object"));
    }
    for flag in ["updateCache", "updatePublishedResults", "useCachedSqlResults"] {
        body.opt_bool(flag)?;
    }
    body.opt_str("viewId")?;
    Ok(body.opt_bool("dryRun")?.unwrap_or(false))
}

/// The recipients of RunProject's `notifications`: every user, group and Slack channel named.
/// Users and groups must exist.
fn notifications(ws: &Workspace, body: &Fields) -> Result<Vec<Notification>, HexError> {
    let mut recipients = Vec::new();
    for item in body.opt_objects("notifications")?.unwrap_or_default() {
        let kind = item.enumerated("type", &["SUCCESS", "FAILURE", "ALL"])?;
        let include_success_screenshot = item
            .opt_bool("includeSuccessScreenshot")?
            .ok_or_else(|| item.bad("includeSuccessScreenshot", "is required"))?;
        let screenshot_format = item.opt_enum("screenshotFormat", &["png", "pdf"])?;
        let (subject, text) = (item.opt_str("subject")?, item.opt_str("body")?);
        let mut named: Vec<(&'static str, String, String)> = Vec::new();
        for id in item.opt_strings("userIds")?.unwrap_or_default() {
            let user = Uuid::parse_str(&id).ok().and_then(|id| ws.active_user(id));
            let user = user.ok_or_else(|| item.bad("userIds", &format!("names no user {id:?}")))?;
            named.push(("USER", id, user.name.clone().unwrap_or_else(|| user.email.clone())));
        }
        for id in item.opt_strings("groupIds")?.unwrap_or_default() {
            let group = Uuid::parse_str(&id).ok().and_then(|id| ws.groups.iter().find(|g| g.id == id));
            let group = group.ok_or_else(|| item.bad("groupIds", &format!("names no group {id:?}")))?;
            named.push(("GROUP", id, group.name.clone()));
        }
        for id in item.opt_strings("slackChannelIds")?.unwrap_or_default() {
            named.push(("SLACK_CHANNEL", id.clone(), format!("#{id}")));
        }
        for (recipient_type, recipient_id, recipient_name) in named {
            recipients.push(Notification {
                kind: kind.clone(),
                recipient_type,
                recipient_id,
                recipient_name,
                include_success_screenshot,
                screenshot_format: screenshot_format.clone(),
                subject: subject.clone(),
                body: text.clone(),
            });
        }
    }
    Ok(recipients)
}

fn notifications_json(run: &Run) -> Value {
    let items: Vec<Value> = run
        .notifications
        .iter()
        .map(|n| {
            let mut item = json!({
                "type": n.kind,
                "recipientType": n.recipient_type,
                "includeSuccessScreenshot": n.include_success_screenshot,
                "recipient": { "id": n.recipient_id, "name": n.recipient_name },
            });
            if let Some(format) = &n.screenshot_format {
                item["screenshotFormat"] = json!([format]);
            }
            if let Some(subject) = &n.subject {
                item["subject"] = json!(subject);
            }
            if let Some(body) = &n.body {
                item["body"] = json!(body);
            }
            item
        })
        .collect();
    Value::Array(items)
}

/// The status of one run. With header `enable-expanded-stats: true`, also its state events and
/// flag override.
pub(crate) async fn status(
    State(hex): State<FakeHex>,
    caller: Caller,
    headers: HeaderMap,
    Path(path): Path<RunPath>,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.uuid(&path.project_id, "projectId")?;
    let run_id = caller.uuid(&path.run_id, "runId")?;
    let expanded =
        headers.get("enable-expanded-stats").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let model = hex.lock();
    let run =
        find_run(model.ws(caller.subdomain()), project_id, run_id).ok_or_else(|| caller.not_found("Run"))?;
    let now = timestamp::now();
    let mut body = run_json(&caller.workspace, run, now, caller.trace.as_str());
    if expanded {
        let events: Vec<Value> = run
            .history(now)
            .into_iter()
            .map(|(status, at)| json!({ "type": "STATUS", "value": status.as_str(), "timestamp": timestamp::format(at) }))
            .collect();
        body["stateEvents"] = Value::Array(events);
        body["flagConfigOverride"] = json!("{}");
    }
    Ok(Json(body))
}

pub(crate) fn find_run(ws: &Workspace, project_id: Uuid, run_id: Uuid) -> Option<&Run> {
    ws.runs.iter().find(|r| r.id == run_id && r.project_id == project_id)
}

/// Cancels a run: `204` with no body, and the run is KILLED. A run that already finished
/// answers 422.
pub(crate) async fn cancel(
    State(hex): State<FakeHex>,
    caller: Caller,
    Path(path): Path<RunPath>,
) -> Result<StatusCode, HexError> {
    let project_id = caller.uuid(&path.project_id, "projectId")?;
    let run_id = caller.uuid(&path.run_id, "runId")?;
    let mut model = hex.lock();
    let run = model
        .ws_mut(caller.subdomain())
        .runs
        .iter_mut()
        .find(|r| r.id == run_id && r.project_id == project_id)
        .ok_or_else(|| caller.not_found("Run"))?;
    run.cancel(timestamp::now()).map_err(|finished| {
        caller.unprocessable(format!("Run has already finished with status {}", finished.as_str()))
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A project's runs, newest first, with offset pagination.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    uri: Uri,
    params: Params,
    Path(path): Path<ProjectPath>,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.uuid(&path.project_id, "projectId")?;
    let bad = |details: String| caller.bad_request(details);
    let limit = params.int("limit", 1, 100, 25).map_err(bad)?;
    let offset = params.int("offset", 0, u64::from(u32::MAX), 0).map_err(bad)?;
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
    let ws = model.ws(caller.subdomain());
    ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let matching: Vec<&Run> = ws
        .runs
        .iter()
        .rev()
        .filter(|r| r.project_id == project_id && api_runs_wanted)
        .filter(|r| status_filter.is_none_or(|s| r.status(now) == s))
        .collect();
    let (limit, offset) = (limit as usize, offset as usize);
    let trace = caller.trace.as_str();
    let runs: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| run_json(&caller.workspace, r, now, trace))
        .collect();
    let page_url = |offset: usize| {
        let mut url = format!("{}?limit={limit}&offset={offset}", caller.workspace.url_of(uri.path()));
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
        "traceId": trace,
    })))
}

/// Where a person would watch the run in Hex's app.
fn run_url(workspace: &WorkspaceCtx, run: &Run) -> String {
    format!("{}/app/{}/latest?runId={}", workspace.base_url, run.project_id, run.id)
}

/// A run as the spec's `ProjectRun` schema describes it; note `projectVersion` is a numeric
/// string here, while RunProject answers it as an integer.
fn run_json(workspace: &WorkspaceCtx, run: &Run, now: DateTime<Utc>, trace: &str) -> Value {
    let mut body = json!({
        "projectId": run.project_id.to_string(),
        "projectVersion": run.project_version.to_string(),
        "runId": run.id.to_string(),
        "runUrl": run_url(workspace, run),
        "status": run.status(now).as_str(),
        "runTrigger": "API",
        "startTime": run.start_time(now).map(timestamp::format),
        "endTime": run.end_time(now).map(timestamp::format),
        "elapsedTime": run.elapsed_ms(now),
        "traceId": trace,
    });
    if !run.notifications.is_empty() {
        body["notifications"] = notifications_json(run);
    }
    body
}
