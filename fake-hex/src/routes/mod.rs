//! The HTTP surface: every workspace lives under its own path prefix (`/acme/api/…` stands for
//! `https://acme.hex.tech/api/…`), behind the [`front_door`] that records, injects failures and
//! turns away unknown workspaces.

mod auth;
mod context;
mod front_door;
mod instruments;
mod projects;
mod runs;
mod users;

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::errors::{HexError, Style};
use crate::FakeHex;
use context::TraceId;

/// The whole service, for one [`FakeHex`].
///
/// Routes carry the full path (`/{subdomain}/api/v1/…`) rather than being nested under a
/// prefix: axum's router cannot hold a nested router's fallback beside a root fallback when the
/// prefix starts with a parameter.
pub(crate) fn router(hex: FakeHex) -> Router {
    let api = |path: &str| format!("/{{subdomain}}/api{path}");
    Router::new()
        .route(&api("/v1/users/me"), get(users::me))
        .route(&api("/v1/projects"), get(projects::list))
        .route(&api("/v1/projects/{projectId}"), get(projects::get))
        .route(&api("/v1/projects/{projectId}/runs"), post(runs::create).get(runs::list))
        .route(&api("/v1/projects/{projectId}/runs/{runId}"), get(runs::status).delete(runs::cancel))
        // Legacy singular paths, still called by Hex's orchestrator providers.
        .route(&api("/v1/project/{projectId}/run"), post(runs::create))
        .route(&api("/v1/project/{projectId}/run/{runId}"), get(runs::status).delete(runs::cancel))
        .route(&api("/v1/project/{projectId}/runs"), get(runs::list))
        // Test instruments, not part of Hex.
        .route(&api("/__fake/echo"), post(instruments::echo).put(instruments::echo))
        .route(&api("/__fake/bytes"), get(instruments::bytes))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(hex.clone(), front_door::front_door))
        .with_state(hex)
}

/// An unknown path under a known workspace.
async fn not_found(trace: TraceId) -> HexError {
    HexError::new(Style::Coded, StatusCode::NOT_FOUND, "Not found", trace.as_str())
}
