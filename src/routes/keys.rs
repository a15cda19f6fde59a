//! Connection keys (`/v1/connections/{id}/keys…`): credentials bound to one connection, for
//! existing Hex clients that use the drop-in surface. The key is shown once.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::connection_id;
use crate::audit::{Action, AuditContext, RequestInfo};
use crate::auth::{self, Caller, KeySpec, Scope, Scopes};
use crate::error::{ApiError, Code, Json, Path, Result};
use crate::input::{canonical_uuid, KeyName};
use crate::state::AppState;
use crate::store;

/// Longest lifetime a connection key may be given: one year.
const MAX_EXPIRES_IN: u64 = 365 * 24 * 3600;

/// The body of `POST /v1/connections/{id}/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    scopes: Vec<String>,
    expires_in: Option<u64>,
    name: Option<String>,
}

/// A connection key as created: the secret appears here and nowhere else.
#[derive(Debug, Serialize)]
pub struct CreatedKeyView {
    id: Uuid,
    key: String,
    connection_id: Uuid,
    name: String,
    prefix: String,
    scopes: Scopes,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/connections/{id}/keys`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<CreateKeyBody>,
) -> Result<(StatusCode, Json<CreatedKeyView>)> {
    caller.require(Scope::ConnectionsWrite)?;
    let id = connection_id(&id)?;
    let scope = match body.scopes.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["proxy"] => Scope::Proxy,
        ["proxy:read"] => Scope::ProxyRead,
        _ => {
            return Err(ApiError::unprocessable(
                Code::InvalidRequest,
                "scopes is [\"proxy\"] (any method) or [\"proxy:read\"] (GET and HEAD only).",
            ))
        }
    };
    // A caller cannot hand out more than it holds: minting a proxy key takes proxy (or admin).
    caller.require(scope)?;
    let scopes = Scopes::of(&[scope]);
    let expires_at = match body.expires_in {
        None => None,
        Some(seconds) if (60..=MAX_EXPIRES_IN).contains(&seconds) => {
            Some(store::now() + chrono::Duration::seconds(seconds as i64))
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                Code::InvalidRequest,
                "expires_in is a number of seconds from 60 to 31536000 (one year).",
            ))
        }
    };
    let name = KeyName::parse(body.name.unwrap_or_else(|| "connection key".into()))?;
    state.store.connection(&caller.tenant, id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    let created = auth::create_key(
        &state,
        KeySpec { name: name.as_str(), tenant: &caller.tenant, scopes, connection_id: Some(id), expires_at },
        &request.audit(caller.actor(), Action::KeyCreate),
    )
    .await?;
    tracing::info!(connection_id = %id, key_id = %created.key.id, "connection key created");
    let key = created.key;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            id: key.id,
            key: created.secret.expose_secret().to_owned(),
            connection_id: id,
            name: key.name,
            prefix: key.prefix,
            scopes: key.scopes,
            created_at: key.created_at,
            expires_at: key.expires_at,
        }),
    ))
}

/// `DELETE /v1/connections/{id}/keys/{key_id}`
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    caller.require(Scope::ConnectionsWrite)?;
    let id = connection_id(&id)?;
    let key_id = canonical_uuid(&key_id).ok_or_else(|| ApiError::not_found("connection key"))?;
    revoke_connection_key(
        &state,
        &caller.tenant,
        id,
        key_id,
        &request.audit(caller.actor(), Action::KeyRevoke),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes connection key `key_id` of connection `id` in `tenant`, audited as `audit` says (the
/// API's revoke and the console's); 404 when there is none to revoke.
pub async fn revoke_connection_key(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    key_id: Uuid,
    audit: &AuditContext,
) -> Result<()> {
    if state.store.revoke_connection_key(tenant, id, key_id, audit).await? {
        tracing::info!(connection_id = %id, key_id = %key_id, "connection key revoked");
        Ok(())
    } else {
        Err(ApiError::not_found("connection key"))
    }
}
