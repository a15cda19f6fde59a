//! The listener: an HTTP/1.1 accept loop on hyper with the limits that `axum::serve` lacks.
//!
//! - A client has `header_read_timeout` to send its first request's headers from when it
//!   connects, and a later request's from its first byte; a kept-alive connection waits
//!   `idle_timeout` for its next request. Then the connection is closed. hyper's own header timer runs from the moment it starts waiting, idle or not, so the
//!   [`HeadTimer`] given to it tells the two apart by watching the socket's reads.
//! - At most `max_connections` client connections are open; past that a new one gets a canned
//!   503 `overloaded` and is closed at once, while those already open are served as before.
//!   Accept errors (out of descriptors) back off and are logged; the loop never ends on them.
//! - A request's body must have arrived `body_read_timeout` after its headers.
//! - A connection's read buffer, and so the headers it may send, is capped at [`MAX_BUF`].
//! - Shutdown stops accepting, closes at once every connection with no request in progress
//!   (idle, or with its headers half sent), lets requests in progress finish (bodies included)
//!   within `shutdown_grace`, then closes what is left.
//! - Every request carries the peer's address as `ConnectInfo<SocketAddr>` ([`ClientAddr`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::overload::Slot;
use crate::config::ServerLimits;
use crate::metrics::{ClientConnection, Metrics};

/// The most a connection buffers while reading: a request's headers must fit in it (hyper then
/// answers 431), so a slow client sending endless headers holds at most this much memory.
pub const MAX_BUF: usize = 64 * 1024;

/// The longest any of the listener's timers is set for, so that no setting overflows a clock.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// Back-off after an accept error such as running out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The peer address of the request's connection, when it came through [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then drains.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
    metrics: Metrics,
) -> std::io::Result<()> {
    let limits = ServerLimits {
        header_read_timeout: limits.header_read_timeout.min(LONGEST),
        idle_timeout: limits.idle_timeout.min(LONGEST),
        max_connections: limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        shutdown_grace: limits.shutdown_grace.min(LONGEST),
        body_read_timeout: limits.body_read_timeout.min(LONGEST),
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = BACKOFF_MIN;
    let mut last_refusal_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(connection(
                            stream,
                            peer,
                            router.clone(),
                            limits,
                            stopping.clone(),
                            (slot, metrics.client_connection()),
                        ));
                    }
                    Err(_) => {
                        metrics.client_refused("over_capacity");
                        if last_refusal_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                            last_refusal_logged = Some(Instant::now());
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "too many open client connections: refusing new ones with 503"
                            );
                        }
                        refuse(&stream);
                    }
                }
            }
            // The peer gave up between connecting and being accepted: nothing to do.
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                metrics.client_refused("accept_error");
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "cannot accept connections; backing off");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "requests still in progress at the end of the shutdown grace period: closing them"
        );
        connections.shutdown().await;
    }
    tracing::debug!(open, "listener stopped");
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted)
}

/// Answers a connection past the cap with a 503 if the socket takes it at once, and drops it.
fn refuse(stream: &TcpStream) {
    const BODY: &str = r#"{"error":{"code":"overloaded","message":"This server has too many open connections; try again shortly."}}"#;
    let request_id = hex::encode(crate::crypto::random_bytes::<8>());
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Serves one client connection.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    mut stopping: watch::Receiver<bool>,
    _held: (OwnedSemaphorePermit, ClientConnection),
) {
    let _ = stream.set_nodelay(true);
    let reads = Arc::new(ReadClock::new());
    let io = TokioIo::new(Watched { stream, reads: reads.clone() });
    let in_progress = Arc::new(AtomicUsize::new(0));
    let service = {
        let in_progress = in_progress.clone();
        let reads = reads.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            reads.kept_alive.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            let request_held = InProgress::enter(&in_progress);
            let router = router.clone();
            // A body already complete (none, or of length 0) never waits, so needs no deadline.
            let body_due = (!http_body::Body::is_end_stream(request.body()))
                .then(|| later(Instant::now(), limits.body_read_timeout));
            let request = request.map(|body| {
                Body::new(Due { body, due: body_due, wait: limits.body_read_timeout, sleep: None })
            });
            async move {
                let Ok(mut response) = router.oneshot(request).await;
                // A request counts as served (for the in-flight limit and for shutdown) until
                // its body is sent, not only until its head.
                let slot = response.extensions_mut().remove::<Slot>();
                Ok::<_, Infallible>(response.map(|body| Held { body, _held: (request_held, slot) }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(HeadTimer { reads, header: limits.header_read_timeout, idle: limits.idle_timeout })
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        outcome = conn.as_mut() => {
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            return;
        }
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    if in_progress.load(Ordering::Acquire) == 0 {
        // Idle, or a request whose headers are not all in: nothing to finish.
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Counts a request in progress on its connection until dropped.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's marks until hyper has sent it (or dropped it).
struct Held {
    body: Body,
    _held: (InProgress, Option<Slot>),
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must have arrived by `due`: a client trickling its body (a "slow POST")
/// cannot hold a request, and its place under the in-flight cap, for longer. The timer is made
/// only when the body keeps the reader waiting, so a body already there costs none.
struct Due {
    body: Incoming,
    /// `None` for a body complete from the start.
    due: Option<Instant>,
    /// `body_read_timeout`.
    wait: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Due {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                // A complete body does not keep its reader waiting; should one, it has the
                // whole time from now.
                let wait = this.wait;
                let due = *this.due.get_or_insert_with(|| later(Instant::now(), wait));
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
                ready!(sleep.as_mut().poll(cx));
                tracing::info!("the client did not send the request body in time");
                Poll::Ready(Some(Err(
                    "the request body did not arrive within HEXBROKER_BODY_READ_TIMEOUT".into()
                )))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// When hyper last started waiting for a request head on a connection, and when the first byte
/// arrived since: nanoseconds after `epoch`, 0 for "not yet". One connection's task touches it.
struct ReadClock {
    epoch: Instant,
    waiting_since: AtomicU64,
    first_byte: AtomicU64,
    /// Whether a request has been served on the connection, so that it is kept alive.
    kept_alive: AtomicBool,
}

impl ReadClock {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            waiting_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            kept_alive: AtomicBool::new(false),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn at(&self, nanos: u64) -> Option<Instant> {
        (nanos != 0).then(|| self.epoch + Duration::from_nanos(nanos))
    }

    /// hyper starts waiting for a head, at `now`.
    fn start_waiting(&self, now: Instant) {
        self.waiting_since.store(self.nanos(now), Ordering::Relaxed);
        self.first_byte.store(0, Ordering::Relaxed);
    }

    /// Bytes arrived.
    fn saw_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 && self.waiting_since.load(Ordering::Relaxed) != 0 {
            self.first_byte.store(self.nanos(Instant::now()), Ordering::Relaxed);
        }
    }

    fn first_byte(&self) -> Option<Instant> {
        self.at(self.first_byte.load(Ordering::Relaxed))
    }
}

fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

/// The socket, reporting reads to its [`ReadClock`].
struct Watched {
    stream: TcpStream,
    reads: Arc<ReadClock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.reads.saw_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The timer given to hyper, which (for an HTTP/1 server) uses it only for its header-read
/// timeout: each time hyper starts waiting for a head it asks for a sleep, and this one fires
/// `header` after the first byte of that head, or, if no byte came, `idle` after the wait began
/// on a kept-alive connection (`header` on a new one).
struct HeadTimer {
    reads: Arc<ReadClock>,
    header: Duration,
    idle: Duration,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Plain { sleep: tokio::time::sleep(duration) })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let (since, idle) = self.start_waiting(deadline);
        Box::pin(HeadWait {
            reads: self.reads.clone(),
            since,
            header: self.header,
            idle,
            sleep: tokio::time::sleep_until(later(since, self.header.min(idle)).into()),
        })
    }

    /// For each request after a connection's first: the same wait, started again (no new timer).
    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadWait>() {
            Some(wait) => {
                let (since, idle) = self.start_waiting(deadline);
                let this = wait.project();
                (*this.since, *this.idle) = (since, idle);
                this.sleep.reset(later(since, self.header.min(idle)).into());
            }
            None => *sleep = self.sleep_until(deadline),
        }
    }
}

impl HeadTimer {
    /// hyper starts waiting for a head, with `deadline` its header-read timeout from now: when
    /// the wait began (the clock hyper read), and how long it may stay idle.
    fn start_waiting(&self, deadline: Instant) -> (Instant, Duration) {
        let since = deadline.checked_sub(self.header).unwrap_or_else(Instant::now);
        self.reads.start_waiting(since);
        // A new connection has `header` for its first request; only a kept-alive one waits idle.
        let idle = if self.reads.kept_alive.load(Ordering::Relaxed) { self.idle } else { self.header };
        (since, idle)
    }
}

pin_project_lite::pin_project! {
    /// A plain sleep, for any other use hyper may make of its timer.
    struct Plain {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Future for Plain {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl hyper::rt::Sleep for Plain {}

pin_project_lite::pin_project! {
    /// hyper's wait for a request head: see [`HeadTimer`].
    struct HeadWait {
        reads: Arc<ReadClock>,
        since: Instant,
        header: Duration,
        idle: Duration,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            ready!(this.sleep.as_mut().poll(cx));
            let now = Instant::now();
            // With no byte yet, look again `header` from now at the latest: a byte that comes
            // later then still gets its full `header` from when it came, and no more.
            let (due, next) = match this.reads.first_byte() {
                Some(first) => (later(first, *this.header), later(first, *this.header)),
                None => {
                    let due = later(*this.since, *this.idle);
                    (due, due.min(later(now, *this.header)))
                }
            };
            if now >= due {
                return Poll::Ready(());
            }
            this.sleep.as_mut().reset(next.into());
        }
    }
}

impl hyper::rt::Sleep for HeadWait {}
