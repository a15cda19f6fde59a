//! Project sharing: EditProjectSharingUsers, …Groups, …OrgAndPublic (coded error style) and
//! …Collections (tsoa). Each upserts grants (`NONE` removes one) and answers the project with its
//! sharing. Grants naming users, groups or collections that do not exist are not applied; they
//! come back in `errors`, and the rest of the request still applies, as Hex does.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::PathParams;
use super::projects::project_json;
use crate::errors::HexError;
use crate::model::{upsert_grant, Access};
use crate::{timestamp, FakeHex};

const ACCESS: [&str; 5] = ["NONE", "APP_ONLY", "CAN_VIEW", "CAN_EDIT", "FULL_ACCESS"];

/// Which grants a request edits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grantee {
    User,
    Group,
    Collection,
}

impl Grantee {
    /// (list key, item key, error ids key, what)
    fn names(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Grantee::User => ("users", "user", "userIds", "user"),
            Grantee::Group => ("groups", "group", "groupIds", "group"),
            Grantee::Collection => ("collections", "collection", "collectionIds", "collection"),
        }
    }
}

pub(crate) async fn users(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    edit_grants(&hex, &caller, &path, &body, Grantee::User)
}

pub(crate) async fn groups(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    edit_grants(&hex, &caller, &path, &body, Grantee::Group)
}

pub(crate) async fn collections(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    edit_grants(&hex, &caller, &path, &body, Grantee::Collection)
}

/// Reads `{"sharing": {"upsert": {"<list>": [{"<item>": {"id": …}, "access": …}]}}}` and applies it.
fn edit_grants(
    hex: &FakeHex,
    caller: &Caller,
    path: &PathParams,
    body: &[u8],
    grantee: Grantee,
) -> Result<Json<Value>, HexError> {
    let (list, item_key, ids_key, what) = grantee.names();
    // The collections variant declares projectId a UUID (malformed: 400); the others a string.
    let project_id = match grantee {
        Grantee::Collection => caller.uuid(path.get("projectId"), "projectId")?,
        _ => caller.id(path.get("projectId"), "Project")?,
    };
    let upsert = caller.body(body)?.object("sharing")?.object("upsert")?;
    upsert.check_max_items(list, 25)?;
    let mut grants: Vec<(String, Access)> = Vec::new();
    for item in upsert.objects(list)? {
        let access = Access::parse(&item.enumerated("access", &ACCESS)?).expect("checked against ACCESS");
        let id = item.object(item_key)?.str("id")?;
        if grantee == Grantee::Collection {
            caller.uuid(&id, "collection.id")?;
        }
        grants.push((id, access));
    }

    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let mut unknown: Vec<String> = Vec::new();
    let mut known: Vec<(Uuid, Access)> = Vec::new();
    for (raw, access) in grants {
        let id = Uuid::parse_str(&raw).ok().filter(|id| match grantee {
            Grantee::User => ws.active_user(*id).is_some(),
            Grantee::Group => ws.groups.iter().any(|g| g.id == *id),
            Grantee::Collection => ws.collections.iter().any(|c| c.id == *id),
        });
        match id {
            Some(id) => known.push((id, access)),
            None => unknown.push(raw),
        }
    }
    let project = ws.project_mut(project_id).expect("checked above");
    let target = match grantee {
        Grantee::User => &mut project.sharing.users,
        Grantee::Group => &mut project.sharing.groups,
        Grantee::Collection => &mut project.sharing.collections,
    };
    for (id, access) in known {
        upsert_grant(target, id, access);
    }
    project.edited_at = timestamp::now();
    let ws = model.ws(caller.subdomain());
    let mut answer =
        json!({ "project": project_json(ws, ws.project(project_id).expect("checked above"), true) });
    if !unknown.is_empty() {
        answer["errors"] =
            json!([{ ids_key: unknown, "reason": format!("No such {what} in this workspace") }]);
    }
    Ok(Json(answer))
}

/// Sets workspace and public-web access; omitted fields are left. Public web access is at most
/// `CAN_VIEW` (*choice*: the web cannot edit); a higher level comes back in `errors`.
pub(crate) async fn workspace_and_public(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.id(path.get("projectId"), "Project")?;
    let sharing: Fields = caller.body(&body)?.object("sharing")?;
    let workspace = sharing.opt_enum("workspace", &ACCESS)?.and_then(|a| Access::parse(&a));
    let public_web = sharing.opt_enum("publicWeb", &ACCESS)?.and_then(|a| Access::parse(&a));
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let project = ws.project_mut(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let mut errors: Vec<Value> = Vec::new();
    if let Some(access) = workspace {
        project.sharing.workspace = access;
    }
    match public_web {
        Some(access @ (Access::CanEdit | Access::Full)) => errors.push(json!({
            "type": "publicWeb",
            "reason": format!("Public web access cannot be {}", access.as_str()),
        })),
        Some(access) => project.sharing.public_web = access,
        None => {}
    }
    project.edited_at = timestamp::now();
    let ws = model.ws(caller.subdomain());
    let mut answer =
        json!({ "project": project_json(ws, ws.project(project_id).expect("found above"), true) });
    if !errors.is_empty() {
        answer["errors"] = Value::Array(errors);
    }
    Ok(Json(answer))
}
