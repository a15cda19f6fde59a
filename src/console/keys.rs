//! The tenant's API keys (`/console/keys`): list, create with chosen scopes (the secret shown
//! once, on the answer to the create and nowhere else), revoke. Creation and revocation are the
//! command line's own (`auth::create_key`, `Store::revoke_api_key`), audited with the signed-in
//! key as the actor.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::view::{self, Section};
use super::{failure, html_response, path_id, redirect, Console, Plain, Posted, PostedForm};
use crate::audit::{Action, RequestInfo};
use crate::auth::{self, KeySpec};
use crate::error::{ApiError, Code, Path};
use crate::input::KeyName;
use crate::scopes::{Scope, Scopes};
use crate::state::AppState;
use crate::store::ApiKey;

/// Rows on a page.
const PAGE: u32 = 50;

/// The scopes an API key may be given, with what each lets it do.
const SCOPES: [(Scope, &str); 6] = [
    (Scope::Connect, "create connect sessions and connections"),
    (Scope::ConnectionsRead, "read connections and their request log"),
    (Scope::ConnectionsWrite, "change, verify, delete connections; mint connection keys"),
    (Scope::Proxy, "call Hex through any connection (any method)"),
    (Scope::ProxyRead, "call Hex through any connection (GET and HEAD only)"),
    (Scope::Admin, "everything in this tenant, the console included"),
];

/// A key's state as a badge.
pub(crate) fn key_state(key: &ApiKey, now: DateTime<Utc>) -> Markup {
    if key.revoked_at.is_some() {
        view::badge("revoked", "bad")
    } else if key.expires_at.is_some_and(|at| at <= now) {
        view::badge("expired", "bad")
    } else {
        view::badge("active", "ok")
    }
}

/// The query of `/console/keys`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeysQuery {
    before: Option<String>,
    done: Option<String>,
}

/// `GET /console/keys`
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<KeysQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("revoked") => Some(("ok", "The key was revoked; it stops working at once.")),
        _ => None,
    };
    render(&state, &console, q.before.as_deref(), notice, None).await
}

/// The page, with a notice and, right after a create, the new key (shown this once).
async fn render(
    state: &AppState,
    console: &Console,
    before: Option<&str>,
    notice: Option<(&str, &str)>,
    created: Option<(&ApiKey, &str)>,
) -> Response {
    let rows = match state.store.list_tenant_api_keys(console.tenant(), super::before(before), PAGE + 1).await
    {
        Ok(rows) => rows,
        Err(error) => return failure(state, Some(console), error.into()),
    };
    let (rows, next) = view::cut(rows, PAGE, |k| k.id);
    let now = state.clock.now();
    let body = html! {
        @if let Some((tone, text)) = notice { (view::notice(tone, text)) }
        @if let Some((key, secret)) = created {
            div.secret-box role="status" data-home="/console/keys" {
                p { strong { "Key “" (key.name) "” was created." } " Copy it now: it is shown this once and cannot be shown again." }
                div.secret-row {
                    label.visually-hidden for="new-secret" { "The new API key" }
                    input #new-secret type="text" readonly value=(secret);
                    button.copy type="button" data-copy="new-secret" hidden { "Copy" }
                }
            }
        }
        section aria-labelledby="h-create" {
            h2 #h-create { "Create a key" }
            form.card method="post" action="/console/keys" {
                (view::csrf(console))
                label for="key-name" { "Name" }
                input #key-name type="text" name="name" required maxlength="200" placeholder="billing-service";
                fieldset {
                    legend { "Scopes" }
                    @for (scope, what) in SCOPES {
                        div.check {
                            input type="checkbox" name="scopes" value=(scope.name()) id={ "scope-" (scope.name().replace(':', "-")) };
                            label for={ "scope-" (scope.name().replace(':', "-")) } { code { (scope.name()) } " — " (what) }
                        }
                    }
                }
                button #create-key type="submit" { "Create key" }
            }
        }
        section aria-labelledby="h-keys" {
            h2 #h-keys { "Keys in " (console.tenant()) }
            @if rows.is_empty() {
                (view::empty("No API keys in this tenant.", html! { "Create one above, or with " code { "hexbroker keys create" } "." }))
            } @else {
                div.table-wrap { table #keys {
                    caption.visually-hidden { "API keys, newest first" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody { @for k in &rows { tr {
                        td data-label="Name" { (k.name) }
                        td data-label="Prefix" { code { (k.prefix) "…" } }
                        td data-label="Scopes" { (k.scopes.to_string()) }
                        td data-label="Created" { (view::time(k.created_at, now)) }
                        td data-label="Expires" { (view::maybe_time(k.expires_at, now)) }
                        td data-label="State" { (key_state(k, now)) }
                        td { @if k.is_usable(now) { (view::action_button(console, &format!("/console/keys/{}/revoke", k.id), "Revoke", "danger")) } }
                    } } }
                } }
                (view::pager("/console/keys", next))
            }
        }
    };
    let status = if created.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    html_response(status, view::page("API keys", Section::Keys, Some(console), body))
}

/// The create form: a name and the chosen scopes (`scopes` repeated).
#[derive(Debug, Deserialize)]
pub(crate) struct CreateForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

impl Posted for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/keys`: makes a key in the console's tenant; the answer shows it once.
pub(crate) async fn create(
    State(state): State<AppState>,
    console: Console,
    request: RequestInfo,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Repeated `scopes` fields: read as pairs, which serde's form reader keeps in order.
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let form = CreateForm {
        csrf: field("csrf").unwrap_or_default(),
        name: field("name").unwrap_or_default(),
        scopes: pairs.iter().filter(|(k, _)| k == "scopes").map(|(_, v)| v.clone()).collect(),
    };
    let form = match console.accept(&state, &headers, Ok(axum::Form(form))) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let outcome = async {
        let name = KeyName::parse(form.name.trim().to_owned())?;
        let scopes: Scopes = form.scopes.join(",").parse().map_err(|_| {
            ApiError::unprocessable(Code::InvalidRequest, "Choose at least one scope for the key.")
        })?;
        if scopes.is_empty() {
            return Err(ApiError::unprocessable(
                Code::InvalidRequest,
                "Choose at least one scope for the key.",
            ));
        }
        let spec = KeySpec {
            name: name.as_str(),
            tenant: console.tenant(),
            scopes,
            connection_id: None,
            expires_at: None,
        };
        let created = auth::create_key(&state, spec, &console.audit(&request, Action::KeyCreate)).await?;
        tracing::info!(key_id = %created.key.id, "API key created in the console");
        Ok(created)
    };
    match outcome.await {
        Ok(created) => {
            render(&state, &console, None, None, Some((&created.key, created.secret.expose_secret()))).await
        }
        Err(error) => failure(&state, Some(&console), error),
    }
}

/// `POST /console/keys/{id}/revoke`: the command line's revoke, for a key of this tenant.
pub(crate) async fn revoke(
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
        let id = path_id(&id, "API key")?;
        let key = state.store.api_key_in_tenant(console.tenant(), id).await?;
        if key.is_none_or(|k| k.connection_id.is_some()) {
            return Err(ApiError::not_found("API key"));
        }
        if !state.store.revoke_api_key(id, &console.audit(&request, Action::KeyRevoke)).await? {
            return Err(ApiError::not_found("API key"));
        }
        Ok(())
    };
    match outcome.await {
        Ok(()) => redirect("/console/keys?done=revoked"),
        Err(error) => failure(&state, Some(&console), error),
    }
}
