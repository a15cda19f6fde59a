//! Projects: ListProjects (tsoa), GetProject, CreateProject and UpdateProject (coded), and the
//! project body every project endpoint answers with.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::context::Params;
use crate::errors::HexError;
use crate::model::{paginate, Project, Start, Workspace};
use crate::{timestamp, FakeHex};

/// The `{projectId}` path parameter.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectPath {
    pub(crate) project_id: String,
}

/// Lists projects (newest first unless sorted otherwise), filtered and cursor-paginated.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "project", 100, 25)?;
    for flag in ["includeArchived", "includeComponents", "includeTrashed", "includeSharing"] {
        params.flag(flag).map_err(bad)?;
    }
    let include_sharing = params.flag("includeSharing").map_err(bad)?;
    let sort_by =
        params.choice("sortBy", &["CREATED_AT", "LAST_EDITED_AT", "LAST_PUBLISHED_AT"]).map_err(bad)?;
    let ascending = params.choice("sortDirection", &["DESC", "ASC"]).map_err(bad)?.as_deref() == Some("ASC");
    let statuses = params.all("statuses");
    let categories = params.all("categories");

    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let mut projects: Vec<&Project> = ws
        .projects
        .iter()
        .filter(|p| statuses.is_empty() || p.status.as_ref().is_some_and(|s| statuses.contains(s)))
        // Fake projects have no categories, so filtering by any category leaves none.
        .filter(|_| categories.is_empty())
        .filter(|p| params.get("creatorEmail").is_none_or(|e| p.creator_email == e))
        .filter(|p| params.get("ownerEmail").is_none_or(|e| p.creator_email == e))
        .filter(|p| {
            params
                .get("collectionId")
                .is_none_or(|c| p.sharing.collections.iter().any(|(id, _)| id.to_string() == c))
        })
        .collect();
    let key = |p: &Project| -> (Option<DateTime<Utc>>, u64) {
        match sort_by.as_deref() {
            Some("LAST_EDITED_AT") => (Some(p.edited_at), p.seq),
            Some("LAST_PUBLISHED_AT") => (p.published_at, p.seq),
            _ => (Some(p.created_at), p.seq),
        }
    };
    projects.sort_by_key(|p| key(p));
    if !ascending {
        projects.reverse();
    }
    let page = paginate(projects, |p| p.seq, "project", request, Start::First).map_err(bad)?;
    let values: Vec<Value> = page.items.iter().map(|p| project_json(ws, p, include_sharing)).collect();
    Ok(Json(json!({
        "values": values,
        "pagination": { "after": page.after, "before": page.before },
    })))
}

/// One project's metadata.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
    Path(path): Path<ProjectPath>,
) -> Result<Json<Value>, HexError> {
    // GetProject declares `projectId` a plain string, so a malformed id is simply not found.
    let id = caller.id(&path.project_id, "Project")?;
    let include_sharing = params.flag("includeSharing").map_err(|e| caller.bad_request(e))?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let project = ws.project(id).ok_or_else(|| caller.not_found("Project"))?;
    Ok(Json(project_json(ws, project, include_sharing)))
}

/// Creates a draft project (never published): `201` with the project.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, HexError> {
    let body = caller.body(&body)?;
    let title = body.str("title")?;
    let description = body.opt_str("description")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let creator = caller
        .email()
        .map(str::to_owned)
        .or_else(|| ws.users.first().map(|u| u.email.clone()))
        .unwrap_or_else(|| format!("admin@{}.example.com", caller.subdomain()));
    let id = ws.push_project(&title, creator, false);
    let project = ws.project_mut(id).expect("just added");
    project.description = description;
    let ws = model.ws(caller.subdomain());
    let body = project_json(ws, ws.project(id).expect("just added"), false);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Sets (a status name) or removes (`null`) a project's status; absent leaves it.
pub(crate) async fn update(
    State(hex): State<FakeHex>,
    caller: Caller,
    Path(path): Path<ProjectPath>,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.id(&path.project_id, "Project")?;
    let body = caller.body(&body)?;
    let status = body.nullable_str("status")?;
    if let Some(Some(name)) = &status {
        if !Workspace::is_status(name) {
            return Err(body.bad("status", &format!("{name:?} is not one of the workspace's statuses")));
        }
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let project = ws.project_mut(id).ok_or_else(|| caller.not_found("Project"))?;
    if let Some(status) = status {
        project.status = status;
        project.edited_at = timestamp::now();
    }
    let ws = model.ws(caller.subdomain());
    Ok(Json(project_json(ws, ws.project(id).expect("found above"), false)))
}

/// A project as the spec's `Project` / `ProjectApiResource` schemas describe it (every required
/// field present; `sharing` only when asked for).
pub(crate) fn project_json(ws: &Workspace, project: &Project, include_sharing: bool) -> Value {
    let created = timestamp::format(project.created_at);
    let published = project.published_at.map(timestamp::format);
    let mut value = json!({
        "id": project.id.to_string(),
        "title": project.title,
        "description": project.description,
        "type": "PROJECT",
        "creator": { "email": project.creator_email },
        "owner": { "email": project.creator_email },
        "status": project.status.as_ref().map(|name| json!({ "name": name })),
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
            "publishedResultsUpdatedAt": published,
        },
        "lastEditedAt": timestamp::format(project.edited_at),
        "lastPublishedAt": published,
        "createdAt": created,
        "archivedAt": null,
        "trashedAt": null,
        "schedules": [],
    });
    if include_sharing {
        value["sharing"] = sharing_json(ws, project);
    }
    value
}

/// A project's sharing (`SharingResource`): its creator has full access unless a grant to them
/// says otherwise.
fn sharing_json(ws: &Workspace, project: &Project) -> Value {
    let sharing = &project.sharing;
    let email_of = |id| ws.users.iter().find(|u| u.id == id).map(|u| u.email.clone());
    let mut users: Vec<Value> = Vec::new();
    let granted: Vec<(String, &str)> =
        sharing.users.iter().filter_map(|(id, access)| Some((email_of(*id)?, access.as_str()))).collect();
    if !granted.iter().any(|(email, _)| *email == project.creator_email) {
        users.push(json!({ "user": { "email": project.creator_email }, "access": "FULL_ACCESS" }));
    }
    users.extend(
        granted.into_iter().map(|(email, access)| json!({ "user": { "email": email }, "access": access })),
    );
    let groups: Vec<Value> = sharing
        .groups
        .iter()
        .filter_map(|(id, access)| {
            let group = ws.groups.iter().find(|g| g.id == *id)?;
            Some(json!({ "group": { "name": group.name }, "access": access.as_str() }))
        })
        .collect();
    let collections: Vec<Value> = sharing
        .collections
        .iter()
        .filter_map(|(id, access)| {
            let collection = ws.collections.iter().find(|c| c.id == *id)?;
            Some(json!({ "collection": { "name": collection.name }, "access": access.as_str() }))
        })
        .collect();
    json!({
        "users": users,
        "collections": collections,
        "groups": groups,
        "workspace": { "access": sharing.workspace.as_str() },
        "publicWeb": { "access": sharing.public_web.as_str() },
        "support": { "access": "NONE" },
    })
}
