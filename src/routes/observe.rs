//! The innermost middleware, in one layer whose future is a plain struct: the request's span and
//! its access log line, its metrics, and the in-flight cap (`HEXBROKER_MAX_IN_FLIGHT`).
//!
//! Written by hand rather than as tower-http's `TraceLayer` and two `from_fn` layers, which cost
//! a boxed future and a clone of the inner service per layer and call, and read the clock about
//! eight times per call between them (the trace layer's body read it twice per frame). Here one
//! reading starts the request and one ends it; the log line's latency and the metrics share it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_http::request_id::RequestId;
use tracing::Span;

use super::CallerRequestId;
use crate::edge::overload::Slot;
use crate::edge::Guards;
use crate::error::ApiError;
use crate::metrics::{method_label, Metrics, Route};

/// Wraps every route in [`Observe`].
#[derive(Clone)]
pub(super) struct ObserveLayer {
    metrics: Metrics,
    guards: Arc<Guards>,
}

impl ObserveLayer {
    pub(super) fn new(metrics: Metrics, guards: Arc<Guards>) -> Self {
        Self { metrics, guards }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, metrics: self.metrics.clone(), guards: self.guards.clone() }
    }
}

/// A route, observed: see the module's documentation.
#[derive(Clone)]
pub(super) struct Observe<S> {
    inner: S,
    metrics: Metrics,
    guards: Arc<Guards>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = Route::of(&request);
        let span = request_span(&request, &route);
        let method = method_label(request.method());
        let (inner, slot, refused) = match self.guards.in_flight.admit(request.uri().path()) {
            Ok(slot) => {
                let _entered = span.enter();
                (Some(self.inner.call(request)), slot, None)
            }
            Err(refused) => (None, None, Some(refused)),
        };
        let call = Call { span, started, route: Some(route), method, metrics: self.metrics.clone() };
        Observed { inner, slot, refused, call: Some(call) }
    }
}

/// The request's span: its fields are those of every line logged while it is served, and of
/// its access log line (`finished`). `key_id` is recorded once the caller is known, `status`
/// when the answer is.
fn request_span(request: &Request, route: &Route) -> Span {
    let request_id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
    let caller_request_id = request.extensions().get::<CallerRequestId>().and_then(|id| id.0.to_str().ok());
    tracing::info_span!(
        target: "hexbroker::routes",
        "request",
        method = %request.method(),
        route = route.as_str(),
        request_id,
        caller_request_id,
        key_id = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// What is kept of a request until it is answered.
struct Call {
    span: Span,
    started: Instant,
    /// Taken by the metrics when the request is answered.
    route: Option<Route>,
    method: &'static str,
    metrics: Metrics,
}

/// Counts and times the answer to `call`, and writes the access log line; inside the span.
fn answered(call: &Call, route: Option<Route>, response: &Response) {
    let elapsed = call.started.elapsed();
    let status = response.status().as_u16();
    if let Some(route) = route {
        call.metrics.observe_request(route, call.method, status, elapsed);
    }
    call.span.record("status", status);
    tracing::info!(target: "hexbroker::routes", latency_ms = elapsed.as_secs_f64() * 1000.0, "finished");
}

pin_project_lite::pin_project! {
    /// The future of an observed request.
    pub(super) struct Observed<F> {
        #[pin]
        inner: Option<F>,
        slot: Option<Slot>,
        refused: Option<ApiError>,
        call: Option<Call>,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = {
            let call = this.call.as_mut().expect("an observed request is polled until answered, no further");
            let _entered = call.span.enter();
            let mut response = match (this.inner.as_pin_mut(), this.refused.take()) {
                (Some(inner), _) => {
                    let Ok(response) = ready!(inner.poll(cx));
                    response
                }
                (None, refused) => refused.map(IntoResponse::into_response).unwrap_or_default(),
            };
            // The listener moves the slot into the body, so that the request counts until its
            // body is sent.
            if let Some(slot) = this.slot.take() {
                response.extensions_mut().insert(slot);
            }
            let route = call.route.take();
            answered(call, route, &response);
            response
        };
        // The span closes here, unless the body holds it: the proxy's does, for the line it
        // logs should Hex not finish the body in time.
        this.call.take();
        Poll::Ready(Ok(response))
    }
}
