//! The event outbox (`/v1/events…`, admin): what was emitted, where its delivery stands, and a
//! way to queue one again.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::connections::{decode_cursor, encode_cursor};
use crate::app::AppState;
use crate::audit::{Action, Actor, RequestInfo};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Json, Path, Result};
use crate::events::{self, EventFilter, EventRecord, EventState};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

/// A page of events.
#[derive(Debug, Serialize)]
pub struct EventPage {
    data: Vec<EventRecord>,
    next_cursor: Option<String>,
}

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
) -> Result<Json<EventPage>> {
    caller.require(Scope::Admin)?;
    let Query(params) = query.map_err(|_| {
        ApiError::unprocessable(
            "invalid_query",
            "The query accepts type, connection_id, state (pending, delivered or dead), limit (1-200) and cursor.",
        )
    })?;
    let limit = page_limit(params.limit)?;
    if let Some(kind) = &params.kind {
        if !events::is_known_type(kind) {
            return Err(ApiError::unprocessable("invalid_query", "type is not an event type (see §8)."));
        }
    }
    let filter = EventFilter {
        kind: params.kind,
        connection_id: params.connection_id,
        state: params.state,
        before_id: params.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let mut data = state.store.list_events(&caller.tenant, &filter).await?;
    let next_cursor = next_cursor(&mut data, limit, |e| e.id);
    Ok(Json(EventPage { data, next_cursor }))
}

/// `POST /v1/events/{id}/redeliver`: queues the event again, whatever its state; 202.
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("event"))?;
    let audit = request.audit(Actor::key(&caller), Action::EventRedeliver);
    if state.store.redeliver_event(&caller.tenant, id, &audit).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("event"))
    }
}

/// The page size asked for, checked.
pub fn page_limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable("invalid_query", "limit must be from 1 to 200."));
    }
    Ok(limit)
}

/// Trims a page read with one row too many, and says where the next one starts.
pub fn next_cursor<T>(rows: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Option<String> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(id(row)))
    } else {
        None
    }
}
