//! Reading, changing and deleting connections (`/v1/connections…`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::connection_id;
use super::paging::{self, Page};
use super::view::ConnectionView;
use crate::audit::{Action, AuditContext, RequestInfo};
use crate::auth::{Caller, Scope};
use crate::crypto::open_stored;
use crate::error::{ApiError, Code, Json, Path, Result};
use crate::hex::Subdomain;
use crate::input::{self, Label, Metadata};
use crate::lifecycle::{Change, Status};
use crate::state::AppState;
use crate::store::{self, Connection, ConnectionChange, ConnectionFilter, Expect};

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
            Code::InvalidQuery,
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
                Code::InvalidRequest,
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
    let (workspace, token) = open_stored(&state.keyring, &state.hex, connection, sealed)?;
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
                state.store.record_audit(tenant, Some(id), audit, error.code().as_str()).await?;
                return Err(error);
            }
        },
    };
    match applied {
        store::Applied::Done(c) | store::Applied::Unmet(c) => Ok(c),
        _ => Err(ApiError::not_found("connection")),
    }
}
