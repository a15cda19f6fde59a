//! Signed embedding: CreatePresignedUrl (tsoa error style) and the pages its URLs open. See
//! `model/embedding.rs`: each URL works once, before it expires.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::TimeDelta;
use serde_json::{json, Value};
use uuid::Uuid;

use super::caller::Caller;
use super::context::PathParams;
use crate::errors::HexError;
use crate::model::PresignedUrl;
use crate::{timestamp, FakeHex};

/// Default lifetime of a presigned URL, in milliseconds (the spec's `expiresIn` default).
const DEFAULT_EXPIRES_IN_MS: f64 = 15_000.0;

/// Makes a single-use URL that embeds the project's published app.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.uuid(path.get("projectId"), "projectId")?;
    let body = caller.body(&body)?;
    let attributes = body.opt_object("hexUserAttributes")?.map(|a| a.into_map()).unwrap_or_default();
    if let Some((name, _)) = attributes.iter().find(|(_, v)| !v.is_string()) {
        return Err(body.bad(&format!("hexUserAttributes.{name}"), "must be a string"));
    }
    body.opt_strings("scope")?;
    body.opt_object("inputParameters")?;
    if let Some(display) = body.opt_object("displayOptions")? {
        display.opt_enum("theme", &["light", "dark"])?;
    }
    let test_mode = body.opt_bool("testMode")?.unwrap_or(false);
    let expires_in = body.opt_number("expiresIn")?.unwrap_or(DEFAULT_EXPIRES_IN_MS);
    if !(expires_in > 0.0 && expires_in.is_finite()) {
        return Err(body.bad("expiresIn", "must be a positive number of milliseconds"));
    }

    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let project = ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    if !project.is_published() {
        return Err(caller.unprocessable("The project has no published app to embed"));
    }
    let token = Uuid::new_v4().simple().to_string();
    let expires_at = timestamp::now() + TimeDelta::milliseconds(expires_in as i64);
    let url = format!("{}/embedded/{token}", caller.workspace.base_url);
    let presigned =
        PresignedUrl { project_id, expires_at, viewed: false, user_attributes: attributes, test_mode };
    ws.presigned_urls.insert(token, presigned);
    Ok(Json(json!({ "url": url })))
}

/// `GET /{subdomain}/embedded/{token}` (not part of Hex's API: the page a presigned URL opens).
/// The first visit before expiry gets the embedded app (a small HTML page); later or late visits
/// `410 Gone`; unknown tokens 404.
pub(crate) async fn page(State(hex): State<FakeHex>, path: PathParams) -> Response {
    let subdomain = path.get("subdomain");
    let mut model = hex.lock();
    let ws = model.ws_mut(subdomain);
    let Some(presigned) = ws.presigned_urls.get_mut(path.get("token")) else {
        return (StatusCode::NOT_FOUND, "This embedded link does not exist").into_response();
    };
    if presigned.viewed || presigned.expires_at <= timestamp::now() {
        return (StatusCode::GONE, "This embedded link has expired or was already used").into_response();
    }
    presigned.viewed = true;
    let presigned = presigned.clone();
    let title = ws.project(presigned.project_id).map(|p| p.title.clone()).unwrap_or_default();
    let attributes: String = presigned
        .user_attributes
        .iter()
        .map(|(k, v)| format!("<li>{}: {}</li>", escape(k), escape(v.as_str().unwrap_or_default())))
        .collect();
    let mode = if presigned.test_mode { " (test mode)" } else { "" };
    let html = format!(
        "<!doctype html><html><head><title>{t}</title></head><body><h1>{t}</h1>\
         <p>Embedded Hex app{mode}, served by fake-hex.</p><ul>{attributes}</ul></body></html>",
        t = escape(&title)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
