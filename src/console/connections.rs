//! Connections in the console: the filtered, paged list (`/console/connections`), one
//! connection with its request log, events, audit trail and keys (`/console/connections/{id}`),
//! and its actions (verify, revoke a key, delete), each through the API's own function.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Section};
use super::{failure, html_response, path_id, redirect, Console, Plain, Posted, PostedForm};
use crate::audit::{Action, AuditFilter, RequestInfo};
use crate::error::{ApiError, Code, Path};
use crate::events::EventFilter;
use crate::hex::Subdomain;
use crate::input;
use crate::lifecycle::Status;
use crate::state::AppState;
use crate::store::{ConnectionFilter, RequestFilter};

/// Rows on a page.
const PAGE: u32 = 50;
/// Rows of each list on a connection's page.
const SECTION_ROWS: u32 = 25;

/// The filters of `/console/connections`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    end_user_id: Option<String>,
    subdomain: Option<String>,
    before: Option<String>,
    done: Option<String>,
}

/// `GET /console/connections`
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<ListQuery>,
) -> Response {
    match list_page(&state, &console, q).await {
        Ok(markup) => html_response(StatusCode::OK, markup),
        Err(error) => failure(&state, Some(&console), error),
    }
}

async fn list_page(state: &AppState, console: &Console, q: ListQuery) -> Result<Markup, ApiError> {
    let status =
        q.status.as_deref().filter(|s| !s.is_empty()).map(str::parse::<Status>).transpose().map_err(
            |_| ApiError::unprocessable(Code::InvalidQuery, "status is active, invalid or expired."),
        )?;
    let end_user_id = input::filter("end_user_id", q.end_user_id.clone().filter(|s| !s.is_empty()))
        .map_err(ApiError::invalid_query)?;
    let subdomain = input::filter("subdomain", q.subdomain.clone().filter(|s| !s.is_empty()))
        .map_err(ApiError::invalid_query)?
        .map(|s| Subdomain::parse(&s).map(|s| s.as_str().to_owned()).unwrap_or(s));
    let filter = ConnectionFilter {
        end_user_id: end_user_id.clone(),
        status,
        subdomain: subdomain.clone(),
        before_id: super::before(q.before.as_deref()),
        limit: PAGE + 1,
    };
    let rows = state.store.list_connections(console.tenant(), &filter).await?;
    let (rows, next) = view::cut(rows, PAGE, |c| c.id);
    let counts = crate::routes::ConnectionView::counts(state, &rows).await?;
    let now = state.clock.now();
    let warning =
        chrono::TimeDelta::from_std(state.config.expiry_warning).unwrap_or(chrono::TimeDelta::days(3));
    let filtered = status.is_some() || end_user_id.is_some() || subdomain.is_some();
    let base = view::query(
        "/console/connections",
        &[
            ("status", q.status.as_deref()),
            ("end_user_id", q.end_user_id.as_deref()),
            ("subdomain", q.subdomain.as_deref()),
        ],
    );
    let body = html! {
        @if q.done.as_deref() == Some("deleted") { (view::notice("ok", "The connection was deleted; its token is gone for good.")) }
        form.filters method="get" action="/console/connections" role="search" aria-label="Filter connections" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[status.is_none()] { "Any" }
                    @for s in ["active", "invalid", "expired"] {
                        option value=(s) selected[q.status.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            div.field {
                label for="f-user" { "End user id" }
                input #f-user type="text" name="end_user_id" value=(q.end_user_id.as_deref().unwrap_or_default());
            }
            div.field {
                label for="f-workspace" { "Workspace" }
                input #f-workspace type="text" name="subdomain" placeholder="acme" value=(q.subdomain.as_deref().unwrap_or_default());
            }
            div.field.buttons {
                button #filter type="submit" { "Filter" }
                @if filtered { a href="/console/connections" { "Clear filters" } }
            }
        }
        @if rows.is_empty() {
            @if filtered {
                (view::empty("No connection matches these filters.", html! { "Try another status, end user or workspace, or " a href="/console/connections" { "clear the filters" } "." }))
            } @else {
                (view::empty("No connections yet.", html! { "Connections appear here once people connect a Hex workspace: create a connect session with " code { "POST /v1/connect/sessions" } " and send them its link." }))
            }
        } @else {
            div.table-wrap {
                table #connections {
                    caption.visually-hidden { "Connections, newest first" }
                    thead { tr {
                        th scope="col" { "End user" } th scope="col" { "Label" } th scope="col" { "Workspace" }
                        th scope="col" { "Token" } th scope="col" { "Status" } th scope="col" { "Token expires" }
                        th scope="col" { "Last used" } th scope="col" { "Calls / errors (24 h)" }
                    } }
                    tbody {
                        @for c in &rows {
                            @let n = counts.iter().find(|(id, _)| *id == c.id).map(|(_, n)| *n).unwrap_or_default();
                            tr {
                                td data-label="End user" {
                                    a href={ "/console/connections/" (c.id) } { (c.end_user_id) }
                                    @if let Some(email) = &c.end_user_email { br; span.muted { (email) } }
                                }
                                td data-label="Label" { (view::or_dash(c.label.as_deref())) }
                                td data-label="Workspace" { (c.subdomain) }
                                td data-label="Token" { (c.token_type.as_str()) " " code { (c.token_hint) } }
                                td data-label="Status" { (view::status_badge(c.current_status(now).as_str(), c.token_expires_at, now, warning)) }
                                td data-label="Token expires" { (view::maybe_time(c.token_expires_at, now)) }
                                td data-label="Last used" { (view::maybe_time(c.last_used_at, now)) }
                                td data-label="Calls / errors (24 h)" { (n.calls_24h) " / " (n.errors_24h) }
                            }
                        }
                    }
                }
            }
            (view::pager(&base, next))
        }
    };
    Ok(view::page("Connections", Section::Connections, Some(console), body))
}

/// The query of a connection's page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShowQuery {
    status: Option<String>,
    done: Option<String>,
}

/// `GET /console/connections/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    console: Result<Console, Response>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    // An address that cannot be a connection is not found, with or without a session; only then
    // does a missing session lead on to the sign-in page.
    if let Err(error) = path_id(&id, "connection") {
        return failure(&state, console.as_ref().ok(), error);
    }
    let console = match console {
        Ok(console) => console,
        Err(to_sign_in) => return to_sign_in,
    };
    match show_page(&state, &console, &id, q).await {
        Ok(markup) => html_response(StatusCode::OK, markup),
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// What a `done=` after an action says.
fn done_notice(done: Option<&str>) -> Markup {
    match done {
        Some("verified") => view::notice("ok", "Checked with Hex just now; the status below is the result."),
        Some("key-revoked") => {
            view::notice("ok", "The connection key was revoked; it stops working at once.")
        }
        _ => html! {},
    }
}

async fn show_page(state: &AppState, console: &Console, id: &str, q: ShowQuery) -> Result<Markup, ApiError> {
    let id = path_id(id, "connection")?;
    let tenant = console.tenant();
    let c = state.store.connection(tenant, id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    let status_filter = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(crate::routes::request_status_filter(text)?),
        None => None,
    };
    let requests = state
        .store
        .list_requests(
            tenant,
            &RequestFilter {
                connection_id: Some(id),
                status: status_filter,
                limit: SECTION_ROWS,
                ..Default::default()
            },
        )
        .await?;
    let events = state
        .store
        .list_events(
            tenant,
            &EventFilter { connection_id: Some(id), limit: SECTION_ROWS, ..Default::default() },
        )
        .await?;
    let audit = state
        .store
        .list_audit(
            tenant,
            &AuditFilter { connection_id: Some(id), limit: SECTION_ROWS, ..Default::default() },
        )
        .await?;
    let keys = state.store.list_connection_keys(tenant, id).await?;
    let counts = crate::routes::ConnectionView::counts(state, std::slice::from_ref(&c)).await?;
    let n = counts.first().map(|(_, n)| *n).unwrap_or_default();
    let now = state.clock.now();
    let warning =
        chrono::TimeDelta::from_std(state.config.expiry_warning).unwrap_or(chrono::TimeDelta::days(3));
    let status = c.current_status(now);
    let title = c.label.clone().unwrap_or_else(|| format!("{} · {}", c.end_user_id, c.subdomain));
    let here = format!("/console/connections/{id}");
    let metadata = serde_json::to_string_pretty(&c.metadata).unwrap_or_default();
    let body = html! {
        (done_notice(q.done.as_deref()))
        p.breadcrumbs { a href="/console/connections" { "← Connections" } }
        section aria-labelledby="h-identity" {
            h2 #h-identity { "Connection" }
            dl.facts {
                dt { "Id" } dd { code #connection-id { (c.id) } " " button.copy type="button" data-copy="connection-id" hidden { "Copy" } }
                dt { "Status" } dd #status { (view::status_badge(status.as_str(), c.token_expires_at, now, warning))
                    @if let Some(reason) = &c.status_reason { " " span.muted { (reason) } } }
                dt { "End user" } dd { (c.end_user_id) @if let Some(e) = &c.end_user_email { " · " (e) } }
                dt { "Label" } dd { (view::or_dash(c.label.as_deref())) }
                dt { "Workspace" } dd { (c.subdomain) @if let Some(url) = &c.hex_url { " · " (url) } }
                dt { "Token" } dd { (c.token_type.as_str()) " " code { (c.token_hint) } }
                dt { "Hex identity" } dd { (view::or_dash(c.hex_user_email.as_deref())) " · org " (view::or_dash(c.hex_org_id.as_deref())) }
                dt { "Token expires" } dd { (view::maybe_time(c.token_expires_at, now)) }
                dt { "Last verified" } dd { (view::maybe_time(c.last_verified_at, now)) }
                dt { "Next check" } dd { (view::maybe_time(c.next_verify_at, now)) }
                dt { "Last used" } dd { (view::maybe_time(c.last_used_at, now)) }
                dt { "Calls / errors (24 h)" } dd { (n.calls_24h) " / " (n.errors_24h) }
                dt { "Created" } dd { (view::time(c.created_at, now)) }
                dt { "Metadata" } dd { pre.metadata { (metadata) } }
            }
            div.actions {
                (view::action_button(console, &format!("{here}/verify"), "Verify now", "primary"))
            }
        }
        (requests_section(&here, &requests, q.status.as_deref(), now))
        section aria-labelledby="h-events" {
            h2 #h-events { "Events" }
            @if events.is_empty() {
                (view::empty("No events for this connection.", html! { "Events are recorded when the connection is created, changes status or is deleted." }))
            } @else {
                div.table-wrap { table {
                    caption.visually-hidden { "This connection's events" }
                    thead { tr { th scope="col" { "Type" } th scope="col" { "When" } th scope="col" { "Delivery" } th scope="col" { "Attempts" } th scope="col" { "Last error" } } }
                    tbody { @for e in &events { tr {
                        td data-label="Type" { code { (e.kind.as_str()) } } td data-label="When" { (view::time(e.created_at, now)) }
                        td data-label="Delivery" { (super::lists::event_state(e.state)) } td data-label="Attempts" { (e.attempts) }
                        td data-label="Last error" { (view::or_dash(e.last_error.as_deref())) }
                    } } }
                } }
                p { a href={ "/console/events?connection_id=" (id) } { "All events of this connection" } }
            }
        }
        section aria-labelledby="h-keys" {
            h2 #h-keys { "Connection keys" }
            @if keys.is_empty() {
                (view::empty("No connection keys.", html! { "Existing Hex clients use a connection key through the drop-in surface; mint one with " code { "POST /v1/connections/{id}/keys" } "." }))
            } @else {
                div.table-wrap { table #connection-keys {
                    caption.visually-hidden { "This connection's keys" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody { @for k in &keys { tr {
                        td data-label="Name" { (k.name) } td data-label="Prefix" { code { (k.prefix) "…" } }
                        td data-label="Scopes" { (k.scopes.to_string()) } td data-label="Created" { (view::time(k.created_at, now)) }
                        td data-label="State" { (super::keys::key_state(k, now)) }
                        td { @if k.is_usable(now) { (view::action_button(console, &format!("{here}/keys/{}/revoke", k.id), "Revoke", "danger")) } }
                    } } }
                } }
            }
        }
        section aria-labelledby="h-audit" {
            h2 #h-audit { "Audit trail" }
            (super::lists::audit_table(&audit, now))
        }
        section.danger-zone aria-labelledby="h-delete" {
            h2 #h-delete { "Delete this connection" }
            p { "The stored Hex token is destroyed for good, its connection keys stop working, and a " code { "connection.deleted" } " event is sent." }
            form method="post" action={ (here) "/delete" } {
                (view::csrf(console))
                label for="confirm" { "Type " strong { "delete" } " to confirm" }
                input #confirm type="text" name="confirm" autocomplete="off" required;
                button.danger #delete type="submit" { "Delete connection" }
            }
        }
    };
    Ok(view::page(&title, Section::Connections, Some(console), body))
}

fn requests_section(
    here: &str,
    requests: &[crate::store::RequestRecord],
    status: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    html! {
        section aria-labelledby="h-requests" {
            h2 #h-requests { "Request log" }
            form.filters method="get" action=(here) aria-label="Filter the request log" {
                div.field {
                    label for="r-status" { "Status" }
                    input #r-status type="text" name="status" placeholder="429 or 4xx" value=(status.unwrap_or_default());
                }
                div.field.buttons { button type="submit" { "Filter" } @if status.is_some_and(|s| !s.is_empty()) { a href=(here) { "Clear" } } }
            }
            @if requests.is_empty() {
                (view::empty("No calls recorded.", html! { "Calls through " code { "/v1/proxy" } ", " code { "/api" } " and MCP appear here within a second or two." }))
            } @else {
                div.table-wrap { table #requests {
                    caption.visually-hidden { "This connection's calls, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Call" } th scope="col" { "Status" } th scope="col" { "By" } th scope="col" { "Time" } th scope="col" { "Via" } } }
                    tbody { @for r in requests { tr {
                        td data-label="When" { (view::time(r.at, now)) }
                        td data-label="Call" { code { (r.method) " " (r.path) } }
                        td data-label="Status" { (view::badge(&r.status.to_string(), if r.status >= 400 { "bad" } else { "ok" }))
                            @if let Some(code) = &r.code { " " code { (code) } } }
                        td data-label="By" { (r.answered_by) }
                        td data-label="Time" { (r.duration_ms) " ms" }
                        td data-label="Via" { (r.via) }
                    } } }
                } }
            }
        }
    }
}

/// `POST /console/connections/{id}/verify`: the API's verify.
pub(crate) async fn verify(
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
        let id = path_id(&id, "connection")?;
        let audit = console.audit(&request, Action::Verify);
        crate::routes::verify_connection(&state, console.tenant(), id, &audit).await
    };
    match outcome.await {
        Ok(c) => redirect(&format!("/console/connections/{}?done=verified", c.id)),
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// The delete form: the CSRF token and the typed confirmation.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    csrf: String,
    confirm: String,
}

impl Posted for DeleteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/connections/{id}/delete`: the API's delete, once `delete` is typed.
pub(crate) async fn delete(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: PostedForm<DeleteForm>,
) -> Response {
    let form = match console.accept(&state, &headers, form) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let outcome = async {
        let id = path_id(&id, "connection")?;
        if form.confirm.trim() != "delete" {
            // Nothing is deleted; the connection must exist for the message to make sense.
            state
                .store
                .connection(console.tenant(), id)
                .await?
                .ok_or_else(|| ApiError::not_found("connection"))?;
            return Err(ApiError::unprocessable(
                Code::InvalidRequest,
                "Type delete in the confirmation box to delete this connection; nothing was deleted.",
            ));
        }
        let audit = console.audit(&request, Action::Delete);
        crate::routes::delete_connection(&state, console.tenant(), id, &audit).await
    };
    match outcome.await {
        Ok(()) => redirect("/console/connections?done=deleted"),
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// `POST /console/connections/{id}/keys/{key_id}/revoke`: the API's revoke.
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    Path((id, key_id)): Path<(String, String)>,
    form: PostedForm<Plain>,
) -> Response {
    if let Err(refused) = console.accept(&state, &headers, form) {
        return refused;
    }
    let outcome = async {
        let id = path_id(&id, "connection")?;
        let key_id = path_id(&key_id, "connection key")?;
        let audit = console.audit(&request, Action::KeyRevoke);
        crate::routes::revoke_connection_key(&state, console.tenant(), id, key_id, &audit).await?;
        Ok::<Uuid, ApiError>(id)
    };
    match outcome.await {
        Ok(id) => redirect(&format!("/console/connections/{id}?done=key-revoked")),
        Err(error) => failure(&state, Some(&console), error),
    }
}
