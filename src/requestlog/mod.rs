//! The request log (§11): what happened to each proxied call, recorded beside the hot path.
//!
//! A call takes a [`Call`] when it starts (no allocation: reference counts and the request's own
//! URI and id); when hexbroker refuses it, or when the body of Hex's answer ends (or the caller
//! goes away mid-body), the finished [`Entry`] goes into a bounded queue with `try_send`, never
//! awaited. One writer task per replica (see `writer`) takes entries off the queue in batches and
//! writes each batch, with the hourly counts it adds to, in one transaction. A full queue drops
//! the entry and counts it (`hexbroker_request_log_dropped_total`): a slow or absent database
//! never slows a call.
//!
//! The duration of a relayed answer runs to the end of its body (so a long stream shows as long);
//! `hex_duration_ms` is the time Hex took to send its response head (of the last attempt).

mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tower_http::request_id::RequestId;
use uuid::Uuid;

use crate::config::RequestLogConfig;
use crate::error::Code;
use crate::metrics::Metrics;
use crate::proxy::Exchange;
use crate::store::ApiKey;
pub use writer::{prune_once, spawn};

/// The first hour counted in a connection's `calls_24h` at `now`: the current hour and the 23
/// before it.
pub fn counts_since(now: DateTime<Utc>) -> DateTime<Utc> {
    writer::hour_of(now) - chrono::TimeDelta::hours(23)
}

/// The way a call came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/v1/proxy/{path}` with an API key.
    Proxy,
    /// `/api/{path}`, the drop-in surface.
    Api,
    /// An MCP tool call (§14).
    Mcp,
}

impl Via {
    /// Every value, for filters.
    pub const ALL: [Via; 3] = [Via::Proxy, Via::Api, Via::Mcp];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Proxy => "proxy",
            Via::Api => "api",
            Via::Mcp => "mcp",
        }
    }

    /// What precedes the Hex API path in the URI a call comes in on: the route's prefix (an MCP
    /// tool call's request is built as `/mcp/v1/...`).
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Via::Proxy => "/v1/proxy",
            Via::Api => "/api",
            Via::Mcp => "/mcp",
        }
    }
}

/// Who answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// Hex: its answer was relayed.
    Hex,
    /// hexbroker itself refused or failed the call (with its error code).
    Hexbroker,
}

impl AnsweredBy {
    /// Every value, for filters.
    pub const ALL: [AnsweredBy; 2] = [AnsweredBy::Hex, AnsweredBy::Hexbroker];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Hex => "hex",
            AnsweredBy::Hexbroker => "hexbroker",
        }
    }
}

/// One finished call, as the hot path hands it over: fixed-size, made of reference counts and
/// copies of small values; turned into a stored row by the writer.
#[derive(Debug)]
pub struct Entry {
    /// When the call started (the lifecycle's clock).
    pub at: DateTime<Utc>,
    /// The API key or connection key used (its tenant and id; never the secret).
    pub key: Arc<ApiKey>,
    /// The connection called.
    pub connection_id: Uuid,
    /// The method.
    pub method: Method,
    /// The Hex API path (below [`Via`]'s prefix), never the query.
    pub path: LogPath,
    /// The way in.
    pub via: Via,
    /// The `x-request-id` the caller got.
    pub request_id: Option<HeaderValue>,
    /// The status the caller got.
    pub status: u16,
    /// Who answered.
    pub answered_by: AnsweredBy,
    /// hexbroker's error code, when it answered.
    pub code: Option<&'static str>,
    /// From the start to the end of the answer.
    pub duration: Duration,
    /// The time to Hex's response head, when Hex was reached.
    pub hex_duration: Option<Duration>,
    /// Retries made.
    pub retries: u32,
}

/// The longest path kept inline in an entry; longer ones (rare: Hex's paths are short) go to
/// the heap.
const INLINE_PATH: usize = 160;

/// A call's path, copied out of the request: inline up to [`INLINE_PATH`] bytes. Keeping the
/// request's URI instead would keep the connection's whole read buffer alive while the entry
/// waits in the queue (measured: 150 MB more at 10,000 queued entries).
#[derive(Debug)]
pub enum LogPath {
    /// Most paths.
    Inline {
        /// The bytes, `len` of them used (UTF-8: a path is ASCII).
        bytes: [u8; INLINE_PATH],
        /// How many.
        len: u8,
    },
    /// Longer ones.
    Heap(Box<str>),
}

impl LogPath {
    /// A copy of `path`.
    pub fn new(path: &str) -> Self {
        match u8::try_from(path.len()) {
            Ok(len) if path.len() <= INLINE_PATH => {
                let mut bytes = [0; INLINE_PATH];
                bytes[..path.len()].copy_from_slice(path.as_bytes());
                LogPath::Inline { bytes, len }
            }
            _ => LogPath::Heap(path.into()),
        }
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        match self {
            LogPath::Inline { bytes, len } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("/"),
            LogPath::Heap(path) => path,
        }
    }
}

/// The replica's request log: the sending end of the queue (none when the log is off).
#[derive(Clone, Debug)]
pub struct RequestLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    queue: Option<mpsc::Sender<Entry>>,
    /// The receiving end, until the writer takes it.
    receiver: Mutex<Option<mpsc::Receiver<Entry>>>,
    metrics: Metrics,
}

impl RequestLog {
    /// A log with a queue of `config.queue` entries, or one that records nothing when off.
    pub fn new(config: &RequestLogConfig, metrics: Metrics) -> Self {
        let (queue, receiver) = if config.enabled {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self(Arc::new(Inner { queue, receiver: Mutex::new(receiver), metrics }))
    }

    /// Whether calls are recorded.
    pub fn is_on(&self) -> bool {
        self.0.queue.is_some()
    }

    /// Starts recording a call to `connection_id` by `key` that came in as `request` by `via`;
    /// `None` when the log is off.
    pub fn begin<B>(
        &self,
        key: &Arc<ApiKey>,
        connection_id: Uuid,
        via: Via,
        request: &axum::http::Request<B>,
        at: DateTime<Utc>,
    ) -> Option<Call> {
        self.0.queue.as_ref()?;
        Some(Call {
            log: self.clone(),
            started: Instant::now(),
            entry: Entry {
                at,
                key: key.clone(),
                connection_id,
                method: request.method().clone(),
                path: LogPath::new(request.uri().path().strip_prefix(via.prefix()).unwrap_or("/")),
                via,
                request_id: request.extensions().get::<RequestId>().map(|id| id.header_value().clone()),
                status: 0,
                answered_by: AnsweredBy::Hexbroker,
                code: None,
                duration: Duration::ZERO,
                hex_duration: None,
                retries: 0,
            },
        })
    }

    /// Hands `entry` to the writer without waiting; a full (or closed) queue drops and counts it.
    pub fn record(&self, entry: Entry) {
        if let Some(queue) = &self.0.queue {
            if queue.try_send(entry).is_err() {
                self.0.metrics.request_log_dropped(1);
            }
        }
    }

    /// The receiving end, once: for the replica's writer.
    fn take_receiver(&self) -> Option<mpsc::Receiver<Entry>> {
        self.0.receiver.lock().ok()?.take()
    }
}

/// A call being recorded: finish it with [`Call::refused`] or [`Call::answered`].
#[derive(Debug)]
pub struct Call {
    log: RequestLog,
    started: Instant,
    entry: Entry,
}

impl Call {
    /// Records hexbroker's own refusal (or failure) of the call, now.
    pub fn refused(mut self, status: StatusCode, code: Code, exchange: Exchange) {
        self.entry.status = status.as_u16();
        self.entry.answered_by = AnsweredBy::Hexbroker;
        self.entry.code = Some(code.as_str());
        self.with_exchange(exchange);
        self.finish();
    }

    /// Records Hex's answer when its body ends (or the caller goes away before it does).
    pub fn answered(mut self, response: Response<Body>, exchange: Exchange) -> Response<Body> {
        self.entry.status = response.status().as_u16();
        self.entry.answered_by = AnsweredBy::Hex;
        self.with_exchange(exchange);
        response.map(|body| Body::new(Logged { body, call: Some(self) }))
    }

    fn with_exchange(&mut self, exchange: Exchange) {
        self.entry.retries = exchange.retries;
        self.entry.hex_duration = exchange.hex_time;
    }

    fn finish(mut self) {
        self.entry.duration = self.started.elapsed();
        self.log.record(self.entry);
    }
}

/// Hex's body on its way to the caller; the call is recorded when it ends or is dropped.
struct Logged {
    body: Body,
    call: Option<Call>,
}

impl Logged {
    fn finish(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish();
        }
    }
}

impl http_body::Body for Logged {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None | Some(Err(_)))) || this.body.is_end_stream() {
            this.finish();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}
