//! `POST /v1/connect`: judge a submitted subdomain and token as §6 describes, and store the
//! token sealed only when Hex accepts it. Callers are internal apps with an API key, or people
//! in a browser with a connect session (which may be a reconnect of one connection).

use axum::extract::State;
use axum::http::{header::ORIGIN, HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use super::view::ConnectionView;
use crate::audit::{Action, Actor, RequestInfo};
use crate::auth::{session_used, Caller, ConnectCaller, Scope};
use crate::connect::Attempter;
use crate::crypto::TokenBinding;
use crate::edge::ClientAddr;
use crate::error::{ApiError, Code, Json, Result};
use crate::hex::{self, Workspace};
use crate::input::{self, EndUserEmail, EndUserId, Label, Metadata};
use crate::lifecycle::Change;
use crate::state::AppState;
use crate::store::{
    Credentials, Expect, HexIdentity, Inserted, NewConnection, Session, SessionOutcome, SessionWrite,
    TokenReplacement,
};

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

/// A submission that passed every check but Hex's.
struct Submission {
    /// The client's address, for the allowance of refused attempts.
    from: Option<std::net::SocketAddr>,
    workspace: Workspace,
    token: SecretString,
    label: Option<String>,
    metadata: serde_json::Value,
}

impl Submission {
    /// The credentials this submission carries, as Hex described them, its token sealed for
    /// connection `id` of `tenant`.
    fn credentials(&self, state: &AppState, id: Uuid, tenant: &str, identity: HexIdentity) -> Credentials {
        let binding = TokenBinding {
            connection_id: id,
            tenant,
            subdomain: self.workspace.subdomain(),
            hex_url: self.workspace.hex_url(),
        };
        Credentials {
            subdomain: self.workspace.subdomain().to_owned(),
            hex_url: self.workspace.hex_url().map(str::to_owned),
            token_type: hex::token_type(&self.token),
            token_hint: hex::token_hint(&self.token),
            token_fingerprint: state.hasher.token_fingerprint(self.workspace.fingerprint_key(), &self.token),
            sealed: state.keyring.seal_token(binding, &self.token),
            identity,
        }
    }

    /// The new connection this submission makes, its token sealed for a fresh id.
    fn into_connection(
        self,
        state: &AppState,
        tenant: String,
        end_user_id: String,
        end_user_email: Option<String>,
        identity: HexIdentity,
    ) -> NewConnection {
        let id = Uuid::now_v7();
        let credentials = self.credentials(state, id, &tenant, identity);
        NewConnection {
            id,
            tenant,
            end_user_id,
            end_user_email,
            label: self.label,
            metadata: self.metadata,
            credentials,
        }
    }
}

type Answer = (StatusCode, Json<ConnectionView>);

/// `POST /v1/connect`: 201 with a new connection; 200 with the existing one when this token is
/// already connected for this end user, or when a reconnect session replaced a token.
pub async fn connect(
    State(state): State<AppState>,
    caller: ConnectCaller,
    request: RequestInfo,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    Json(body): Json<ConnectBody>,
) -> Result<Answer> {
    if let ConnectCaller::Key(key) = &caller {
        key.require(Scope::Connect)?;
    }
    // Every caller string first (§5): a refused one changes nothing, reaches no Hex and uses up
    // no session.
    let workspace = state.hex.workspace(&body.subdomain)?;
    let token = hex::parse_token(body.token.expose_secret())?;
    let label = Label::parse_optional(body.label)?;
    let metadata = Metadata::parse(body.metadata.unwrap_or_else(|| serde_json::json!({})))?;
    let end_user_id = body.end_user_id.as_deref().map(EndUserId::parse).transpose()?;
    let end_user_email = EndUserEmail::parse_optional(body.end_user_email)?;
    let submission = Submission { from, workspace, token, label, metadata };
    match caller {
        ConnectCaller::Key(key) => {
            let Some(end_user_id) = end_user_id else {
                return Err(ApiError::unprocessable(
                    Code::InvalidRequest,
                    "end_user_id (1-256 characters) is required when connecting with an API key.",
                ));
            };
            with_key(&state, &key, &request, end_user_id.into_inner(), end_user_email, submission).await
        }
        ConnectCaller::Session(session) => {
            if end_user_id.is_some() || end_user_email.is_some() {
                return Err(ApiError::unprocessable(
                    Code::InvalidRequest,
                    "With a connect session the end user comes from the session; leave end_user_id out.",
                ));
            }
            // A header value may hold a tab, the one control character HTTP allows in it.
            let origin = headers
                .get(ORIGIN)
                .and_then(|v| v.to_str().ok())
                .filter(|o| !input::has_control(o))
                .map(|o| o.chars().take(200).collect());
            with_session(&state, session, &request, submission, origin).await
        }
    }
}

async fn with_key(
    state: &AppState,
    caller: &Caller,
    request: &RequestInfo,
    end_user_id: String,
    end_user_email: Option<String>,
    s: Submission,
) -> Result<Answer> {
    let audit = request.audit(caller.actor(), Action::Connect);
    let who = [Attempter::Key(caller.id)];
    let identity = state.attempts.verify(&state.hex, &who, s.from, &s.workspace, &s.token).await?;
    let new = s.into_connection(state, caller.tenant.clone(), end_user_id, end_user_email, identity);
    let c = &new.credentials;
    if let Some(existing) = state
        .store
        .connection_by_fingerprint(&caller.tenant, &new.end_user_id, &c.subdomain, &c.token_fingerprint)
        .await?
    {
        // The same token again: Hex has just vouched for it, so record that instead of a duplicate.
        let refreshed = state
            .store
            .apply(&caller.tenant, existing.id, &Change::Verified(&c.identity), &audit, &Expect::default())
            .await?
            .done()
            .unwrap_or(existing);
        return Ok((StatusCode::OK, Json(ConnectionView::load(state, refreshed).await?)));
    }
    match state.store.insert_connection(&new, &audit).await? {
        Inserted::Created(connection) => {
            tracing::info!(connection_id = %connection.id, "connection created");
            Ok((StatusCode::CREATED, Json(ConnectionView::new(state, connection))))
        }
        Inserted::Existing(connection) => {
            Ok((StatusCode::OK, Json(ConnectionView::load(state, connection).await?)))
        }
    }
}

/// A browser connect: Hex is asked first (a refusal leaves the session usable, so the person can
/// correct a field), then the session is claimed and the connection written in one transaction.
///
/// A reconnect must land on the connection's own Hex workspace (§6 step 5): otherwise 422
/// `hex_workspace_mismatch`, nothing about the connection changes, and the session stays usable
/// (it is bound to this connection and end user, so the person may paste the right token).
async fn with_session(
    state: &AppState,
    session: Session,
    request: &RequestInfo,
    s: Submission,
    origin: Option<String>,
) -> Result<Answer> {
    let action = if session.connection_id.is_some() { Action::Reconnect } else { Action::Connect };
    let audit = request.audit(Actor::Session { id: session.id }, action);
    let who = [
        Attempter::Session(session.id),
        Attempter::EndUser { tenant: session.tenant.clone(), end_user_id: session.end_user_id.clone() },
    ];
    if let Some(id) = session.connection_id {
        // A reconnect never moves a connection to another Hex origin: refused before the token
        // is sent anywhere (the transaction checks again, with the rest of §6 step 5).
        let current = state.store.connection(&session.tenant, id).await?;
        if current.is_some_and(|c| c.hex_url.as_deref() != s.workspace.hex_url()) {
            let error = workspace_mismatch();
            state.store.record_audit(&session.tenant, Some(id), &audit, error.code().as_str()).await?;
            return Err(error);
        }
    }
    let identity = state.attempts.verify(&state.hex, &who, s.from, &s.workspace, &s.token).await?;
    let write = match session.connection_id {
        Some(id) => SessionWrite::Replace(TokenReplacement {
            id,
            credentials: s.credentials(state, id, &session.tenant, identity),
        }),
        None => SessionWrite::Create(s.into_connection(
            state,
            session.tenant.clone(),
            session.end_user_id.clone(),
            session.end_user_email.clone(),
            identity,
        )),
    };
    let outcome = state.store.complete_session(&session, &write, origin.as_deref(), &audit).await?;
    let (status, connection) = match outcome {
        SessionOutcome::Created(c) => (StatusCode::CREATED, c),
        SessionOutcome::Existing(c) | SessionOutcome::Replaced(c) => (StatusCode::OK, c),
        SessionOutcome::Unavailable => return Err(session_used()),
        SessionOutcome::ConnectionGone => return Err(ApiError::not_found("connection")),
        SessionOutcome::WorkspaceMismatch => {
            let error = workspace_mismatch();
            state
                .store
                .record_audit(&session.tenant, session.connection_id, &audit, error.code().as_str())
                .await?;
            return Err(error);
        }
        SessionOutcome::TokenTaken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                Code::TokenAlreadyConnected,
                "This Hex token is already connected for you in another connection.",
            ))
        }
    };
    tracing::info!(
        connection_id = %connection.id,
        session_id = %session.id,
        end_user_id = %session.end_user_id,
        replaced = matches!(write, SessionWrite::Replace(_)),
        "browser connect completed"
    );
    Ok((status, Json(ConnectionView::load(state, connection).await?)))
}

/// A reconnect to another Hex workspace or origin (§6 step 5).
fn workspace_mismatch() -> ApiError {
    ApiError::unprocessable(
        Code::HexWorkspaceMismatch,
        "This token is for another Hex workspace than the connection's; reconnect with a token \
         of the same workspace, or connect the other workspace as a new connection.",
    )
}
