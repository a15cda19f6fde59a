//! `GET /v1/users/me` (operation `Me`; coded error style).

use axum::Json;
use serde_json::{json, Value};

use super::context::TraceId;
use crate::errors::{HexError, Style};
use crate::model::{Identity, Scope};
use crate::timestamp;

/// Who the token acts as. Personal tokens get the user's fields; workspace tokens only the org
/// and token expiry (Hex omits user metadata for them). `token.exp` is Unix seconds, or `null`
/// for a token that never expires.
pub(crate) async fn me(caller: Identity, trace: TraceId) -> Result<Json<Value>, HexError> {
    caller.require(&[Scope::UsersRead], Style::Coded, &trace)?;
    let org = json!({ "id": caller.org_id.to_string() });
    let token = json!({ "exp": caller.expires_at.map(|at| at.timestamp()) });
    let body = match &caller.user {
        Some(user) => json!({
            "id": user.id.to_string(),
            "name": user.name,
            "email": user.email,
            "role": user.role.as_str(),
            "lastLoginDate": timestamp::format(user.last_login),
            "org": org,
            "token": token,
        }),
        None => json!({ "org": org, "token": token }),
    };
    Ok(Json(body))
}
