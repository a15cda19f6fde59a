//! The operator console (§12): server-rendered pages at `/console` for the people who run
//! hexbroker. Plain HTML forms and links (every page and filter has an address); a small script
//! only adds copy buttons.
//!
//! # Sign-in and session
//! An `admin` API key is pasted once into the sign-in form and checked as the API checks keys
//! (the same cache and store look-up); failures take a place in the client address's allowance
//! of refused attempts (`HEXBROKER_CONNECT_ATTEMPT_LIMIT`, the guessing limit), and a good key
//! gives it back. The console then holds a session of its own: a random cookie (`hxbcs_…`),
//! stored only as its keyed hash in `console_session`, acting as that key in its tenant. It ends
//! after `HEXBROKER_CONSOLE_IDLE_TIMEOUT` unused, at `HEXBROKER_CONSOLE_SESSION_TTL` whatever
//! happens, when the key is revoked or expires, and at sign-out (the row is deleted, so every
//! replica refuses it at once). The key itself is never kept, in the browser or here.
//!
//! The cookie is `HttpOnly; SameSite=Strict; Path=/console`. When `HEXBROKER_PUBLIC_URL` is
//! https it is also `Secure` and named with the `__Host-` prefix, which browsers accept only with
//! `Path=/`, so such a cookie has `Path=/` (it still goes to this host alone, over https alone).
//!
//! # State changes
//! Every POST but the sign-in carries a CSRF token bound to the session (the keyed hash of the
//! cookie's secret under a label of its own, so the page never holds the cookie's hash), and
//! must come from the console's own origin (`Sec-Fetch-Site: same-origin`, or where a browser
//! does not send that header, an `Origin` that is the console's). Anything else is 403 with
//! nothing changed. Each action calls the very function the API's handler calls, audited with
//! the signed-in key as the actor.

pub(crate) mod connections;
pub(crate) mod keys;
pub(crate) mod lists;
pub(crate) mod view;
pub(crate) mod webhooks;

use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::audit::{Action, Actor, AuditContext, RequestInfo};
use crate::edge::ClientAddr;
use crate::error::ApiError;
use crate::scopes::Scope;
use crate::state::AppState;
use crate::store::{self, ConsoleSession, NewConsoleSession};
use view::Section;

const APP_CSS: &str = include_str!("app.css");
const APP_JS: &str = include_str!("app.js");

/// The session cookie's name over plain HTTP.
pub(crate) const COOKIE: &str = "hexbroker_console";
/// Its name when the public URL is https.
pub(crate) const SECURE_COOKIE: &str = "__Host-hexbroker_console";
/// Prefix of a console session's secret.
const SESSION_PREFIX: &str = "hxbcs_";
/// How stale `last_seen_at` may get before a request writes it again.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A signed-in console user: the session and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub(crate) struct Console {
    session: ConsoleSession,
    csrf: String,
}

impl Console {
    /// The tenant the console user sees.
    pub(crate) fn tenant(&self) -> &str {
        &self.session.tenant
    }

    /// The audit context of an action taken by the signed-in key.
    pub(crate) fn audit(&self, request: &RequestInfo, action: Action) -> AuditContext {
        request.audit(Actor::Key { id: self.session.key_id, name: self.session.key_name.clone() }, action)
    }

    /// Accepts a posted form: same origin and the session's CSRF token, else 403 (nothing done).
    // The refusal is the page answered at once, once per request: not worth a box.
    #[allow(clippy::result_large_err)]
    pub(crate) fn accept<T: Posted>(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        form: Result<Form<T>, FormRejection>,
    ) -> Result<T, Response> {
        if !same_origin(state, headers) {
            return Err(forbidden(state, "This request did not come from the console's own pages."));
        }
        let Ok(Form(form)) = form else {
            return Err(forbidden(state, "This form is missing its security token; open the page again."));
        };
        if !bool::from(form.csrf().as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Err(forbidden(
                state,
                "This form's security token is not this session's; open the page again.",
            ));
        }
        Ok(form)
    }
}

/// A posted console form: it carries the CSRF token.
pub(crate) trait Posted {
    /// The token it carries.
    fn csrf(&self) -> &str;
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Plain {
    csrf: String,
}

impl Posted for Plain {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The posted form, or why it could not be read (refused as 403 by [`Console::accept`]).
pub(crate) type PostedForm<T> = Result<Form<T>, FormRejection>;

/// Whether a state-changing request comes from the console's own origin: `Sec-Fetch-Site`
/// (which pages cannot forge) must say `same-origin` where it is sent, and an `Origin` that
/// names an origin must be the console's (the public URL's, or this request's host under the
/// public URL's scheme). Under `Referrer-Policy: no-referrer` browsers send `Origin: null` on a
/// same-origin form post, so `null` is taken only beside `Sec-Fetch-Site: same-origin`.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let ours = |origin: &str| {
        let public = &state.config.public_url;
        if origin == public.origin().ascii_serialization() {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        host.is_some_and(|host| origin == format!("{}://{host}", public.scheme()))
    };
    match (site, origin) {
        (Some(site), _) if site != b"same-origin" => false,
        (Some(_), Some(origin)) => origin == "null" || ours(origin),
        (Some(_), None) => true,
        (None, Some(origin)) => ours(origin),
        (None, None) => false,
    }
}

/// Whether the public URL is https (the cookie is then `Secure` and `__Host-`).
fn secure(state: &AppState) -> bool {
    state.config.public_url.scheme() == "https"
}

fn cookie_name(state: &AppState) -> &'static str {
    if secure(state) {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value that holds `value` for `max_age` seconds (0: remove it).
fn set_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let name = cookie_name(state);
    let text = if secure(state) {
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict; Secure")
    } else {
        format!("{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict")
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("hexbroker_console=; Max-Age=0"))
}

/// The session secret the request's cookie holds, if it holds one.
fn cookie_secret<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = cookie_name(state);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && v.starts_with(SESSION_PREFIX))
        .map(|(_, v)| v)
}

/// The CSRF token of the session whose secret is `secret`.
fn csrf_token(state: &AppState, secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(state.hasher.secret_hash(&format!("console-csrf\0{secret}")))
}

/// The signed-in console user of a request, if its cookie names a live session; a session found
/// dead (idle, past its expiry, its key gone) is deleted.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Console>, ApiError> {
    let Some(secret) = cookie_secret(state, headers) else { return Ok(None) };
    let Some(session) = state.store.console_session_by_hash(&state.hasher.secret_hash(secret)).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    let idle =
        chrono::TimeDelta::from_std(state.config.console_idle_timeout).unwrap_or(chrono::TimeDelta::MAX);
    let alive = session.expires_at > now
        && session.last_seen_at.checked_add_signed(idle).is_none_or(|until| until > now)
        && session.key_revoked_at.is_none()
        && session.key_expires_at.is_none_or(|at| at > now)
        && session.key_scopes.grants(Scope::Admin);
    if !alive {
        state.store.delete_console_session(session.id).await?;
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        state.store.touch_console_session(session.id, now).await?;
    }
    tracing::Span::current().record("key_id", tracing::field::display(session.key_id));
    Ok(Some(Console { csrf: csrf_token(state, secret), session }))
}

/// Console pages need a session: a page asked for without one leads to the sign-in form, and a
/// state change without one is refused (403) with nothing done.
impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match signed_in(state, &parts.headers).await {
            Ok(Some(console)) => Ok(console),
            Ok(None) if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(redirect("/console"))
            }
            Ok(None) => {
                Err(forbidden(state, "You are not signed in (or your session has ended); sign in again."))
            }
            Err(error) => Err(failure(state, None, error)),
        }
    }
}

/// A 303 to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    let mut headers = headers("text/html; charset=utf-8");
    headers.remove(header::CONTENT_TYPE);
    if let Ok(value) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, value);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// The content security policy of every console response.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The headers of every console response: the connect page's, with forms allowed to post here.
fn headers(content_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    headers
}

/// An HTML page with `status`.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, headers("text/html; charset=utf-8"), markup.into_string()).into_response()
}

/// A 403 page saying why.
pub(crate) fn forbidden(state: &AppState, why: &str) -> Response {
    let _ = state;
    problem(StatusCode::FORBIDDEN, "Not allowed", None, why)
}

/// A page for an error: `title`, and a sentence a person can act on.
pub(crate) fn problem(status: StatusCode, title: &str, console: Option<&Console>, why: &str) -> Response {
    let section = if console.is_some() { Section::Connections } else { Section::None };
    let body = html! {
        (view::notice("bad", why))
        p { a href=(if console.is_some() { "/console/connections" } else { "/console" }) { "Back to the console" } }
    };
    html_response(status, view::page(title, section, console, body))
}

/// The page for an error from the shared code path (the API's error, as a page: its status and
/// message; 5xx messages say nothing internal, and the cause is logged as the API logs it).
pub(crate) fn failure(state: &AppState, console: Option<&Console>, error: ApiError) -> Response {
    let _ = state;
    let status = error.status_code();
    let message = error.message().to_owned();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    // Logs the error as the API would (the internal cause included); its JSON body is dropped.
    drop(error.into_response());
    problem(status, title, console, &message)
}

/// `GET /console/app.css`
pub(crate) async fn style() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), APP_CSS)
}

/// `GET /console/app.js`: the copy buttons.
pub(crate) async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), APP_JS)
}

/// The sign-in form, with a message above it when there is one.
fn sign_in_form(message: Option<(&str, &str)>) -> Markup {
    let body = html! {
        @if let Some((tone, text)) = message { (view::notice(tone, text)) }
        p.lede { "Paste an API key with the " code { "admin" } " scope. It is checked once and not kept: the console holds a session of its own until you sign out." }
        form.card method="post" action="/console" {
            label for="key" { "Admin API key" }
            input #key type="password" name="key" autocomplete="off" spellcheck="false" required
                aria-describedby="key-help";
            p #key-help .muted { "Make one with " code { "hexbroker keys create --name console --scopes admin" } "." }
            button #sign-in type="submit" { "Sign in" }
        }
    };
    view::page("Sign in", Section::None, None, body)
}

/// `GET /console`: the sign-in form, or on to the connections when signed in already.
pub(crate) async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(Some(_)) => redirect("/console/connections"),
        Ok(None) => html_response(StatusCode::OK, sign_in_form(None)),
        Err(error) => failure(&state, None, error),
    }
}

/// The sign-in form's body.
#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    key: String,
}

/// `POST /console`: signs in with an admin API key, then on to the connections.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    form: PostedForm<SignInForm>,
) -> Response {
    if !same_origin(&state, &headers) {
        return forbidden(&state, "This request did not come from the console's own pages.");
    }
    let Ok(Form(form)) = form else {
        return html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            sign_in_form(Some(("bad", "Paste an API key."))),
        );
    };
    if let Err(error) = state.attempts.sign_in_attempt(from).map_err(ApiError::from) {
        let wait = error.retry_after().unwrap_or(60);
        let text = format!("Too many failed sign-ins from your address; try again in {wait} seconds.");
        let mut response = html_response(StatusCode::TOO_MANY_REQUESTS, sign_in_form(Some(("bad", &text))));
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let key = form.key.trim();
    let found = match state.auth.callers.find(&state.store, state.hasher.secret_hash(key)).await {
        Ok(found) => found,
        Err(error) => {
            state.attempts.sign_in_good(from);
            return failure(&state, None, error.into());
        }
    };
    let Some(key) = found.filter(|k| k.is_usable(store::now())) else {
        tracing::info!("console sign-in refused: unknown, revoked or expired key");
        let text = "That key is not valid: it may be mistyped, revoked or expired.";
        // 403 rather than 401: a form sign-in has no `WWW-Authenticate` challenge to offer.
        return html_response(StatusCode::FORBIDDEN, sign_in_form(Some(("bad", text))));
    };
    // A real key is no guess: its place is given back, whatever it may do.
    state.attempts.sign_in_good(from);
    if key.connection_id.is_some() || !key.scopes.grants(Scope::Admin) {
        let scopes: Vec<&str> = key.scopes.iter().map(Scope::name).collect();
        let text = if key.connection_id.is_some() {
            "That is a connection key; the console needs an API key with the admin scope.".to_owned()
        } else {
            format!(
                "That key has the scopes {}, but the console needs the admin scope. Sign in with an admin key.",
                scopes.join(", ")
            )
        };
        tracing::info!(key_id = %key.id, "console sign-in refused: not an admin key");
        return html_response(StatusCode::FORBIDDEN, sign_in_form(Some(("bad", &text))));
    }
    let secret = crate::crypto::new_secret(SESSION_PREFIX);
    let now = state.clock.now();
    let ttl =
        chrono::TimeDelta::from_std(state.config.console_session_ttl).unwrap_or(chrono::TimeDelta::days(1));
    let new = NewConsoleSession {
        id: Uuid::now_v7(),
        tenant: key.tenant.clone(),
        key_id: key.id,
        token_hash: state.hasher.secret_hash(secret.expose_secret()).to_vec(),
        created_at: now,
        expires_at: now + ttl,
    };
    if let Err(error) = state.store.insert_console_session(&new).await {
        return failure(&state, None, error.into());
    }
    tracing::info!(key_id = %key.id, session_id = %new.id, "console sign-in");
    let mut response = redirect("/console/connections");
    let max_age = state.config.console_session_ttl.as_secs();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, secret.expose_secret(), max_age));
    response
}

/// `POST /console/sign-out`: ends the session at once, everywhere.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    form: PostedForm<Plain>,
) -> Response {
    if let Err(refused) = console.accept(&state, &headers, form) {
        return refused;
    }
    if let Err(error) = state.store.delete_console_session(console.session.id).await {
        return failure(&state, Some(&console), error.into());
    }
    tracing::info!(session_id = %console.session.id, "console sign-out");
    let mut response = html_response(
        StatusCode::OK,
        sign_in_form(Some(("ok", "You are signed out. The session has ended."))),
    );
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, "", 0));
    response
}

/// Parses a path id as the API does; anything else names nothing (404).
pub(crate) fn path_id(text: &str, what: &'static str) -> Result<Uuid, ApiError> {
    crate::input::canonical_uuid(text).ok_or_else(|| ApiError::not_found(what))
}

/// The optional `before` cursor of a list page (an id); a malformed one is ignored.
pub(crate) fn before(text: Option<&str>) -> Option<Uuid> {
    text.and_then(|t| Uuid::parse_str(t).ok())
}
