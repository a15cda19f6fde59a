//! The tenant's webhook endpoints (§13) in the console: list and create (`/console/webhooks`),
//! and one endpoint with its recent deliveries and actions (`/console/webhooks/{id}`): enable or
//! disable, rotate the secret, send a test event. The secret appears once, on the answer to the
//! create or the rotation. Each action is the API's own function.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::view::{self, Section};
use super::{failure, html_response, redirect, Console, Plain, Posted, PostedForm};
use crate::audit::{Action, RequestInfo};
use crate::error::{ApiError, Path};
use crate::events::endpoints::Endpoint;
use crate::lifecycle::EventType;
use crate::state::AppState;

/// Rows on a page.
const PAGE: u32 = 50;

/// The box that shows a secret this once.
fn secret_box(what: &str, secret: &str, home: &str) -> Markup {
    html! {
        div.secret-box role="status" data-home=(home) {
            p { strong { (what) } " Copy the signing secret now: it is shown this once and cannot be shown again." }
            div.secret-row {
                label.visually-hidden for="new-secret" { "The signing secret" }
                input #new-secret type="text" readonly value=(secret);
                button.copy type="button" data-copy="new-secret" hidden { "Copy" }
            }
        }
    }
}

fn enabled_badge(endpoint: &Endpoint) -> Markup {
    if endpoint.enabled {
        view::badge("enabled", "ok")
    } else {
        view::badge("disabled", "muted")
    }
}

fn types_text(endpoint: &Endpoint) -> String {
    if endpoint.event_types.0.is_empty() {
        "all events".into()
    } else {
        endpoint.event_types.0.join(", ")
    }
}

/// The query of `/console/webhooks`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    before: Option<String>,
}

/// `GET /console/webhooks`
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<ListQuery>,
) -> Response {
    render_list(&state, &console, q.before.as_deref(), None).await
}

async fn render_list(
    state: &AppState,
    console: &Console,
    before: Option<&str>,
    created: Option<(&Endpoint, &str)>,
) -> Response {
    let rows = match state.store.list_endpoints(console.tenant(), super::before(before), PAGE + 1).await {
        Ok(rows) => rows,
        Err(error) => return failure(state, Some(console), error.into()),
    };
    let (rows, next) = view::cut(rows, PAGE, |e| e.id);
    let now = state.clock.now();
    let body = html! {
        @if let Some((endpoint, secret)) = created {
            (secret_box(&format!("Endpoint {} was created.", endpoint.url), secret, "/console/webhooks"))
        }
        section aria-labelledby="h-create" {
            h2 #h-create { "Add an endpoint" }
            form.card method="post" action="/console/webhooks" {
                (view::csrf(console))
                label for="wh-url" { "URL" }
                input #wh-url type="url" name="url" required placeholder="https://app.example.com/hooks/hexbroker";
                label for="wh-description" { "Description (optional)" }
                input #wh-description type="text" name="description" maxlength="500";
                fieldset {
                    legend { "Event types (none chosen: all)" }
                    @for t in EventType::ALL {
                        div.check {
                            input type="checkbox" name="event_types" value=(t.as_str()) id={ "type-" (t.as_str().replace('.', "-")) };
                            label for={ "type-" (t.as_str().replace('.', "-")) } { code { (t.as_str()) } }
                        }
                    }
                }
                button #create-endpoint type="submit" { "Add endpoint" }
            }
        }
        section aria-labelledby="h-endpoints" {
            h2 #h-endpoints { "Endpoints" }
            @if rows.is_empty() {
                (view::empty("No webhook endpoints.", html! { "Add one above to receive this tenant's events, signed as Standard Webhooks." }))
            } @else {
                div.table-wrap { table #endpoints {
                    caption.visually-hidden { "Webhook endpoints, newest first" }
                    thead { tr { th scope="col" { "URL" } th scope="col" { "Description" } th scope="col" { "Events" } th scope="col" { "State" } th scope="col" { "Created" } } }
                    tbody { @for e in &rows { tr {
                        td data-label="URL" { a href={ "/console/webhooks/" (e.id) } { (e.url) } }
                        td data-label="Description" { (view::or_dash(e.description.as_deref())) }
                        td data-label="Events" { (types_text(e)) }
                        td data-label="State" { (enabled_badge(e)) }
                        td data-label="Created" { (view::time(e.created_at, now)) }
                    } } }
                } }
                (view::pager("/console/webhooks", next))
            }
        }
    };
    let status = if created.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    html_response(status, view::page("Webhook endpoints", Section::Webhooks, Some(console), body))
}

/// The create form.
#[derive(Debug)]
pub(crate) struct CreateForm {
    csrf: String,
    url: String,
    description: Option<String>,
    event_types: Vec<String>,
}

impl Posted for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/webhooks`: the API's create; the answer shows the secret once.
pub(crate) async fn create(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let form = CreateForm {
        csrf: field("csrf").unwrap_or_default(),
        url: field("url").unwrap_or_default(),
        description: field("description").filter(|d| !d.trim().is_empty()),
        event_types: pairs.iter().filter(|(k, _)| k == "event_types").map(|(_, v)| v.clone()).collect(),
    };
    let form = match console.accept(&state, &headers, Ok(axum::Form(form))) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let audit = console.audit(&request, Action::WebhookEndpointCreate);
    let types = Some(form.event_types);
    match crate::routes::create_endpoint(&state, console.tenant(), &form.url, form.description, types, &audit)
        .await
    {
        Ok((endpoint, secret)) => {
            render_list(&state, &console, None, Some((&endpoint, secret.expose_secret()))).await
        }
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// The query of an endpoint's page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShowQuery {
    before: Option<String>,
    done: Option<String>,
}

/// `GET /console/webhooks/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    console: Result<Console, Response>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    // An address that cannot be an endpoint is not found, with or without a session; only then
    // does a missing session lead on to the sign-in page.
    if let Err(error) = super::path_id(&id, "webhook endpoint") {
        return super::failure(&state, console.as_ref().ok(), error);
    }
    let console = match console {
        Ok(console) => console,
        Err(to_sign_in) => return to_sign_in,
    };
    let notice = match q.done.as_deref() {
        Some("tested") => {
            Some("A webhook.test event was queued to this endpoint; its delivery appears below.")
        }
        Some("enabled") => Some("The endpoint is enabled: it receives events again."),
        Some("disabled") => Some("The endpoint is disabled: no events are sent to it."),
        _ => None,
    };
    render_one(&state, &console, &id, q.before.as_deref(), notice, None).await
}

async fn render_one(
    state: &AppState,
    console: &Console,
    id: &str,
    before: Option<&str>,
    notice: Option<&str>,
    secret: Option<&str>,
) -> Response {
    let found = async {
        let id = crate::routes::endpoint_id(id)?;
        let endpoint = state
            .store
            .endpoint(console.tenant(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        let attempts = state.store.list_attempts(endpoint.id, super::before(before), PAGE + 1).await?;
        Ok::<_, ApiError>((endpoint, attempts))
    };
    let (endpoint, attempts) = match found.await {
        Ok(found) => found,
        Err(error) => return failure(state, Some(console), error),
    };
    let (attempts, next) = view::cut(attempts, PAGE, |a| a.id);
    let now = state.clock.now();
    let here = format!("/console/webhooks/{}", endpoint.id);
    let body = html! {
        @if let Some(text) = notice { (view::notice("ok", text)) }
        @if let Some(secret) = secret { (secret_box("The secret was rotated; the previous one keeps signing beside it for 24 hours.", secret, &here)) }
        p.breadcrumbs { a href="/console/webhooks" { "← Webhook endpoints" } }
        dl.facts {
            dt { "URL" } dd { (endpoint.url) }
            dt { "Description" } dd { (view::or_dash(endpoint.description.as_deref())) }
            dt { "Events" } dd { (types_text(&endpoint)) }
            dt { "State" } dd #endpoint-state { (enabled_badge(&endpoint)) }
            dt { "Created" } dd { (view::time(endpoint.created_at, now)) }
            dt { "Changed" } dd { (view::time(endpoint.updated_at, now)) }
        }
        div.actions {
            form.inline method="post" action={ (here) "/enabled" } {
                (view::csrf(console))
                input type="hidden" name="enabled" value=(if endpoint.enabled { "false" } else { "true" });
                button.secondary #toggle type="submit" { (if endpoint.enabled { "Disable" } else { "Enable" }) }
            }
            (view::action_button(console, &format!("{here}/rotate"), "Rotate secret", "secondary"))
            (view::action_button(console, &format!("{here}/test"), "Send test event", "primary"))
        }
        section aria-labelledby="h-deliveries" {
            h2 #h-deliveries { "Recent deliveries" }
            @if attempts.is_empty() {
                (view::empty("No deliveries yet.", html! { "Send a test event to see one, or wait for the next event of this tenant." }))
            } @else {
                div.table-wrap { table #deliveries {
                    caption.visually-hidden { "Delivery attempts, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Attempt" } th scope="col" { "Answer" } th scope="col" { "Time" } th scope="col" { "Error" } } }
                    tbody { @for a in &attempts { tr {
                        td data-label="When" { (view::time(a.at, now)) }
                        td data-label="Event" { code { (a.event_type) } }
                        td data-label="Attempt" { (a.attempt) }
                        td data-label="Answer" { @match a.status_code {
                            Some(code) => (view::badge(&code.to_string(), if (200..300).contains(&code) { "ok" } else { "bad" })),
                            None => (view::badge("no answer", "bad")),
                        } }
                        td data-label="Time" { (a.duration_ms) " ms" }
                        td data-label="Error" { (view::or_dash(a.error.as_deref())) }
                    } } }
                } }
                (view::pager(&here, next))
            }
        }
    };
    html_response(StatusCode::OK, view::page("Webhook endpoint", Section::Webhooks, Some(console), body))
}

/// The enable/disable form.
#[derive(Debug, Deserialize)]
pub(crate) struct EnabledForm {
    csrf: String,
    enabled: String,
}

impl Posted for EnabledForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/webhooks/{id}/enabled`: the API's PATCH of `enabled`.
pub(crate) async fn set_enabled(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: PostedForm<EnabledForm>,
) -> Response {
    let form = match console.accept(&state, &headers, form) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let enabled = form.enabled == "true";
    let outcome = async {
        let id = crate::routes::endpoint_id(&id)?;
        let body = crate::routes::UpdateEndpointBody {
            url: None,
            description: None,
            event_types: None,
            enabled: Some(enabled),
        };
        let audit = console.audit(&request, Action::WebhookEndpointUpdate);
        crate::routes::update_endpoint(&state, console.tenant(), id, body, &audit).await
    };
    match outcome.await {
        Ok(endpoint) => redirect(&format!(
            "/console/webhooks/{}?done={}",
            endpoint.id,
            if enabled { "enabled" } else { "disabled" }
        )),
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// `POST /console/webhooks/{id}/rotate`: the API's rotation; the answer shows the new secret once.
pub(crate) async fn rotate(
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
        let id = crate::routes::endpoint_id(&id)?;
        let audit = console.audit(&request, Action::WebhookEndpointRotateSecret);
        crate::routes::rotate_endpoint_secret(&state, console.tenant(), id, &audit).await
    };
    match outcome.await {
        Ok((endpoint, secret)) => {
            render_one(&state, &console, &endpoint.id.to_string(), None, None, Some(secret.expose_secret()))
                .await
        }
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// `POST /console/webhooks/{id}/test`: the API's test event.
pub(crate) async fn test(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: PostedForm<Plain>,
) -> Response {
    if let Err(refused) = console.accept(&state, &headers, form) {
        return refused;
    }
    let outcome = async {
        let id = crate::routes::endpoint_id(&id)?;
        crate::routes::queue_test_event(&state, console.tenant(), id).await?;
        Ok::<_, ApiError>(id)
    };
    match outcome.await {
        Ok(id) => redirect(&format!("/console/webhooks/{id}?done=tested")),
        Err(error) => failure(&state, Some(&console), error),
    }
}
