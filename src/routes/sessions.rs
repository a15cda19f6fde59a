//! `POST /v1/connect/sessions`: a short-lived, single-use link that lets a person connect their
//! Hex workspace in the browser, so the token never passes through the calling app's backend.
//! `GET /v1/connect/sessions/current`: what such a link is good for now, without using it up.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{Action, RequestInfo};
use crate::auth::{AnySession, Caller, Scope, SESSION_TOKEN_PREFIX};
use crate::crypto;
use crate::error::{ApiError, Code, Json, Result};
use crate::input::{EndUserEmail, EndUserId};
use crate::state::AppState;
use crate::store::{self, NewSession};

const DEFAULT_EXPIRES_IN: u64 = 30 * 60;
const MAX_EXPIRES_IN: u64 = 60 * 60;

/// The body of `POST /v1/connect/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionBody {
    end_user_id: String,
    end_user_email: Option<String>,
    connection_id: Option<Uuid>,
    expires_in: Option<u64>,
}

/// A new session: the token appears here and nowhere else.
#[derive(Debug, Serialize)]
pub struct CreatedSession {
    id: Uuid,
    token: String,
    expires_at: DateTime<Utc>,
    connect_url: String,
}

/// `POST /v1/connect/sessions`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Json(body): Json<CreateSessionBody>,
) -> Result<(StatusCode, Json<CreatedSession>)> {
    caller.require(Scope::Connect)?;
    let end_user_id = EndUserId::parse(&body.end_user_id)?.into_inner();
    let end_user_email = EndUserEmail::parse_optional(body.end_user_email)?;
    let expires_in = body.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    if !(60..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(ApiError::unprocessable(
            Code::InvalidRequest,
            "expires_in is a number of seconds from 60 to 3600 (one hour).",
        ));
    }
    if let Some(id) = body.connection_id {
        let connection = state
            .store
            .connection(&caller.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("connection"))?;
        if connection.end_user_id != end_user_id {
            return Err(ApiError::unprocessable(
                Code::EndUserMismatch,
                "A reconnect session is for the end user who owns the connection.",
            ));
        }
    }

    let token = crypto::new_secret(SESSION_TOKEN_PREFIX);
    let session = state
        .store
        .insert_session(
            &NewSession {
                id: Uuid::now_v7(),
                tenant: caller.tenant.clone(),
                token_hash: state.hasher.secret_hash(token.expose_secret()).to_vec(),
                end_user_id,
                end_user_email,
                connection_id: body.connection_id,
                created_by_key: caller.id,
                expires_at: store::now() + chrono::Duration::seconds(expires_in as i64),
            },
            &request.audit(caller.actor(), Action::SessionCreate),
        )
        .await?;
    tracing::info!(session_id = %session.id, reconnect = session.connection_id.is_some(), "connect session created");
    let base = state.config.public_url.as_str().trim_end_matches('/');
    Ok((
        StatusCode::CREATED,
        Json(CreatedSession {
            id: session.id,
            connect_url: format!("{base}/connect#token={}", token.expose_secret()),
            token: token.expose_secret().to_owned(),
            expires_at: session.expires_at,
        }),
    ))
}

/// Where a connect session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Not used, not expired: a submission may still use it.
    Usable,
    /// A submission used it.
    Used,
    /// Its time ran out before it was used.
    Expired,
}

/// The answer of `GET /v1/connect/sessions/current`: no secret, nothing about the end user.
#[derive(Debug, Serialize)]
pub struct SessionStatus {
    state: SessionState,
    expires_at: DateTime<Utc>,
    reconnect: bool,
}

/// `GET /v1/connect/sessions/current`: the state of the session whose token is the bearer, so
/// the connect page can say at once that a link is used or expired. Looking does not use it up.
pub async fn status(
    AnySession(session): AnySession,
) -> ([(header::HeaderName, HeaderValue); 1], Json<SessionStatus>) {
    let state = if session.used_at.is_some() {
        SessionState::Used
    } else if session.expires_at <= store::now() {
        SessionState::Expired
    } else {
        SessionState::Usable
    };
    let status =
        SessionStatus { state, expires_at: session.expires_at, reconnect: session.connection_id.is_some() };
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(status))
}
