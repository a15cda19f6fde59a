//! `POST /v1/connect`: judge a submitted subdomain and token as §6 describes, and store the
//! token sealed only when Hex accepts it.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use super::connections::{check_label, check_metadata, ConnectionView};
use crate::app::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Json, Result};
use crate::hex::{self, Subdomain};
use crate::store::{Inserted, NewConnection};

/// The body of `POST /v1/connect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    subdomain: String,
    token: SecretString,
    label: Option<String>,
    end_user_id: Option<String>,
    end_user_email: Option<String>,
    metadata: Option<serde_json::Value>,
}

/// `POST /v1/connect` with an API key holding `connect`: 201 with a new connection, or 200 with
/// the existing one when this token is already connected for this end user.
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ConnectBody>,
) -> Result<(StatusCode, Json<ConnectionView>)> {
    caller.require(Scope::Connect)?;
    let subdomain = Subdomain::parse(&body.subdomain)?;
    let token = hex::parse_token(body.token.expose_secret())?;
    let end_user_id = match body.end_user_id.as_deref().map(str::trim) {
        Some(id) if (1..=256).contains(&id.len()) => id.to_owned(),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "end_user_id (1-256 characters) is required when connecting with an API key.",
            ))
        }
    };
    if let Some(label) = &body.label {
        check_label(label)?;
    }
    let metadata = body.metadata.unwrap_or_else(|| serde_json::json!({}));
    check_metadata(&metadata)?;
    if body.end_user_email.as_ref().is_some_and(|e| e.len() > 320) {
        return Err(ApiError::unprocessable("invalid_request", "end_user_email is at most 320 characters."));
    }

    let identity = state.hex.verify(&subdomain, &token).await?;

    let fingerprint = state.hasher.token_fingerprint(subdomain.as_str(), &token);
    if let Some(existing) = state
        .store
        .connection_by_fingerprint(&caller.tenant, &end_user_id, subdomain.as_str(), &fingerprint)
        .await?
    {
        // The same token again: Hex has just vouched for it, so record that instead of a duplicate.
        let refreshed =
            state.store.mark_verified(&caller.tenant, existing.id, &identity).await?.unwrap_or(existing);
        return Ok((StatusCode::OK, Json(ConnectionView::new(&state, refreshed))));
    }

    let id = Uuid::now_v7();
    let new = NewConnection {
        id,
        tenant: caller.tenant.clone(),
        end_user_id,
        end_user_email: body.end_user_email,
        label: body.label,
        metadata,
        subdomain: subdomain.as_str().to_owned(),
        token_type: hex::token_type(&token),
        token_hint: hex::token_hint(&token),
        token_fingerprint: fingerprint,
        sealed: state.keyring.seal_token(id, &token),
        identity,
    };
    match state.store.insert_connection(&new).await? {
        Inserted::Created(connection) => {
            tracing::info!(connection_id = %connection.id, "connection created");
            Ok((StatusCode::CREATED, Json(ConnectionView::new(&state, connection))))
        }
        Inserted::Existing(connection) => Ok((StatusCode::OK, Json(ConnectionView::new(&state, connection)))),
    }
}
