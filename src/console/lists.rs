//! The tenant's event outbox (`/console/events`, with its state filter and redeliver) and audit
//! trail (`/console/audit`), newest first and paged.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::view::{self, Section};
use super::{failure, html_response, path_id, redirect, Console, Plain, PostedForm};
use crate::audit::{Action, AuditEntry, AuditFilter, RequestInfo};
use crate::error::{ApiError, Code, Path};
use crate::events::{EventFilter, EventState};
use crate::state::AppState;

/// Rows on a page.
const PAGE: u32 = 50;

/// An event's delivery state as a badge.
pub(crate) fn event_state(state: EventState) -> Markup {
    match state {
        EventState::Delivered => view::badge("delivered", "ok"),
        EventState::Pending => view::badge("pending", "warn"),
        EventState::Dead => view::badge("dead", "bad"),
    }
}

/// The filters of `/console/events`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    state: Option<String>,
    connection_id: Option<String>,
    before: Option<String>,
    done: Option<String>,
}

/// `GET /console/events`
pub(crate) async fn events(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<EventsQuery>,
) -> Response {
    match events_page(&state, &console, q).await {
        Ok(markup) => html_response(StatusCode::OK, markup),
        Err(error) => failure(&state, Some(&console), error),
    }
}

async fn events_page(state: &AppState, console: &Console, q: EventsQuery) -> Result<Markup, ApiError> {
    let wanted = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<EventState>().map_err(|_| {
            ApiError::unprocessable(Code::InvalidQuery, "state is pending, delivered or dead.")
        })?),
    };
    let connection_id = match q.connection_id.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(path_id(text, "connection")?),
        None => None,
    };
    let filter = EventFilter {
        kind: None,
        connection_id,
        state: wanted,
        before_id: super::before(q.before.as_deref()),
        limit: PAGE + 1,
    };
    let rows = state.store.list_events(console.tenant(), &filter).await?;
    let (rows, next) = view::cut(rows, PAGE, |e| e.id);
    let now = state.clock.now();
    let base = view::query(
        "/console/events",
        &[("state", q.state.as_deref()), ("connection_id", q.connection_id.as_deref())],
    );
    let body = html! {
        @if q.done.as_deref() == Some("redelivered") { (view::notice("ok", "The event was queued again; it is delivered within seconds.")) }
        form.filters method="get" action="/console/events" aria-label="Filter events" {
            div.field {
                label for="e-state" { "Delivery state" }
                select #e-state name="state" {
                    option value="" selected[wanted.is_none()] { "Any" }
                    @for s in EventState::ALL { option value=(s.as_str()) selected[wanted == Some(s)] { (s.as_str()) } }
                }
            }
            @if let Some(id) = &connection_id { input type="hidden" name="connection_id" value=(id); }
            div.field.buttons { button type="submit" { "Filter" } @if wanted.is_some() || connection_id.is_some() { a href="/console/events" { "Clear filters" } } }
        }
        @if rows.is_empty() {
            (view::empty("No events here.", html! { "Events are recorded when connections are created, change status, expire or are deleted; set a webhook endpoint on the " a href="/console/webhooks" { "Webhooks" } " page to receive them." }))
        } @else {
            div.table-wrap { table #events {
                caption.visually-hidden { "Events, newest first" }
                thead { tr { th scope="col" { "Type" } th scope="col" { "Connection" } th scope="col" { "When" } th scope="col" { "Delivery" } th scope="col" { "Attempts" } th scope="col" { "Next attempt" } th scope="col" { "Last error" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody { @for e in &rows { tr {
                    td data-label="Type" { code { (e.kind.as_str()) } }
                    td data-label="Connection" { a href={ "/console/connections/" (e.connection_id) } { code { (e.connection_id.to_string()[..8]) "…" } } }
                    td data-label="When" { (view::time(e.created_at, now)) }
                    td data-label="Delivery" { (event_state(e.state)) }
                    td data-label="Attempts" { (e.attempts) }
                    td data-label="Next attempt" { @if e.state == EventState::Pending { (view::time(e.next_attempt_at, now)) } @else { span.muted { "—" } } }
                    td data-label="Last error" { (view::or_dash(e.last_error.as_deref())) }
                    td { (view::action_button(console, &format!("/console/events/{}/redeliver", e.id), "Redeliver", "secondary")) }
                } } }
            } }
            (view::pager(&base, next))
        }
    };
    Ok(view::page("Events", Section::Events, Some(console), body))
}

/// `POST /console/events/{id}/redeliver`: the API's redeliver.
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: PostedForm<Plain>,
) -> Response {
    if let Err(refused) = console.accept(&state, &headers, form) {
        return refused;
    }
    let outcome = async {
        let id = path_id(&id, "event")?;
        let audit = console.audit(&request, Action::EventRedeliver);
        crate::routes::redeliver_event(&state, console.tenant(), id, &audit).await
    };
    match outcome.await {
        Ok(()) => redirect("/console/events?done=redelivered"),
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// The filters of `/console/audit`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    action: Option<String>,
    before: Option<String>,
}

/// `GET /console/audit`
pub(crate) async fn audit(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<AuditQuery>,
) -> Response {
    match audit_page(&state, &console, q).await {
        Ok(markup) => html_response(StatusCode::OK, markup),
        Err(error) => failure(&state, Some(&console), error),
    }
}

async fn audit_page(state: &AppState, console: &Console, q: AuditQuery) -> Result<Markup, ApiError> {
    let action = q.action.clone().filter(|a| !a.is_empty());
    if let Some(action) = &action {
        if !Action::ALL.iter().any(|a| a.as_str() == action) {
            return Err(ApiError::unprocessable(Code::InvalidQuery, "action is not one of §10's actions."));
        }
    }
    let filter = AuditFilter {
        action: action.clone(),
        before_id: super::before(q.before.as_deref()),
        limit: PAGE + 1,
        ..Default::default()
    };
    let rows = state.store.list_audit(console.tenant(), &filter).await?;
    let (rows, next) = view::cut(rows, PAGE, |e| e.id);
    let now = state.clock.now();
    let base = view::query("/console/audit", &[("action", action.as_deref())]);
    let body = html! {
        form.filters method="get" action="/console/audit" aria-label="Filter the audit trail" {
            div.field {
                label for="a-action" { "Action" }
                select #a-action name="action" {
                    option value="" selected[action.is_none()] { "Any" }
                    @for a in Action::ALL { option value=(a.as_str()) selected[action.as_deref() == Some(a.as_str())] { (a.as_str()) } }
                }
            }
            div.field.buttons { button type="submit" { "Filter" } @if action.is_some() { a href="/console/audit" { "Clear filters" } } }
        }
        (audit_table(&rows, now))
        (view::pager(&base, next))
    };
    Ok(view::page("Audit trail", Section::Audit, Some(console), body))
}

/// Audit entries as a table (or what to expect when there are none).
pub(crate) fn audit_table(rows: &[AuditEntry], now: DateTime<Utc>) -> Markup {
    html! {
        @if rows.is_empty() {
            (view::empty("No audit entries.", html! { "Every action on a credential (connect, verify, key made or revoked, delete …) is recorded here." }))
        } @else {
            div.table-wrap { table.audit {
                caption.visually-hidden { "Audit entries, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Who" } th scope="col" { "Connection" } th scope="col" { "Outcome" } th scope="col" { "From" } } }
                tbody { @for a in rows { tr {
                    td data-label="When" { (view::time(a.created_at, now)) }
                    td data-label="Action" { code { (a.action) } @if let Some(d) = &a.detail { br; span.muted { (d) } } }
                    td data-label="Who" { (a.actor_type) " " @if let Some(n) = &a.actor_name { strong { (n) } " " } span.muted { (a.actor_id) } }
                    td data-label="Connection" { @if let Some(c) = a.connection_id { a href={ "/console/connections/" (c) } { code { (c.to_string()[..8]) "…" } } } @else { span.muted { "—" } } }
                    td data-label="Outcome" { (view::badge(&a.outcome, if a.outcome == "ok" { "ok" } else { "bad" })) }
                    td data-label="From" { (view::or_dash(a.client_addr.as_deref())) @if let Some(r) = &a.request_id { br; span.muted { (r) } } }
                } } }
            } }
        }
    }
}
