//! Logging: JSON lines in production, readable lines on a terminal. Fields are always chosen
//! by hand; no request, header set or secret is ever logged whole.
//!
//! Lines are written by a thread of their own ([`Lines`]): a request hands its line to a bounded
//! queue and goes on; the thread writes them to stderr through a buffer, flushed whenever the
//! queue runs dry. When the writer falls behind (a slow terminal or a stalled log collector) new
//! lines are dropped and counted (`hexbroker_log_dropped_total`) instead of making requests wait,
//! as nginx's buffered access log does.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter when `HEXBROKER_LOG` is unset: hexbroker's own events at info, its libraries' only
/// when they warn.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,hyper_util=warn";

/// Lines the queue holds before new ones are dropped: a few seconds of a busy access log.
const QUEUE_LINES: usize = 16 * 1024;
/// The writer thread's buffer: many lines per system call under load.
const BUFFER_BYTES: usize = 64 * 1024;

/// Log lines dropped because the writer fell behind. Process-wide like the subscriber it
/// belongs to; [`crate::metrics::Metrics`] reports it.
pub static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The installed writer, for [`flush`].
static LINES: OnceLock<Lines> = OnceLock::new();

/// Checks a `HEXBROKER_LOG` value: comma-separated directives, each a level (`error`, `warn`,
/// `info`, `debug`, `trace`, `off`) or `target=level` (tracing's env-filter syntax). A bare word
/// that is not a level is refused, though env-filter would read it as "everything from a target
/// of that name": `HEXBROKER_LOG=verbose` is a mistake far more often than a wish.
pub fn check_filter(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("`{directive}` is neither a level ({}) nor target=level", LEVELS.join(", ")));
        }
    }
    EnvFilter::builder()
        .parse(text)
        .map(drop)
        .map_err(|e| format!("`{text}` is not a log filter like info or debug,sqlx=warn ({e})"))
}

/// The format logs are written in: the configured one, else pretty on a terminal and JSON
/// otherwise.
pub fn effective_format(format: Option<LogFormat>) -> LogFormat {
    format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json })
}

/// Installs the global subscriber with `filter` (checked by [`check_filter`] when the
/// configuration was read), writing through [`Lines`] to stderr; returns the format chosen.
/// Call [`flush`] before the process exits.
pub fn init(format: Option<LogFormat>, filter: &str) -> LogFormat {
    let filter = EnvFilter::builder().parse_lossy(filter);
    let format = effective_format(format);
    let lines = LINES.get_or_init(|| Lines::spawn(std::io::stderr(), QUEUE_LINES)).clone();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(lines);
    let _ = match format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
        LogFormat::Pretty => builder.compact().try_init(),
    };
    format
}

/// Writes out every line queued so far (waiting at most a second): before the process exits.
pub fn flush() {
    if let Some(lines) = LINES.get() {
        lines.flush(Duration::from_secs(1));
    }
}

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// A [`MakeWriter`] whose lines go to a bounded queue, written out by a thread of their own.
#[derive(Clone, Debug)]
pub struct Lines {
    queue: SyncSender<Message>,
}

impl Lines {
    /// Starts the thread that writes to `out`, behind a queue of `capacity` lines.
    pub fn spawn<W: Write + Send + 'static>(out: W, capacity: usize) -> Self {
        let (queue, rx) = sync_channel(capacity);
        let spawned =
            std::thread::Builder::new().name("hexbroker-log".into()).spawn(move || write_out(rx, out));
        if let Err(e) = spawned {
            // Without the thread every line is dropped and counted; say so once, directly.
            let _ = writeln!(std::io::stderr(), "hexbroker: cannot start the log writer: {e}");
        }
        Self { queue }
    }

    /// Waits (at most `wait`) until every line queued before this call is written.
    pub fn flush(&self, wait: Duration) {
        let (done, finished) = sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = finished.recv_timeout(wait);
        }
    }
}

/// Writes queued lines into a buffer, flushing it whenever the queue is empty.
fn write_out<W: Write>(queue: Receiver<Message>, out: W) {
    let mut out = std::io::BufWriter::with_capacity(BUFFER_BYTES, out);
    while let Ok(mut message) = queue.recv() {
        loop {
            match message {
                // A failed write has nowhere to be reported but the log itself: drop the line.
                Message::Line(line) => drop(out.write_all(&line)),
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.try_send(());
                }
            }
            match queue.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

impl Write for &Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole line per call; a full queue drops it, uncounted
        // by the caller, who must never wait for the log.
        match self.queue.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.inc();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn log_filters_are_checked() {
        for good in ["info", "DEBUG", "debug,sqlx=warn", "hexbroker=trace", "warn,hexbroker::proxy=debug", ""]
        {
            assert!(check_filter(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "debug,sqlx=wrn", "info,loud", "=info"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }

    /// A sink that can be held up, to fill the queue.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let _held = self.gate.lock().unwrap();
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_flush_waits_for_them() {
        let sink = Sink::default();
        let lines = Lines::spawn(sink.clone(), 1024);
        for n in 0..100 {
            (&lines).write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        lines.flush(Duration::from_secs(5));
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        let expected: String = (0..100).map(|n| format!("line {n}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_instead_of_blocking() {
        let sink = Sink::default();
        let lines = Lines::spawn(sink.clone(), 4);
        let before = DROPPED.get();
        let held = sink.gate.lock().unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            (&lines).write_all(b"x\n").unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a full queue must not block the writer of a line"
        );
        // At most the queue's 4 lines and the one the thread holds got through.
        assert!(DROPPED.get() - before >= 95, "dropped {}", DROPPED.get() - before);
        drop(held);
        lines.flush(Duration::from_secs(5));
        let written = sink.written.lock().unwrap().len();
        assert!((2..=10).contains(&written), "{written} bytes written");
    }
}
