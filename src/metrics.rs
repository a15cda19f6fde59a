//! Prometheus metrics (`GET /metrics`): requests by route template, method and status; latency of
//! hexbroker's answers and of Hex's, kept apart; upstream errors and retries; connections by status.
//! Labels carry templates, methods, status codes and fixed words — never ids or secrets.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::lifecycle::Status;

// Every label is a fixed word, a status code, or a route template shared with the router (a
// reference count, not a copy): recording a request allocates nothing once its label set exists.

/// A route template as a label: the router's own `MatchedPath`, or `unmatched`.
#[derive(Clone, Debug)]
pub struct Route(Option<MatchedPath>);

impl Route {
    /// The route `request` matched.
    pub fn of<B>(request: &axum::http::Request<B>) -> Self {
        Self(request.extensions().get::<MatchedPath>().cloned())
    }

    /// The template, or `unmatched`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream_responses: Family<UpstreamLabels, Counter>,
    upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<KindLabels, Counter>,
    retries: Family<KindLabels, Counter>,
    connections: Family<StatusLabels, Gauge>,
    watch: Family<KindLabels, Counter>,
    client_connections: Gauge,
    client_refusals: Family<KindLabels, Counter>,
    request_log_dropped: Counter,
    request_log_written: Counter,
    request_log_queued: Gauge,
}

/// The process's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric hexbroker reports.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hexbroker");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head, by route template and method",
            latency.clone(),
        );
        let upstream_responses = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "hex_responses",
            "Answers from Hex to proxied calls, by method and status",
            upstream_responses.clone(),
        );
        let upstream_latency =
            Family::<UpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "hex_response_duration_seconds",
            "Time Hex took to start answering a proxied call, by method and status",
            upstream_latency.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "hex_errors",
            "Proxied calls that got no answer from Hex, by kind (connect, timeout, lost)",
            upstream_errors.clone(),
        );
        let retries = Family::<KindLabels, Counter>::default();
        registry.register(
            "hex_retries",
            "Proxied calls sent again, by reason (not_sent, rate_limited, unavailable)",
            retries.clone(),
        );
        let connections = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "connections",
            "Stored connections by status, as last counted (every HEXBROKER_METRICS_REFRESH)",
            connections.clone(),
        );
        let client_connections = Gauge::default();
        registry.register("client_connections", "Client connections open now", client_connections.clone());
        registry.register(
            "log_dropped",
            "Log lines dropped because the log writer fell behind (requests never wait for the log)",
            crate::telemetry::DROPPED.clone(),
        );
        let client_refusals = Family::<KindLabels, Counter>::default();
        registry.register(
            "client_connections_refused",
            "Client connections refused, by kind (over_capacity: past HEXBROKER_MAX_CONNECTIONS; \
             accept_error: the system refused, e.g. out of file descriptors)",
            client_refusals.clone(),
        );
        let watch = Family::<KindLabels, Counter>::default();
        registry.register(
            "watch",
            "What the watchers did, by kind (checked, deferred, trouble, invalidated, reactivated, \
             expiring, expired, recheck)",
            watch.clone(),
        );
        let request_log_dropped = Counter::default();
        registry.register(
            "request_log_dropped",
            "Request log entries not recorded: the queue was full, or the database refused a batch",
            request_log_dropped.clone(),
        );
        let request_log_written = Counter::default();
        registry.register("request_log_written", "Request log entries written", request_log_written.clone());
        let request_log_queued = Gauge::default();
        registry.register(
            "request_log_queued",
            "Request log entries waiting to be written, as the writer last saw them",
            request_log_queued.clone(),
        );
        Self(Arc::new(Inner {
            request_log_dropped,
            request_log_written,
            request_log_queued,
            client_connections,
            client_refusals,
            registry,
            requests,
            latency,
            upstream_responses,
            upstream_latency,
            upstream_errors,
            retries,
            connections,
            watch,
        }))
    }

    /// Records one answered request.
    pub fn observe_request(&self, route: Route, method: &'static str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { route, method, status };
        self.0.requests.get_or_create(&labels).inc();
        let RequestLabels { route, method, .. } = labels;
        self.0.latency.get_or_create(&RouteLabels { route, method }).observe(elapsed.as_secs_f64());
    }

    /// Records one answer from Hex to a proxied call.
    pub fn observe_upstream(&self, method: &'static str, status: u16, elapsed: Duration) {
        let labels = UpstreamLabels { method, status };
        self.0.upstream_latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.0.upstream_responses.get_or_create(&labels).inc();
    }

    /// Records a proxied call that got no answer.
    pub fn upstream_error(&self, kind: &'static str) {
        self.0.upstream_errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a client connection opened; the count goes down when the guard is dropped.
    pub fn client_connection(&self) -> ClientConnection {
        self.0.client_connections.inc();
        ClientConnection(self.clone())
    }

    /// Counts a client connection refused, by `kind` (`over_capacity`, `accept_error`).
    pub fn client_refused(&self, kind: &'static str) {
        self.0.client_refusals.get_or_create(&KindLabels { kind }).inc();
    }

    /// Records a retry.
    pub fn retry(&self, reason: &'static str) {
        self.0.retries.get_or_create(&KindLabels { kind: reason }).inc();
    }

    /// Records `n` things of `kind` the background checks did.
    pub fn watched(&self, kind: &'static str, n: usize) {
        if n > 0 {
            self.0.watch.get_or_create(&KindLabels { kind }).inc_by(n as u64);
        }
    }

    /// Counts `n` request log entries dropped (a full queue, or a batch the database refused).
    pub fn request_log_dropped(&self, n: u64) {
        self.0.request_log_dropped.inc_by(n);
    }

    /// Counts `n` request log entries written.
    pub fn request_log_written(&self, n: u64) {
        self.0.request_log_written.inc_by(n);
    }

    /// Sets how many request log entries wait to be written.
    pub fn request_log_queued(&self, n: usize) {
        self.0.request_log_queued.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the connection gauges to these counts by status.
    pub fn set_connections(&self, connections_by_status: &[(Status, i64)]) {
        for status in Status::ALL {
            let count = connections_by_status.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.0.connections.get_or_create(&StatusLabels { status: status.as_str() }).set(count);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.0.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// An open client connection, counted in `hexbroker_client_connections` until dropped.
#[derive(Debug)]
pub struct ClientConnection(Metrics);

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.0 .0.client_connections.dec();
    }
}

/// A method as a label: the standard ones by name, anything else as `other`, so that a caller
/// cannot grow the label set.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
