//! The event outbox (`/v1/events…`, admin): what was emitted, where its delivery stands, and a
//! way to queue one again.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use super::paging::{self, Page};
use crate::audit::{Action, AuditContext, RequestInfo};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Code, Json, Path, Result};
use crate::events::{EventFilter, EventRecord, EventState};
use crate::lifecycle::EventType;
use crate::state::AppState;

/// The query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    connection_id: Option<Uuid>,
    state: Option<EventState>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/events`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<EventRecord>>> {
    caller.require(Scope::Admin)?;
    let Query(params) = query.map_err(|_| {
        ApiError::unprocessable(
            Code::InvalidQuery,
            "The query accepts type, connection_id, state (pending, delivered or dead), limit (1-200) and cursor.",
        )
    })?;
    let limit = paging::limit(params.limit)?;
    let kind = match params.kind.as_deref().map(str::parse::<EventType>) {
        None => None,
        Some(Ok(kind)) => Some(kind),
        Some(Err(_)) => {
            return Err(ApiError::unprocessable(Code::InvalidQuery, "type is not an event type (see §8)."))
        }
    };
    let filter = EventFilter {
        kind,
        connection_id: params.connection_id,
        state: params.state,
        before_id: paging::cursor(params.cursor.as_deref())?,
        limit: paging::fetch(limit),
    };
    let rows = state.store.list_events(&caller.tenant, &filter).await?;
    Ok(Json(Page::cut(rows, limit, |e| e.id)))
}

/// `POST /v1/events/{id}/redeliver`: queues the event again, whatever its state; 202.
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    let id = crate::input::canonical_uuid(&id).ok_or_else(|| ApiError::not_found("event"))?;
    redeliver_event(&state, &caller.tenant, id, &request.audit(caller.actor(), Action::EventRedeliver))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues event `id` of `tenant` again, audited as `audit` says (the API's redeliver and the
/// console's); 404 when there is none.
pub async fn redeliver_event(state: &AppState, tenant: &str, id: Uuid, audit: &AuditContext) -> Result<()> {
    if state.store.redeliver_event(tenant, id, audit).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("event"))
    }
}
