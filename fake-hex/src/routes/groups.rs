//! Groups (tsoa error style): ListGroups, CreateGroup, GetGroup, EditGroup, DeleteGroup. Members
//! must be active users of the workspace; deleting a group also drops the grants it held.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{paginate, Group, Start, Workspace};
use crate::{timestamp, FakeHex};

/// Groups sorted by creation (default) or name, cursor-paginated (page size up to 500).
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "group", 500, 25)?;
    let by_name = params.choice("sortBy", &["CREATED_AT", "NAME"]).map_err(bad)?.as_deref() == Some("NAME");
    let descending =
        params.choice("sortDirection", &["DESC", "ASC"]).map_err(bad)?.as_deref() == Some("DESC");
    let model = hex.lock();
    let mut groups: Vec<&Group> = model.ws(caller.subdomain()).groups.iter().collect();
    if by_name {
        groups.sort_by_key(|g| (g.name.to_lowercase(), g.seq));
    }
    if descending {
        groups.reverse();
    }
    let page = paginate(groups, |g| g.seq, "group", request, Start::First).map_err(bad)?;
    let values: Vec<Value> = page.items.iter().map(|g| group_json(g)).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// Creates a group: `201` with its id, name and members.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, HexError> {
    let body = caller.body(&body)?;
    let name = body.nonempty("name")?;
    let members = member_ids(&caller, body.opt_object("members")?)?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    check_users(&caller, ws, &members)?;
    let seq = ws.next_seq();
    let mut group =
        Group { id: Uuid::new_v4(), seq, name, created_at: timestamp::now(), members: Vec::new() };
    for user in members {
        group.add_member(user);
    }
    let answer = json!({
        "id": group.id.to_string(),
        "name": group.name,
        "members": members_json(&group),
    });
    ws.groups.push(group);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// One group.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("groupId"), "groupId")?;
    let model = hex.lock();
    let group = model
        .ws(caller.subdomain())
        .groups
        .iter()
        .find(|g| g.id == id)
        .ok_or_else(|| caller.not_found("Group"))?;
    Ok(Json(group_json(group)))
}

/// Renames a group and adds or removes members.
pub(crate) async fn edit(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("groupId"), "groupId")?;
    let body = caller.body(&body)?;
    let name = match body.has("name") {
        true => Some(body.nonempty("name")?),
        false => None,
    };
    let changes = body.opt_object("members")?;
    let (add, remove) = match &changes {
        Some(members) => (
            member_ids(&caller, members.opt_object("add")?)?,
            member_ids(&caller, members.opt_object("remove")?)?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    ws.groups.iter().find(|g| g.id == id).ok_or_else(|| caller.not_found("Group"))?;
    check_users(&caller, ws, &add)?;
    let group = ws.groups.iter_mut().find(|g| g.id == id).expect("found above");
    if let Some(name) = name {
        group.name = name;
    }
    for user in add {
        group.add_member(user);
    }
    group.members.retain(|m| !remove.contains(m));
    Ok(Json(group_json(group)))
}

/// Deletes a group: `204`. Project and data connection grants to it go too.
pub(crate) async fn delete(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<StatusCode, HexError> {
    let id = caller.uuid(path.get("groupId"), "groupId")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let before = ws.groups.len();
    ws.groups.retain(|g| g.id != id);
    if ws.groups.len() == before {
        return Err(caller.not_found("Group"));
    }
    for project in &mut ws.projects {
        project.sharing.groups.retain(|(g, _)| *g != id);
    }
    for connection in &mut ws.connections {
        connection.groups.retain(|(g, _)| *g != id);
    }
    for collection in &mut ws.collections {
        collection.groups.retain(|(g, _)| *g != id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The user ids of a `GroupMembers` object (`{"users": [{"id": …}]}`, at most 100).
fn member_ids(caller: &Caller, members: Option<Fields>) -> Result<Vec<Uuid>, HexError> {
    let Some(members) = members else { return Ok(Vec::new()) };
    members.check_max_items("users", 100)?;
    members
        .opt_objects("users")?
        .unwrap_or_default()
        .iter()
        .map(|user| caller.uuid(&user.str("id")?, "members.users[].id"))
        .collect()
}

/// 400 unless every id names an active user of the workspace.
fn check_users(caller: &Caller, ws: &Workspace, ids: &[Uuid]) -> Result<(), HexError> {
    match ids.iter().find(|id| ws.active_user(**id).is_none()) {
        Some(id) => Err(caller.bad_request(format!("No such user {id} in this workspace"))),
        None => Ok(()),
    }
}

fn members_json(group: &Group) -> Value {
    let users: Vec<Value> = group.members.iter().map(|id| json!({ "id": id.to_string() })).collect();
    json!({ "users": users })
}

/// A group as `GroupApiResource`.
fn group_json(group: &Group) -> Value {
    json!({ "id": group.id.to_string(), "name": group.name, "createdAt": timestamp::format(group.created_at) })
}
