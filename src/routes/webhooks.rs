//! A tenant's webhook endpoints (`/v1/webhook-endpoints…`, admin, §13): register, list, change,
//! delete, rotate the secret, send a test event, and read the delivery history. The secret is
//! shown once, at creation and at rotation; another tenant's endpoint answers 404.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::paging::{self, Page};
use crate::audit::{Action, AuditContext, RequestInfo};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Code, Json, Path, Result};
use crate::events::endpoints::{self, Attempt, Endpoint, EndpointChange, EventTypes, NewEndpoint};
use crate::events::guard::{self, AllowHosts};
use crate::events::is_known_type;
use crate::state::AppState;
use crate::store;

/// The most event types an endpoint may list.
const MAX_TYPES: usize = 32;

/// The body of `POST /v1/webhook-endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointBody {
    url: String,
    description: Option<String>,
    event_types: Option<Vec<String>>,
}

/// The body of `PATCH /v1/webhook-endpoints/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointBody {
    /// A new URL, checked as at registration.
    pub url: Option<String>,
    /// A new description; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// The event types it receives; empty: all.
    pub event_types: Option<Vec<String>>,
    /// Whether deliveries go to it.
    pub enabled: Option<bool>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint with its secret: what creation and rotation answer, and nothing else.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    #[serde(flatten)]
    endpoint: Endpoint,
    secret: String,
}

/// The query of the lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A delivery attempt as listed.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    id: Uuid,
    event_id: Uuid,
    event_type: String,
    attempt: i32,
    at: DateTime<Utc>,
    status_code: Option<i32>,
    duration_ms: i64,
    error: Option<String>,
}

/// `POST /v1/webhook-endpoints`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Json(body): Json<CreateEndpointBody>,
) -> Result<(StatusCode, Json<WithSecret>)> {
    caller.require(Scope::Admin)?;
    let audit = request.audit(caller.actor(), Action::WebhookEndpointCreate);
    let (endpoint, secret) =
        create_endpoint(&state, &caller.tenant, &body.url, body.description, body.event_types, &audit)
            .await?;
    Ok((StatusCode::CREATED, Json(WithSecret { endpoint, secret: secret.expose_secret().to_owned() })))
}

/// Registers an endpoint for `tenant` as §13 says (URL, description and types checked), audited
/// as `audit` says (the API's create and the console's); the endpoint and its secret (show once).
pub async fn create_endpoint(
    state: &AppState,
    tenant: &str,
    url: &str,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    audit: &AuditContext,
) -> Result<(Endpoint, SecretString)> {
    check_description(description.as_deref())?;
    let event_types = self::event_types(event_types)?;
    let url = check_url(state, url).await?;
    let id = Uuid::now_v7();
    let secret = endpoints::new_secret();
    let new = NewEndpoint {
        id,
        tenant: tenant.to_owned(),
        url,
        description,
        event_types,
        sealed: endpoints::seal_secret(&state.keyring, id, tenant, &secret),
    };
    let endpoint = state.store.insert_endpoint(&new, audit).await?;
    tracing::info!(endpoint_id = %id, "webhook endpoint created");
    Ok((endpoint, secret))
}

/// `GET /v1/webhook-endpoints`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<Endpoint>>> {
    caller.require(Scope::Admin)?;
    let (limit, before) = page(query)?;
    let rows = state.store.list_endpoints(&caller.tenant, before, paging::fetch(limit)).await?;
    Ok(Json(Page::cut(rows, limit, |e| e.id)))
}

/// `GET /v1/webhook-endpoints/{id}`
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>> {
    caller.require(Scope::Admin)?;
    Ok(Json(found(&state, &caller, &id).await?))
}

/// `PATCH /v1/webhook-endpoints/{id}`
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
    Json(body): Json<UpdateEndpointBody>,
) -> Result<Json<Endpoint>> {
    caller.require(Scope::Admin)?;
    let id = endpoint_id(&id)?;
    let audit = request.audit(caller.actor(), Action::WebhookEndpointUpdate);
    Ok(Json(update_endpoint(&state, &caller.tenant, id, body, &audit).await?))
}

/// Changes endpoint `id` of `tenant` as §13 says, audited as `audit` says (the API's PATCH and
/// the console's enable and disable); 404 when there is none.
pub async fn update_endpoint(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    body: UpdateEndpointBody,
    audit: &AuditContext,
) -> Result<Endpoint> {
    if let Some(Some(description)) = &body.description {
        check_description(Some(description))?;
    }
    let event_types = body.event_types.map(|t| event_types(Some(t))).transpose()?;
    let url = match &body.url {
        Some(url) => Some(check_url(state, url).await?),
        None => None,
    };
    let change = EndpointChange { url, description: body.description, event_types, enabled: body.enabled };
    state
        .store
        .update_endpoint(tenant, id, &change, audit)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// `DELETE /v1/webhook-endpoints/{id}`: 204; its pending deliveries and history go with it.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require(Scope::Admin)?;
    let id = endpoint_id(&id)?;
    let audit = request.audit(caller.actor(), Action::WebhookEndpointDelete);
    if state.store.delete_endpoint(&caller.tenant, id, &audit).await? {
        tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret`: a new secret, shown once; the previous one
/// signs beside it for 24 hours.
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    request: RequestInfo,
    Path(id): Path<String>,
) -> Result<Json<WithSecret>> {
    caller.require(Scope::Admin)?;
    let id = endpoint_id(&id)?;
    let audit = request.audit(caller.actor(), Action::WebhookEndpointRotateSecret);
    let (endpoint, secret) = rotate_endpoint_secret(&state, &caller.tenant, id, &audit).await?;
    Ok(Json(WithSecret { endpoint, secret: secret.expose_secret().to_owned() }))
}

/// Gives endpoint `id` of `tenant` a new secret (the previous one signs beside it for 24 hours),
/// audited as `audit` says (the API's rotation and the console's); the new secret, to show once.
pub async fn rotate_endpoint_secret(
    state: &AppState,
    tenant: &str,
    id: Uuid,
    audit: &AuditContext,
) -> Result<(Endpoint, SecretString)> {
    let secret = endpoints::new_secret();
    let sealed = endpoints::seal_secret(&state.keyring, id, tenant, &secret);
    let until = store::now() + endpoints::PREVIOUS_SECRET_FOR;
    let endpoint = state
        .store
        .rotate_endpoint_secret(tenant, id, &sealed, until, audit)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    tracing::info!(endpoint_id = %id, "webhook endpoint secret rotated");
    Ok((endpoint, secret))
}

/// The answer of `POST /v1/webhook-endpoints/{id}/test`.
#[derive(Debug, Serialize)]
pub struct TestQueued {
    event_id: Uuid,
}

/// `POST /v1/webhook-endpoints/{id}/test`: queues a `webhook.test` event to this endpoint
/// alone (whether or not it is enabled or lists that type); 202 with the event's id.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TestQueued>)> {
    caller.require(Scope::Admin)?;
    let id = endpoint_id(&id)?;
    let event_id = queue_test_event(&state, &caller.tenant, id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id })))
}

/// Queues a `webhook.test` event to endpoint `id` of `tenant` alone (the API's test and the
/// console's); the event's id, or 404 when there is no such endpoint.
pub async fn queue_test_event(state: &AppState, tenant: &str, id: Uuid) -> Result<Uuid> {
    let event_id = Uuid::now_v7();
    if state.store.queue_test_event(tenant, id, event_id).await? {
        Ok(event_id)
    } else {
        Err(ApiError::not_found("webhook endpoint"))
    }
}

/// `GET /v1/webhook-endpoints/{id}/deliveries`: the attempts, newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: std::result::Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<AttemptView>>> {
    caller.require(Scope::Admin)?;
    let endpoint = found(&state, &caller, &id).await?;
    let (limit, before) = page(query)?;
    let rows = state.store.list_attempts(endpoint.id, before, paging::fetch(limit)).await?;
    Ok(Json(Page::cut(rows, limit, |a| a.id).map(|a: Attempt| AttemptView {
        id: a.id,
        event_id: a.event_id,
        event_type: a.event_type,
        attempt: a.attempt,
        at: a.at,
        status_code: a.status_code,
        duration_ms: a.duration_ms,
        error: a.error,
    })))
}

fn page(
    query: std::result::Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<(u32, Option<Uuid>)> {
    let Query(params) = query.map_err(|_| {
        ApiError::unprocessable(Code::InvalidQuery, "The query accepts limit (1-200) and cursor.")
    })?;
    Ok((paging::limit(params.limit)?, paging::cursor(params.cursor.as_deref())?))
}

pub fn endpoint_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::not_found("webhook endpoint"))
}

async fn found(state: &AppState, caller: &Caller, id: &str) -> Result<Endpoint> {
    let id = endpoint_id(id)?;
    state.store.endpoint(&caller.tenant, id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// Checks a URL as registration does (§13): 422 `invalid_webhook_url` with the reason.
async fn check_url(state: &AppState, text: &str) -> Result<String> {
    let url = url::Url::parse(text.trim())
        .map_err(|_| ApiError::unprocessable(Code::InvalidWebhookUrl, "url is not an absolute URL."))?;
    let allow = AllowHosts::new(&state.config.webhook_allow_hosts);
    guard::check_registration(&url, &allow)
        .await
        .map_err(|refused| ApiError::unprocessable(Code::InvalidWebhookUrl, refused.0))?;
    Ok(url.to_string())
}

fn check_description(description: Option<&str>) -> Result<()> {
    if let Some(text) = description {
        if text.chars().count() > 500 || text.chars().any(|c| c.is_control()) {
            return Err(ApiError::unprocessable(
                Code::InvalidRequest,
                "description is at most 500 characters, without control characters.",
            ));
        }
    }
    Ok(())
}

fn event_types(types: Option<Vec<String>>) -> Result<EventTypes> {
    let mut types = types.unwrap_or_default();
    if types.len() > MAX_TYPES || types.iter().any(|t| !is_known_type(t)) {
        return Err(ApiError::unprocessable(
            Code::InvalidRequest,
            "event_types lists event types of §8 (e.g. connection.invalidated); empty or left out: all.",
        ));
    }
    types.sort();
    types.dedup();
    Ok(EventTypes(types))
}
