//! `GET /v1/projects` (ListProjects; tsoa error style) and `GET /v1/projects/{projectId}`
//! (GetProject; coded error style).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::context::{int_param, Params, TraceId, WorkspaceCtx};
use crate::errors::{HexError, Style};
use crate::model::{decode_cursor, page, Identity, Project, Scope};
use crate::{timestamp, FakeHex};

/// The `{projectId}` path parameter.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectPath {
    pub(crate) project_id: String,
}

/// Lists the workspace's projects newest first, with cursor pagination.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let style = Style::Tsoa;
    caller.require(&[Scope::ProjectsRead], style, &trace)?;
    let bad = |details: String| HexError::bad_request(style, details, trace.as_str());
    let limit = int_param(&params, "limit", 1, 100, 25).map_err(bad)?;
    let cursor = |name: &str| match params.get(name) {
        None | Some("") => Ok(None),
        Some(raw) => decode_cursor(raw).map(Some).ok_or_else(|| bad(format!("{name} is not a valid cursor"))),
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    if after.is_some() && before.is_some() {
        return Err(bad("after and before cannot be used together".into()));
    }
    let include_sharing = params.get("includeSharing") == Some("true");

    let model = hex.lock();
    let projects = &model.workspaces[&workspace.subdomain].projects;
    let page = page(projects, limit as usize, after, before);
    let values: Vec<Value> = page.items.iter().map(|p| project_json(p, include_sharing)).collect();
    Ok(Json(json!({
        "values": values,
        "pagination": { "after": page.after, "before": page.before },
    })))
}

/// One project's metadata.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    workspace: WorkspaceCtx,
    caller: Identity,
    trace: TraceId,
    params: Params,
    Path(path): Path<ProjectPath>,
) -> Result<Json<Value>, HexError> {
    let style = Style::Coded;
    caller.require(&[Scope::ProjectsRead], style, &trace)?;
    let not_found = || HexError::not_found(style, "Project", trace.as_str());
    // GetProject declares `projectId` a plain string, so a malformed id is simply not found.
    let id = Uuid::parse_str(&path.project_id).map_err(|_| not_found())?;
    let model = hex.lock();
    let project = model.workspaces[&workspace.subdomain].project(id).ok_or_else(not_found)?;
    Ok(Json(project_json(project, params.get("includeSharing") == Some("true"))))
}

/// Parses a `{projectId}` that the spec declares a UUID; malformed ids are a 400.
pub(crate) fn parse_uuid(raw: &str, name: &str, style: Style, trace: &TraceId) -> Result<Uuid, HexError> {
    Uuid::parse_str(raw).map_err(|_| {
        HexError::new(style, StatusCode::BAD_REQUEST, "Invalid input data", trace.as_str())
            .with_details(format!("{name} must be a UUID"))
    })
}

/// A project as the spec's `Project` / `ProjectApiResource` schemas describe it (every required
/// field present; `sharing` only when asked for).
fn project_json(project: &Project, include_sharing: bool) -> Value {
    let created = timestamp::format(project.created_at);
    let mut value = json!({
        "id": project.id.to_string(),
        "title": project.title,
        "description": null,
        "type": "PROJECT",
        "creator": { "email": project.creator_email },
        "owner": { "email": project.creator_email },
        "status": { "name": "Published" },
        "categories": [],
        "reviews": { "required": false },
        "analytics": {
            "appViews": {
                "allTime": 0,
                "lastSevenDays": 0,
                "lastFourteenDays": 0,
                "lastThirtyDays": 0,
            },
            "lastViewedAt": null,
            "publishedResultsUpdatedAt": created,
        },
        "lastEditedAt": created,
        "lastPublishedAt": created,
        "createdAt": created,
        "archivedAt": null,
        "trashedAt": null,
        "schedules": [],
    });
    if include_sharing {
        value["sharing"] = json!({
            "users": [{ "user": { "email": project.creator_email }, "access": "FULL_ACCESS" }],
            "collections": [],
            "groups": [],
            "workspace": { "access": "CAN_VIEW" },
            "publicWeb": { "access": "NONE" },
            "support": { "access": "NONE" },
        });
    }
    value
}
