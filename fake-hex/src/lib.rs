//! An in-memory stand-in for Hex's public API (hex.tech), for hexbroker's integration tests and
//! for demos and benchmarks.
//!
//! One server serves many workspaces by path prefix: Hex's `https://acme.hex.tech/api/v1/projects`
//! is `http://127.0.0.1:PORT/acme/api/v1/projects` here, so hexbroker is pointed at the template
//! `http://127.0.0.1:PORT/{subdomain}` ([`FakeHex::url_template`]). A workspace that was never
//! added answers an empty 404 on every path (Hex itself would fail DNS).
//!
//! Behaviour follows Hex's published OpenAPI file and `HEX.md` for what is implemented: Me,
//! ListProjects, GetProject, RunProject, GetRunStatus, CancelRun and GetProjectRuns (plus the
//! legacy singular run paths), with Hex's error shapes and timestamp format. It comes from a small
//! model (workspaces, users, tokens, projects, runs whose status moves with time), not canned
//! answers.
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
mod routes;
mod timestamp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::net::TcpListener;

pub use model::{RecordedRequest, RunStatus, Scope, TokenKind, TokenSpec};

use model::{InjectedFailure, Model};

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
    /// listener is bound before this returns, so callers can connect at once.
    pub async fn spawn(&self) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
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

    /// Adds a published project (the workspace is created if needed) and returns its id.
    pub fn add_project(&self, subdomain: &str, title: &str) -> String {
        self.lock().workspace_entry(subdomain).add_project(subdomain, title).to_string()
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
            model.failures.push_back(InjectedFailure { status, retry_after: retry_after.clone() });
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
