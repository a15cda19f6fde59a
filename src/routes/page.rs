//! `GET /connect` and its two assets: the hosted connect form (§6), embedded in the binary.
//!
//! The session token travels in the URL fragment, so it never reaches this handler; the page's
//! script reads it, drops it from the address bar, and sends it only as a bearer token to
//! `POST /v1/connect`. The allowed origins are written into the page (for `postMessage`) and
//! into `frame-ancestors`, so only those origins may frame it.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::IntoResponse;

use crate::app::AppState;

const INDEX_HTML: &str = include_str!("../connect_page/index.html");
const APP_JS: &str = include_str!("../connect_page/app.js");
const APP_CSS: &str = include_str!("../connect_page/app.css");

/// Where `index.html` expects the HTML-escaped JSON array of allowed origins.
const ORIGINS_PLACEHOLDER: &str = "{{allowed_origins}}";

/// `GET /connect`: the connect form, with the allowed origins written in.
pub async fn index(State(state): State<AppState>) -> impl IntoResponse {
    let origins = origins(&state);
    let json = serde_json::to_string(&origins).unwrap_or_else(|_| "[]".to_owned());
    let html = INDEX_HTML.replace(ORIGINS_PLACEHOLDER, &escape_html(&json));
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
    use super::{content_security_policy, escape_html, INDEX_HTML, ORIGINS_PLACEHOLDER};

    #[test]
    fn the_origins_are_escaped_for_an_attribute() {
        assert_eq!(
            escape_html(r#"["https://a.example.com","<x>'&"]"#),
            "[&quot;https://a.example.com&quot;,&quot;&lt;x&gt;&#39;&amp;&quot;]"
        );
        assert_eq!(INDEX_HTML.matches(ORIGINS_PLACEHOLDER).count(), 1);
    }

    #[test]
    fn frame_ancestors_names_the_allowed_origins_or_none() {
        assert!(content_security_policy(&[]).ends_with("frame-ancestors 'none'"));
        assert!(content_security_policy(&["https://a.example.com", "http://localhost:3000"])
            .ends_with("frame-ancestors https://a.example.com http://localhost:3000"));
    }
}
