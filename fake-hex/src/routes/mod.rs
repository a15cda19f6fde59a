//! The HTTP surface: every workspace lives under its own path prefix (`/acme/api/…` stands for
//! `https://acme.hex.tech/api/…`), behind the [`front_door`] that records, injects failures and
//! turns away unknown workspaces. Every operation of Hex's spec is routed here; what each needs
//! (scopes, error style, rate-limit group) is in [`endpoints`], applied by the [`caller`] guard.

mod auth;
mod body;
mod caller;
mod cells;
mod charts;
mod collections;
mod connections;
mod context;
mod embedding;
mod endpoints;
mod exports;
mod front_door;
mod groups;
mod guides;
mod instruments;
mod projects;
mod runs;
mod semantic;
mod sharing;
mod threads;
mod users;

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, patch, post, put};
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
    let semantic = |rest: &str| {
        ["projects", "models"].map(|kind| api(&format!("/v1/semantic-{kind}/{{semanticProjectId}}{rest}")))
    };
    let mut router = Router::new()
        // Users.
        .route(&api("/v1/users/me"), get(users::me))
        .route(&api("/v1/users"), get(users::list))
        .route(&api("/v1/users/{userId}/deactivate"), post(users::deactivate))
        // Projects, their sharing, export, queried tables and embedding.
        .route(&api("/v1/projects"), get(projects::list).post(projects::create))
        .route(&api("/v1/projects/export"), post(exports::export))
        .route(&api("/v1/projects/{projectId}"), get(projects::get).patch(projects::update))
        .route(&api("/v1/projects/{projectId}/queriedTables"), get(exports::queried_tables))
        .route(&api("/v1/projects/{projectId}/sharing/users"), patch(sharing::users))
        .route(&api("/v1/projects/{projectId}/sharing/groups"), patch(sharing::groups))
        .route(&api("/v1/projects/{projectId}/sharing/collections"), patch(sharing::collections))
        .route(
            &api("/v1/projects/{projectId}/sharing/workspaceAndPublic"),
            patch(sharing::workspace_and_public),
        )
        .route(&api("/v1/embedding/createPresignedUrl/{projectId}"), post(embedding::create))
        // Runs, and chart images of runs.
        .route(&api("/v1/projects/{projectId}/runs"), post(runs::create).get(runs::list))
        .route(&api("/v1/projects/{projectId}/runs/{runId}"), get(runs::status).delete(runs::cancel))
        .route(&api("/v1/projects/{projectId}/runs/{runId}/cells/{staticId}/image"), get(charts::from_run))
        // Legacy singular paths, still called by Hex's orchestrator providers.
        .route(&api("/v1/project/{projectId}/run"), post(runs::create))
        .route(&api("/v1/project/{projectId}/run/{runId}"), get(runs::status).delete(runs::cancel))
        .route(&api("/v1/project/{projectId}/runs"), get(runs::list))
        // Groups and collections.
        .route(&api("/v1/groups"), get(groups::list).post(groups::create))
        .route(&api("/v1/groups/{groupId}"), get(groups::get).patch(groups::edit).delete(groups::delete))
        .route(&api("/v1/collections"), get(collections::list).post(collections::create))
        .route(&api("/v1/collections/{collectionId}"), get(collections::get).patch(collections::edit))
        // Data connections.
        .route(&api("/v1/data-connections"), get(connections::list).post(connections::create))
        .route(
            &api("/v1/data-connections/{dataConnectionId}"),
            get(connections::get).patch(connections::edit),
        )
        .route(&api("/v1/data-connections/{dataConnectionId}/schema"), patch(connections::update_schema))
        // Cells.
        .route(&api("/v1/cells"), get(cells::list).post(cells::create))
        .route(&api("/v1/cells/{cellId}"), get(cells::get).patch(cells::update).delete(cells::delete))
        .route(&api("/v1/cells/{cellId}/output"), get(cells::output))
        .route(&api("/v1/cells/{cellId}/image"), get(charts::from_logic))
        // Guides.
        .route(&api("/v1/guides/draft"), put(guides::upsert))
        .route(&api("/v1/guides/draft/list"), get(guides::list_drafts))
        .route(&api("/v1/guides/draft/{orgGuideFileId}"), delete(guides::delete_draft))
        .route(&api("/v1/guides/publish"), post(guides::publish))
        // Threads and topics.
        .route(&api("/v1/threads"), get(threads::list).post(threads::create))
        .route(&api("/v1/threads/{id}"), get(threads::get))
        .route(&api("/v1/threads/{id}/messages"), get(threads::messages))
        .route(&api("/v1/threads/{id}/followup"), post(threads::follow_up))
        .route(&api("/v1/context/topics"), get(threads::topics))
        // Pages that presigned embedding URLs open (not part of Hex's API).
        .route("/{subdomain}/embedded/{token}", get(embedding::page))
        // Test instruments, not part of Hex.
        .route(&api("/__fake/echo"), post(instruments::echo).put(instruments::echo))
        .route(&api("/__fake/bytes"), get(instruments::bytes))
        .route(&api("/__fake/misbehave"), get(instruments::misbehave))
        .route(&api("/__fake/revoke"), post(instruments::revoke));
    // Semantic projects, under both prefixes the spec's `semantic-(projects|models)` stands for.
    for (update, ingest) in semantic("").into_iter().zip(semantic("/ingest")) {
        router = router.route(&update, patch(semantic::update)).route(&ingest, post(semantic::ingest));
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(hex.clone(), front_door::front_door))
        .with_state(hex)
}

/// Where a request served at the root of an origin ([`at_root`]) was addressed, before its
/// workspace's prefix was put in front for routing.
#[derive(Clone, Debug)]
pub(crate) struct AtRoot {
    /// The path as received (`/api/v1/projects`), for the record.
    pub(crate) path: String,
}

/// `router` with workspace `subdomain` served at the root: every request's path gets the
/// workspace's prefix before `router` routes it, and carries [`AtRoot`] so the front door
/// records the path as received and hands out URLs without the prefix.
pub(crate) fn at_root(router: Router, subdomain: &str) -> Router {
    let prefix = format!("/{subdomain}");
    let rewrite = move |mut request: axum::extract::Request| {
        let prefix = prefix.clone();
        async move {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("{prefix}{path}{query}").parse() {
                *request.uri_mut() = uri;
                request.extensions_mut().insert(AtRoot { path });
            }
            request
        }
    };
    Router::new().fallback_service(router).layer(middleware::map_request(rewrite))
}

/// An unknown path under a known workspace.
async fn not_found(trace: TraceId) -> HexError {
    HexError::new(Style::Coded, StatusCode::NOT_FOUND, "Not found", trace.as_str())
}
