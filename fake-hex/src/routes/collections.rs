//! Collections (tsoa error style): ListCollections, CreateCollection, GetCollection,
//! EditCollection. Sharing grants must name active users and existing groups.

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
use crate::model::{paginate, upsert_collection_grant, Collection, Start, Workspace};
use crate::FakeHex;

/// Collections by name, cursor-paginated.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "collection", 100, 25)?;
    params.choice("sortBy", &["NAME"]).map_err(bad)?;
    let model = hex.lock();
    let mut collections: Vec<&Collection> = model.ws(caller.subdomain()).collections.iter().collect();
    collections.sort_by_key(|c| (c.name.to_lowercase(), c.seq));
    let page = paginate(collections, |c| c.seq, "collection", request, Start::First).map_err(bad)?;
    let values: Vec<Value> = page.items.iter().map(|c| collection_json(c)).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// Creates a collection: `201`. The caller's user (personal tokens) is its creator.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, HexError> {
    let body = caller.body(&body)?;
    let name = body.nonempty("name")?;
    let description = body.opt_str("description")?;
    let sharing = body.opt_object("sharing")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let seq = ws.next_seq();
    let mut collection = Collection {
        id: Uuid::new_v4(),
        seq,
        name,
        description,
        creator: caller.identity.user.as_ref().map(|u| (u.id, u.email.clone())),
        users: Vec::new(),
        groups: Vec::new(),
        workspace_members: None,
    };
    if let Some(sharing) = sharing {
        apply_sharing(&caller, ws, &mut collection, &sharing)?;
    }
    let answer = collection_json(&collection);
    ws.collections.push(collection);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// One collection.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("collectionId"), "collectionId")?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let collection =
        ws.collections.iter().find(|c| c.id == id).ok_or_else(|| caller.not_found("Collection"))?;
    Ok(Json(collection_json(collection)))
}

/// Renames a collection, changes its description, or upserts its sharing.
pub(crate) async fn edit(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("collectionId"), "collectionId")?;
    let body = caller.body(&body)?;
    let name = if body.has("name") { Some(body.nonempty("name")?) } else { None };
    let description = body.opt_str("description")?;
    let upsert = match body.opt_object("sharing")? {
        Some(sharing) => sharing.opt_object("upsert")?,
        None => None,
    };
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let index =
        ws.collections.iter().position(|c| c.id == id).ok_or_else(|| caller.not_found("Collection"))?;
    let mut collection = ws.collections[index].clone();
    if let Some(name) = name {
        collection.name = name;
    }
    if description.is_some() {
        collection.description = description;
    }
    if let Some(upsert) = upsert {
        apply_sharing(&caller, ws, &mut collection, &upsert)?;
    }
    let answer = collection_json(&collection);
    ws.collections[index] = collection;
    Ok(Json(answer))
}

/// Applies a `CollectionApiResourceSharing` object; unknown users or groups are a 400 and
/// nothing changes.
fn apply_sharing(
    caller: &Caller,
    ws: &Workspace,
    collection: &mut Collection,
    sharing: &Fields,
) -> Result<(), HexError> {
    let mut users = collection.users.clone();
    for grant in sharing.opt_objects("users")?.unwrap_or_default() {
        let access = grant.str("access")?;
        let id = caller.uuid(&grant.str("id")?, "sharing.users[].id")?;
        ws.active_user(id)
            .ok_or_else(|| caller.bad_request(format!("No such user {id} in this workspace")))?;
        upsert_collection_grant(&mut users, id, &access);
    }
    let mut groups = collection.groups.clone();
    for grant in sharing.opt_objects("groups")?.unwrap_or_default() {
        let access = grant.str("access")?;
        let id = caller.uuid(&grant.str("id")?, "sharing.groups[].id")?;
        if !ws.groups.iter().any(|g| g.id == id) {
            return Err(caller.bad_request(format!("No such group {id} in this workspace")));
        }
        upsert_collection_grant(&mut groups, id, &access);
    }
    if let Some(workspace) = sharing.opt_object("workspace")? {
        if let Some(members) = workspace.opt_str("members")? {
            collection.workspace_members = Some(members);
        }
    }
    collection.users = users;
    collection.groups = groups;
    Ok(())
}

/// A collection as `CollectionApiResource`.
fn collection_json(collection: &Collection) -> Value {
    let grants = |grants: &[(Uuid, String)]| -> Vec<Value> {
        grants.iter().map(|(id, access)| json!({ "access": access, "id": id.to_string() })).collect()
    };
    let mut sharing = json!({ "users": grants(&collection.users), "groups": grants(&collection.groups) });
    if let Some(members) = &collection.workspace_members {
        sharing["workspace"] = json!({ "members": members });
    }
    let mut body = json!({ "id": collection.id.to_string(), "name": collection.name, "sharing": sharing });
    if let Some(description) = &collection.description {
        body["description"] = json!(description);
    }
    if let Some((id, email)) = &collection.creator {
        body["creator"] = json!({ "email": email, "id": id.to_string() });
    }
    body
}
