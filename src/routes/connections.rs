//! Reading, changing and deleting connections (`/v1/connections…`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::paging::{self, Page};
use crate::app::AppState;
use crate::audit::{Action, AuditContext, RequestInfo};
use crate::auth::{Caller, Scope};
use crate::crypto::{CryptoError, Sealed, TokenBinding};
use crate::error::{ApiError, Json, Path, Result};
use crate::hex::{BadStoredWorkspace, Subdomain, Workspace};
use crate::input::{self, Label, Metadata};
use crate::lifecycle::{Change, Status};
use crate::store::{self, Connection, ConnectionChange, ConnectionFilter, Expect, RequestCounts};

/// A connection as callers see it: the stored fields, its current status, its Hex origin, and
/// its recent calls (from the request log's hourly counts).
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    #[serde(flatten)]
    connection: Connection,
    /// The connection's own origin when it has one (as stored, if it reads as an origin), else
    /// the template's; `None` (null) when the stored subdomain fails §6's rule: no URL is built
    /// from it.
    hex_url: Option<String>,
    #[serde(flatten)]
    counts: RequestCounts,
}

impl ConnectionView {
    /// The view of `connection`, with `expired` derived from its token's expiry, and no calls
    /// counted (see [`ConnectionView::load`]).
    pub fn new(state: &AppState, mut connection: Connection) -> Self {
        // Taken out of the connection, which would otherwise name `hex_url` a second time.
        let hex_url = match connection.hex_url.take() {
            Some(own) => {
                url::Url::parse(&own).ok().filter(|u| u.origin().ascii_serialization() == own).map(|_| own)
            }
            None => Subdomain::from_stored(&connection.subdomain)
                .ok()
                .map(|s| state.hex.origin(&Workspace::Template(s))),
        };
        Self {
            connection: connection.with_current_status(state.clock.now()),
            hex_url,
            counts: RequestCounts::default(),
        }
    }

    /// The view of `connection` with its counts of recent calls.
    pub async fn load(state: &AppState, connection: Connection) -> Result<Self> {
        let counts = Self::counts(state, std::slice::from_ref(&connection)).await?;
        Ok(Self::counted(state, connection, &counts))
    }

    /// The counts of recent calls of `connections`, read in one query.
    pub async fn counts(state: &AppState, connections: &[Connection]) -> Result<Vec<(Uuid, RequestCounts)>> {
        let ids: Vec<Uuid> = connections.iter().map(|c| c.id).collect();
        let since = crate::requestlog::counts_since(state.clock.now());
        Ok(state.store.request_counts(&ids, since).await?)
    }

    /// The view of `connection` with its counts from `counts` (none there: no calls).
    pub fn counted(state: &AppState, connection: Connection, counts: &[(Uuid, RequestCounts)]) -> Self {
        let found = counts.iter().find(|(id, _)| *id == connection.id).map(|(_, c)| *c);
        let mut view = Self::new(state, connection);
        view.counts = found.unwrap_or_default();
        view
    }
}

/// Opens a stored connection for a call to Hex: its token opened under the seal that binds its
/// row (§9), and its workspace checked again: a subdomain by §6's rule, an origin of its own
/// against `HEXBROKER_HEX_HOSTS`. A row edited outside hexbroker (another tenant, workspace or
/// origin, a subdomain that is not a label, a swapped ciphertext) answers 424
/// `connection_tampered`; a genuine row whose origin is no longer listed answers 424
/// `hex_host_not_allowed`. Either way nothing is sent anywhere.
pub fn open_stored(
    state: &AppState,
    connection: &Connection,
    sealed: &Sealed,
) -> Result<(Workspace, SecretString)> {
    let binding = TokenBinding {
        connection_id: connection.id,
        tenant: &connection.tenant,
        subdomain: &connection.subdomain,
        hex_url: connection.hex_url.as_deref(),
    };
    let token = match state.keyring.open_token(binding, sealed) {
        Ok(token) => token,
        Err(CryptoError::Tampered) => return Err(tampered(connection)),
        Err(other) => return Err(ApiError::internal(other)),
    };
    match state.hex.stored_workspace(&connection.subdomain, connection.hex_url.as_deref()) {
        Ok(workspace) => Ok((workspace, token)),
        Err(BadStoredWorkspace::Tampered) => Err(tampered(connection)),
        Err(BadStoredWorkspace::HostNotListed) => {
            tracing::error!(
                connection_id = %connection.id,
                "a stored connection's Hex origin is not in HEXBROKER_HEX_HOSTS; not used"
            );
            Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "hex_host_not_allowed",
                "This connection's Hex address is not one this deployment may call (HEXBROKER_HEX_HOSTS no longer lists it), so hexbroker will not use it; tell the operator (quote the x-request-id).",
            ))
        }
    }
}

fn tampered(connection: &Connection) -> ApiError {
    tracing::error!(
        connection_id = %connection.id,
        "a stored connection failed its integrity check (its row was edited outside hexbroker); not used"
    );
    ApiError::new(
        StatusCode::FAILED_DEPENDENCY,
        "connection_tampered",
        "This connection's stored record failed its integrity check, so hexbroker will not use it; reconnect it, and tell the operator (quote the x-request-id).",
    )
}

/// The query of `GET /v1/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    end_user_id: Option<String>,
    status: Option<Status>,
    subdomain: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/connections`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<ConnectionView>>> {
    caller.require(Scope::ConnectionsRead)?;
    let Query(params) = query.map_err(|_| {
        ApiError::unprocessable(
            "invalid_query",
            "The query accepts end_user_id, status (active, invalid or expired), subdomain, limit (1-200) and cursor.",
        )
    })?;
    let end_user_id = input::filter("end_user_id", params.end_user_id).map_err(ApiError::invalid_query)?;
    let limit = paging::limit(params.limit)?;
    // Written as a person may paste it (`acme.hex.tech`); a value that is no subdomain at all
    // matches no connection (every stored one is a label), as any other unmatched filter does.
    let subdomain =
        params.subdomain.map(|s| Subdomain::parse(&s).map(|s| s.as_str().to_owned()).unwrap_or(s));
    let filter = ConnectionFilter {
        end_user_id,
        status: params.status,
        subdomain,
        before_id: paging::cursor(params.cursor.as_deref())?,
        limit: paging::fetch(limit),
    };
    let rows = state.store.list_connections(&caller.tenant, &filter).await?;
    let counts = ConnectionView::counts(&state, &rows).await?;
    Ok(Json(Page::cut(rows, limit, |c| c.id).map(|c| ConnectionView::counted(&state, c, &counts))))
}

/// Reads a connection id (from the path or `Connection-Id`); anything that is not one in its
/// canonical spelling names no connection.
pub fn connection_id(raw: &str) -> Result<Uuid> {
    input::canonical_uuid(raw).ok_or_else(|| ApiError::not_found("connection"))
}

/// `GET /v1/connections/{id}`
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>> {
    caller.require(Scope::ConnectionsRead)?;
    let id = connection_id(&id)?;
    let connection =
        state.store.connection(&caller.tenant, id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    Ok(Json(ConnectionView::load(&state, connection).await?))
}

/// The body of `PATCH /v1/connections/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    label: Option<Option<String>>,
    metadata: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_minute: Option<Option<u32>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/connections/{id}`
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<Json<ConnectionView>> {
    caller.require(Scope::ConnectionsWrite)?;
    let id = connection_id(&id)?;
    let label = match body.label {
        Some(label) => Some(Label::parse_optional(label)?),
        None => None,
    };
    let metadata = body.metadata.map(Metadata::parse).transpose()?;
    if let Some(Some(n)) = body.rate_limit_per_minute {
        if !(1..=100_000).contains(&n) {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "rate_limit_per_minute is from 1 to 100000, or null for the deployment's default.",
            ));
        }
    }
    let change = ConnectionChange { label, metadata, rate_limit_per_minute: body.rate_limit_per_minute };
    let audit = request.audit(caller.actor(), Action::Update);
    let connection = state
        .store
        .apply(&caller.tenant, id, &Change::Updated(&change), &audit, &Expect::default())
        .await?
        .done()
        .ok_or_else(|| ApiError::not_found("connection"))?;
    Ok(Json(ConnectionView::load(&state, connection).await?))
}

/// `DELETE /v1/connections/{id}`: the row and its sealed token are gone for good.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::ConnectionsWrite)?;
    let id = connection_id(&id)?;
    delete_connection(&state, &caller.tenant, id, &request.audit(caller.actor(), Action::Delete)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes connection `id` of `tenant` for good, audited as `audit` says (the API's delete and
/// the console's); 404 when there is none.
pub async fn delete_connection(state: &AppState, tenant: &str, id: Uuid, audit: &AuditContext) -> Result<()> {
    let applied = state.store.apply(tenant, id, &Change::Deleted, audit, &Expect::default()).await?;
    if applied.done().is_some() {
        tracing::info!(connection_id = %id, "connection deleted");
        Ok(())
    } else {
        Err(ApiError::not_found("connection"))
    }
}

/// `POST /v1/connections/{id}/verify`: asks Hex about the stored token now. A token Hex refuses
/// makes the connection `invalid` (with the reason); one it accepts makes it `active` again.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>> {
    caller.require(Scope::ConnectionsWrite)?;
    let id = connection_id(&id)?;
    let audit = request.audit(caller.actor(), Action::Verify);
    let updated = verify_connection(&state, &caller.tenant, id, &audit).await?;
    Ok(Json(ConnectionView::load(&state, updated).await?))
}

/// Checks connection `id` of `tenant` against Hex now and records the outcome, audited as
/// `audit` says (the API's verify and the console's); the connection afterwards.
pub async fn verify_connection(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    audit: &AuditContext,
) -> Result<Connection> {
    let row = state
        .store
        .connection_with_token(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    let (connection, sealed) = &*row;
    let (workspace, token) = open_stored(state, connection, sealed)?;
    // Only the token that was checked may be judged: a reconnect meanwhile wins.
    let expect = Expect { token_nonce: Some(sealed.nonce.clone()), status: None };
    let applied = match state.hex.verify(&workspace, &token).await {
        Ok(identity) => state.store.apply(tenant, id, &Change::Verified(&identity), audit, &expect).await?,
        Err(rejection) => match rejection.invalidation_reason() {
            Some(reason) => {
                tracing::info!(connection_id = %id, reason, "connection invalidated by verify");
                state.store.apply(tenant, id, &Change::Refused(reason), audit, &expect).await?
            }
            None => {
                let error = ApiError::from(rejection);
                state.store.record_audit(tenant, Some(id), audit, error.code()).await?;
                return Err(error);
            }
        },
    };
    match applied {
        store::Applied::Done(c) | store::Applied::Unmet(c) => Ok(c),
        _ => Err(ApiError::not_found("connection")),
    }
}
