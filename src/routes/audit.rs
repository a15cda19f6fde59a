//! The audit trail (`GET /v1/audit-events`, admin): every action on a credential, newest first.

use axum::extract::{Query, State};
use serde::Deserialize;
use uuid::Uuid;

use super::paging::{self, Page};
use crate::audit::{Action, AuditEntry, AuditFilter};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Code, Json, Result};
use crate::input;
use crate::state::AppState;

/// The query of `GET /v1/audit-events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    connection_id: Option<Uuid>,
    action: Option<String>,
    actor: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/audit-events`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<AuditEntry>>> {
    caller.require(Scope::Admin)?;
    let Query(params) = query.map_err(|_| {
        ApiError::unprocessable(
            Code::InvalidQuery,
            "The query accepts connection_id, action, actor (a key or session id, or system), limit (1-200) and cursor.",
        )
    })?;
    let actor = input::filter("actor", params.actor).map_err(ApiError::invalid_query)?;
    let limit = paging::limit(params.limit)?;
    if let Some(action) = &params.action {
        if !Action::ALL.iter().any(|a| a.as_str() == action) {
            return Err(ApiError::unprocessable(Code::InvalidQuery, "action is not one of §10's actions."));
        }
    }
    let filter = AuditFilter {
        connection_id: params.connection_id,
        action: params.action,
        actor,
        before_id: paging::cursor(params.cursor.as_deref())?,
        limit: paging::fetch(limit),
    };
    let rows = state.store.list_audit(&caller.tenant, &filter).await?;
    Ok(Json(Page::cut(rows, limit, |e| e.id)))
}
