//! `GET /connect` and its two assets: the hosted connect form (§6), embedded in the binary; and
//! `GET /connect/sdk.js`, the script a frontend on another origin loads to open that form.
//!
//! The session token travels in the URL fragment, so it never reaches this handler; the page's
//! script reads it, drops it from the address bar, and sends it only as a bearer token to
//! `POST /v1/connect`. The allowed origins are written into the page (for `postMessage`) and
//! into `frame-ancestors`, so only those origins may frame it.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../connect_page/index.html");
const APP_JS: &str = include_str!("../connect_page/app.js");
const APP_CSS: &str = include_str!("../connect_page/app.css");
const SDK_JS: &str = include_str!("../connect_page/sdk.js");

/// How long browsers and CDNs may keep `sdk.js` without asking again: a day, then revalidated
/// by its `ETag` (a week more may be served stale while that happens). The URL stays the same
/// across versions, so "immutable" would pin a page to an old copy for good.
const SDK_CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";

/// Where `index.html` expects the HTML-escaped JSON array of allowed origins.
const ORIGINS_PLACEHOLDER: &str = "{{allowed_origins}}";

/// Where `index.html` says more about the workspace field when the operator named Hex origins of
/// their own (`HEXBROKER_HEX_HOSTS`, §6 step 1b).
const HOSTS_PLACEHOLDER: &str = "{{hex_hosts_hint}}";

/// What the page says then. The hosts themselves are not shown: the page is public, and a person
/// pastes the address they already use.
const HOSTS_HINT: &str = " If your company runs Hex on its own domain, paste the address you open \
     Hex at instead, starting with <code>https://</code>.";

/// `GET /connect`: the connect form, with the allowed origins written in.
pub async fn index(State(state): State<AppState>) -> impl IntoResponse {
    let origins = origins(&state);
    let json = serde_json::to_string(&origins).unwrap_or_else(|_| "[]".to_owned());
    let hint = if state.hex.has_hosts() { HOSTS_HINT } else { "" };
    let html = INDEX_HTML.replace(ORIGINS_PLACEHOLDER, &escape_html(&json)).replace(HOSTS_PLACEHOLDER, hint);
    (page_headers(&state, "text/html; charset=utf-8"), html)
}

/// `GET /connect/app.js`: the form's script.
pub async fn script(State(state): State<AppState>) -> impl IntoResponse {
    (page_headers(&state, "text/javascript; charset=utf-8"), APP_JS)
}

/// `GET /connect/app.css`: the form's style sheet.
pub async fn style(State(state): State<AppState>) -> impl IntoResponse {
    (page_headers(&state, "text/css; charset=utf-8"), APP_CSS)
}

/// `GET /connect/sdk.js`: the frontend snippet. Public, long-cacheable with a content `ETag`,
/// and readable cross-origin (`Access-Control-Allow-Origin: *`, so a page may load it with
/// subresource integrity); it carries no secret, and the page's own headers otherwise.
pub async fn sdk(State(state): State<AppState>, request: HeaderMap) -> Response {
    let etag = sdk_etag();
    let mut headers = page_headers(&state, "text/javascript; charset=utf-8");
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(SDK_CACHE_CONTROL));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag);
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, SDK_JS).into_response()
}

/// A strong `ETag` of `sdk.js`: its SHA-256, shortened.
fn sdk_etag() -> String {
    let digest = Sha256::digest(SDK_JS.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// The configured allowed origins as text (they were checked to be bare ASCII origins).
fn origins(state: &AppState) -> Vec<&str> {
    state.config.allowed_origins.iter().filter_map(|o| o.to_str().ok()).collect()
}

/// The content security policy: nothing but this origin's own script, style and API, and
/// framing only by the allowed origins.
fn content_security_policy(origins: &[&str]) -> String {
    let ancestors = if origins.is_empty() { "'none'".to_owned() } else { origins.join(" ") };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors {ancestors}"
    )
}

/// The headers every page response carries.
fn page_headers(state: &AppState, content_type: &'static str) -> HeaderMap {
    let origins = origins(state);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&origins)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    } else {
        // Unreachable with checked origins; fail closed rather than send no policy.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
    }
    if origins.is_empty() {
        // For browsers that predate frame-ancestors.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    headers
}

/// Escapes text for an HTML attribute value (double- or single-quoted) or element content.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{content_security_policy, escape_html, HOSTS_PLACEHOLDER, INDEX_HTML, ORIGINS_PLACEHOLDER};

    #[test]
    fn the_origins_are_escaped_for_an_attribute() {
        assert_eq!(
            escape_html(r#"["https://a.example.com","<x>'&"]"#),
            "[&quot;https://a.example.com&quot;,&quot;&lt;x&gt;&#39;&amp;&quot;]"
        );
        assert_eq!(INDEX_HTML.matches(ORIGINS_PLACEHOLDER).count(), 1);
        assert_eq!(INDEX_HTML.matches(HOSTS_PLACEHOLDER).count(), 1);
    }

    #[test]
    fn frame_ancestors_names_the_allowed_origins_or_none() {
        assert!(content_security_policy(&[]).ends_with("frame-ancestors 'none'"));
        assert!(content_security_policy(&["https://a.example.com", "http://localhost:3000"])
            .ends_with("frame-ancestors https://a.example.com http://localhost:3000"));
    }
}
