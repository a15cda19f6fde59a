//! Users: Me, ListUsers and DeactivateUser (all coded error style).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{paginate, Role, Start, User};
use crate::{timestamp, FakeHex};

/// Who the token acts as. Personal tokens get the user's fields; workspace tokens only the org
/// and token expiry (Hex omits user metadata for them). `token.exp` is Unix seconds, or `null`
/// for a token that never expires.
pub(crate) async fn me(caller: Caller) -> Json<Value> {
    let identity = &caller.identity;
    let org = json!({ "id": identity.org_id.to_string() });
    let token = json!({ "exp": identity.expires_at.map(|at| at.timestamp()) });
    Json(match &identity.user {
        Some(user) => {
            let mut body = user_json(user);
            body["org"] = org;
            body["token"] = token;
            body
        }
        None => json!({ "org": org, "token": token }),
    })
}

/// The workspace's active users, sorted by name (or email), cursor-paginated, optionally only the
/// members of a group or the users named.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "user", 500, 25)?;
    let by_email = params.choice("sortBy", &["NAME", "EMAIL"]).map_err(bad)?.as_deref() == Some("EMAIL");
    let descending =
        params.choice("sortDirection", &["ASC", "DESC"]).map_err(bad)?.as_deref() == Some("DESC");
    let wanted = params.all("userIds");

    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let members: Option<Vec<Uuid>> = match params.get("groupId").filter(|g| !g.is_empty()) {
        None => None,
        Some(raw) => {
            let id = caller.id(raw, "Group")?;
            Some(
                ws.groups
                    .iter()
                    .find(|g| g.id == id)
                    .ok_or_else(|| caller.not_found("Group"))?
                    .members
                    .clone(),
            )
        }
    };
    let mut users: Vec<&User> = ws
        .users
        .iter()
        .filter(|u| u.active())
        .filter(|u| members.as_ref().is_none_or(|m| m.contains(&u.id)))
        .filter(|u| wanted.is_empty() || wanted.contains(&u.id.to_string()))
        .collect();
    users.sort_by_key(|u| {
        let name = if by_email { u.email.clone() } else { u.name.clone().unwrap_or_else(|| u.email.clone()) };
        (name.to_lowercase(), u.seq)
    });
    if descending {
        users.reverse();
    }
    let page = paginate(users, |u| u.seq, "user", request, Start::First).map_err(bad)?;
    let values: Vec<Value> = page.items.iter().map(|u| user_json(u)).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// Deactivates a user: they leave the users list and their tokens stop working at once. Personal
/// tokens must be an admin's (*choice*: deactivation is an admin action in Hex), and nobody can
/// deactivate themselves.
pub(crate) async fn deactivate(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    if caller.identity.user.as_ref().is_some_and(|u| u.role < Role::Admin) {
        return Err(caller.forbidden("Only workspace admins can deactivate users"));
    }
    let id = caller.id(path.get("userId"), "User")?;
    if caller.identity.user.as_ref().is_some_and(|u| u.id == id) {
        return Err(caller.bad_request("A user cannot deactivate themselves"));
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let user = ws.users.iter_mut().find(|u| u.id == id).ok_or_else(|| caller.not_found("User"))?;
    user.deactivated = true;
    Ok(Json(json!({ "user": user_json(user) })))
}

/// A user as Hex lists them.
pub(crate) fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.to_string(),
        "name": user.name,
        "email": user.email,
        "role": user.role.as_str(),
        "lastLoginDate": user.last_login.map(timestamp::format),
    })
}
