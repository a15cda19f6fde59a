//! An in-memory stand-in for Hex's public API (hex.tech), for hexbroker's integration tests and
//! for demos and benchmarks.
//!
//! One server serves many workspaces by path prefix: Hex's `https://acme.hex.tech/api/v1/projects`
//! is `http://127.0.0.1:PORT/acme/api/v1/projects` here, so hexbroker is pointed at the template
//! `http://127.0.0.1:PORT/{subdomain}` ([`FakeHex::url_template`]). A workspace that was never
//! added answers an empty 404 on every path (Hex itself would fail DNS).
//!
//! Every operation of Hex's published OpenAPI file is served (plus the legacy singular run paths
//! and `semantic-models` beside `semantic-projects`), with each operation's documented success
//! status, error style (`{reason, details, traceId}` or `{code, message, issues}`), workspace-token
//! scopes and per-token rate limits (429 with `Retry-After`), and Hex's timestamp format. Answers
//! come from a small in-memory model (workspaces, users, tokens, projects, runs whose status moves
//! with time, cells, groups, collections, data connections, threads, guides, semantic projects,
//! presigned embedding URLs), not canned strings. What goes beyond Hex's documents is marked as a
//! choice where it is made; the endpoint table (`routes/endpoints.rs`) says which operation takes
//! which scopes, error style and rate-limit group.
//!
//! Rate limits are per token and per group, over sliding windows, checked after authentication
//! ([`RateLimits::hex_defaults`] unless [`FakeHex::set_rate_limits`] says otherwise):
//!
//! | group | limit | operations |
//! | --- | --- | --- |
//! | `hex-api` | 30/min, 1,800/h | every operation not below |
//! | `hex-api-30rpm` | 30/min | Me, ListUsers, DeactivateUser, ListCells, CreateCell, GetCell, UpdateCell, DeleteCell, EditProjectSharingUsers, ListDraftGuides |
//! | `hex-run-kernel` | 20/min, 60/h | RunProject, CreateThread, ContinueThread |
//! | `hex-chart-image` | 20/min | GetChartImageFromLogic, GetChartImageFromRun |
//! | `semantic-ingest` | 3/min | IngestSemanticProject |
//!
//! Hex on its own domain (a self-hosted or single-tenant Hex at `https://hex.mycorp.com`) answers
//! at the root of its origin. [`FakeHex::root_router`] and [`FakeHex::spawn_at_root`] serve one
//! workspace that way (`http://127.0.0.2:PORT/api/v1/projects`), sharing the model of every
//! other clone; a second `FakeHex` spawned at the root stands for a second Hex deployment.
//!
//! Beside Hex's API the fake serves the pages presigned embedding URLs open
//! (`/{subdomain}/embedded/{token}`) and four test instruments under `/{subdomain}/api/__fake/`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let hex = fake_hex::FakeHex::new();
//! let token = hex.add_personal_token("acme", "ada@example.com");
//! hex.add_project("acme", "Revenue");
//! let addr = hex.spawn().await?;
//! let template = fake_hex::FakeHex::url_template(addr); // http://127.0.0.1:PORT/{subdomain}
//! # let _ = (token, template); Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod errors;
mod model;
mod png;
mod routes;
mod timestamp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::net::TcpListener;

pub use model::{RateGroup, RateLimits, RecordedRequest, RunStatus, Scope, TokenKind, TokenSpec, Window};

use model::{InjectedFailure, Model, SemanticProject, Topic};
use uuid::Uuid;

/// A cell's two ids: `id` (scoped to a project version) and `static_id` (stable across versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellIds {
    /// The cell's id.
    pub id: String,
    /// The cell's static id.
    pub static_id: String,
}

/// A fake Hex: cheap to clone, every clone shares one in-memory model.
#[derive(Clone, Default)]
pub struct FakeHex {
    model: Arc<Mutex<Model>>,
}

impl FakeHex {
    /// A fake with no workspaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole service, to serve or to call in-process.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Binds `127.0.0.1:0`, serves in a background task, and returns the bound address. The
    /// listener is bound before this returns, so callers can connect at once. Only requests
    /// addressed to that address are served (see [`own_host_only`]).
    pub async fn spawn(&self) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = own_host_only(self.router(), addr);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(addr)
    }

    /// The whole service with workspace `subdomain` at the root of the origin, as Hex on its
    /// own domain answers: `/api/v1/projects` here is what `/{subdomain}/api/v1/projects` is on
    /// [`FakeHex::router`], and URLs the fake hands out start at the bare origin. Requests are
    /// recorded with the path as received.
    pub fn root_router(&self, subdomain: &str) -> axum::Router {
        routes::at_root(self.router(), subdomain)
    }

    /// Binds `ip` on a free port, serves [`FakeHex::root_router`] for `subdomain` (the workspace
    /// is added if new) in a background task, and returns the bound address: the origin
    /// `http://ADDR` stands for a Hex on its own domain.
    pub async fn spawn_at_root(&self, subdomain: &str, ip: std::net::IpAddr) -> std::io::Result<SocketAddr> {
        self.add_workspace(subdomain);
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let router = own_host_only(self.root_router(subdomain), addr);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(addr)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// The Hex URL template for a fake at `addr`: `http://127.0.0.1:PORT/{subdomain}`.
    pub fn url_template(addr: SocketAddr) -> String {
        format!("http://{addr}/{{subdomain}}")
    }

    /// Adds a workspace (if new) and returns its org id, a UUID string.
    pub fn add_workspace(&self, subdomain: &str) -> String {
        self.lock().workspace_entry(subdomain).org_id.to_string()
    }

    /// A personal token (`hxtp_…`) acting as the user with this email (created if needed; the
    /// workspace too). Expires in 30 days.
    pub fn add_personal_token(&self, subdomain: &str, email: &str) -> String {
        self.add_token(subdomain, TokenSpec::personal(email))
    }

    /// A workspace token (`hxtw_…`) with these scopes that never expires (the workspace is
    /// created if needed).
    pub fn add_workspace_token(&self, subdomain: &str, scopes: &[Scope]) -> String {
        self.add_token(subdomain, TokenSpec::workspace(scopes))
    }

    /// A token made to `spec` (the workspace, and for personal tokens the user, created if needed).
    pub fn add_token(&self, subdomain: &str, spec: TokenSpec) -> String {
        self.lock().add_token(subdomain, spec)
    }

    /// Revokes a token at once, as regenerating it in Hex does. Unknown tokens are ignored.
    pub fn revoke_token(&self, token: &str) {
        if let Some(token) = self.lock().tokens.get_mut(token) {
            token.revoked = true;
        }
    }

    /// Undoes [`FakeHex::revoke_token`]. **Not something Hex offers**: a test instrument for a
    /// token that Hex refused for a while and accepts again (as after an outage of Hex's own
    /// token checks), so that reactivation can be tested.
    pub fn reinstate_token(&self, token: &str) {
        if let Some(token) = self.lock().tokens.get_mut(token) {
            token.revoked = false;
        }
    }

    /// Adds a published project (the workspace is created if needed) and returns its id.
    pub fn add_project(&self, subdomain: &str, title: &str) -> String {
        self.lock().workspace_entry(subdomain).add_project(subdomain, title).to_string()
    }

    /// Adds a member (if new) to a workspace (created if needed) and returns the user's id. The
    /// workspace's first user is its admin, later ones editors; a user added this way has never
    /// signed in (`lastLoginDate` is null) until a token is made for them.
    pub fn add_user(&self, subdomain: &str, email: &str, name: Option<&str>) -> String {
        self.lock().workspace_entry(subdomain).add_user(email, name.map(str::to_owned)).to_string()
    }

    /// Adds a chart cell at the end of a project's draft (the API cannot make chart cells), for
    /// the chart-image endpoints. `None` if the workspace has no such project.
    pub fn add_chart_cell(&self, subdomain: &str, project_id: &str, title: &str) -> Option<CellIds> {
        let project_id = Uuid::parse_str(project_id).ok()?;
        let mut model = self.lock();
        let cell = model.workspaces.get_mut(subdomain)?.add_chart_cell(project_id, title)?;
        Some(CellIds { id: cell.id.to_string(), static_id: cell.static_id.to_string() })
    }

    /// Adds a semantic project with these datasets and views (Hex's API cannot create one) to a
    /// workspace (created if needed) and returns its id.
    pub fn add_semantic_project(
        &self,
        subdomain: &str,
        name: &str,
        datasets: &[&str],
        views: &[&str],
    ) -> String {
        let project = SemanticProject::new(name, datasets, views);
        let id = project.id.to_string();
        self.lock().workspace_entry(subdomain).semantic_projects.push(project);
        id
    }

    /// Adds a thread topic to a workspace (created if needed) and returns its id. Threads whose
    /// prompts mention the topic's name are tagged with it.
    pub fn add_topic(&self, subdomain: &str, name: &str) -> String {
        let topic = Topic { id: Uuid::new_v4(), name: name.to_owned() };
        let id = topic.id.to_string();
        self.lock().workspace_entry(subdomain).topics.push(topic);
        id
    }

    /// Replaces the per-token rate limits (default [`RateLimits::hex_defaults`]). Requests already
    /// counted stay counted.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.lock().rate_limits = limits;
    }

    /// The per-token rate limits in force.
    pub fn rate_limits(&self) -> RateLimits {
        self.lock().rate_limits.clone()
    }

    /// How long runs started from now on stay PENDING, then RUNNING, before their outcome
    /// (defaults: 1 s and 2 s).
    pub fn set_run_durations(&self, pending: Duration, running: Duration) {
        let mut model = self.lock();
        model.run_plan.pending = TimeDelta::from_std(pending).unwrap_or(TimeDelta::MAX);
        model.run_plan.running = TimeDelta::from_std(running).unwrap_or(TimeDelta::MAX);
    }

    /// How runs started from now on end (default COMPLETED; ERRORED and
    /// UNABLE_TO_ALLOCATE_KERNEL are the other sensible choices).
    pub fn set_run_outcome(&self, outcome: RunStatus) {
        self.lock().run_plan.outcome = outcome;
    }

    /// The current status of a run, or `None` if the workspace has no such run.
    pub fn run_status(&self, subdomain: &str, run_id: &str) -> Option<RunStatus> {
        let model = self.lock();
        let run = model.workspaces.get(subdomain)?.runs.iter().find(|r| r.id.to_string() == run_id)?;
        Some(run.status(timestamp::now()))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// The next `n` requests (any path, any workspace, before authentication) answer `status`
    /// with a JSON error body, plus `Retry-After: retry_after` when given, without touching the
    /// model. Calls queue up: `fail_next(1, 429, …)` then `fail_next(1, 503, None)` fails the next
    /// request with 429 and the one after with 503.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<String>) {
        let mut model = self.lock();
        for _ in 0..n {
            model.failures.push_back(InjectedFailure {
                status,
                retry_after: retry_after.clone(),
                canned: None,
            });
        }
    }

    /// A test instrument beyond Hex's documents, for answers Hex is not meant to give but a
    /// broker must survive (a `users/me` body of the wrong shape, CORS headers, a 101): the next
    /// `n` requests (any path, before authentication) answer `status` with exactly these headers
    /// and this body. It queues up with [`FakeHex::fail_next`].
    pub fn answer_next(&self, n: usize, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers: Vec<(String, String)> =
            headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut model = self.lock();
        for _ in 0..n {
            model.failures.push_back(InjectedFailure {
                status,
                retry_after: None,
                canned: Some((headers.clone(), body.to_owned())),
            });
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Model> {
        // A panic elsewhere while holding the lock leaves the model usable for other tests.
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record(&self, request: RecordedRequest) -> usize {
        let mut model = self.lock();
        model.requests.push(request);
        model.requests.len() - 1
    }

    pub(crate) fn add_body_bytes(&self, index: usize, n: u64) {
        // `clear_requests` may have run since the request was recorded.
        if let Some(request) = self.lock().requests.get_mut(index) {
            request.body_len += n;
        }
    }

    pub(crate) fn take_failure(&self) -> Option<InjectedFailure> {
        self.lock().failures.pop_front()
    }

    pub(crate) fn has_workspace(&self, subdomain: &str) -> bool {
        self.lock().workspaces.contains_key(subdomain)
    }
}

/// Hex is reached by name, behind a front that serves only its own names: a request whose `Host`
/// is not `addr` is refused (421 Misdirected Request, plain text) and not recorded. The fake
/// routes by path, so without this a broker sending the wrong `Host` would go unnoticed.
pub fn own_host_only(router: axum::Router, addr: SocketAddr) -> axum::Router {
    use axum::response::IntoResponse as _;
    let own = addr.to_string();
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let own = own.clone();
            async move {
                let host = request
                    .headers()
                    .get(axum::http::header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .or_else(|| request.uri().authority().map(|authority| authority.as_str()));
                if host == Some(own.as_str()) {
                    next.run(request).await
                } else {
                    let said = host.unwrap_or("(none)").to_owned();
                    (
                        axum::http::StatusCode::MISDIRECTED_REQUEST,
                        format!("This server is {own}, not {said}.\n"),
                    )
                        .into_response()
                }
            }
        },
    ))
}
