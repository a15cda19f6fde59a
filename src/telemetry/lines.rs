//! The log's writer: lines are appended to a shared buffer under a short lock (a copy, no
//! allocation, no system call), and a thread of their own writes the buffer to stderr every
//! [`FLUSH_EVERY`], or sooner once [`FLUSH_AT`] bytes are waiting: one write for many lines, as
//! nginx's `access_log … buffer=64k flush=1s` does. A request never waits for the write: when
//! the writer falls behind (a slow terminal, a stalled log collector) and [`MAX_WAITING`] bytes
//! are waiting, new lines are dropped and counted in [`super::DROPPED`].

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Lines wait at most this long before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Bytes waiting that wake the writer before its time.
pub const FLUSH_AT: usize = 64 * 1024;
/// Bytes waiting past which new lines are dropped.
pub const MAX_WAITING: usize = 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    waiting: Vec<u8>,
    /// Flushes asked for, and flushes done (each covers the lines before its asking).
    asked: u64,
    done: u64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: enough bytes waiting, or a flush asked for.
    wake: Condvar,
    /// Wakes those waiting for a flush.
    flushed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`tracing_subscriber::fmt::MakeWriter`] whose lines are written by a thread of their own.
#[derive(Clone, Debug)]
pub struct Lines(Arc<Shared>);

impl Lines {
    /// Starts the thread that writes to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> Self {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let spawned =
            std::thread::Builder::new().name("hexbroker-log".into()).spawn(move || write_out(&writer, out));
        if let Err(e) = spawned {
            // Without the thread every line would wait forever: say so once, directly.
            let _ = writeln!(std::io::stderr(), "hexbroker: cannot start the log writer: {e}");
        }
        Self(shared)
    }

    /// Waits (at most `wait`) until every line handed over before this call is written.
    pub fn flush(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut state = self.0.lock();
        state.asked += 1;
        let asked = state.asked;
        self.0.wake.notify_one();
        while state.done < asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self.0.flushed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The writer thread: takes what is waiting, writes it in one go, and sleeps until more is due.
fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut taken = Vec::with_capacity(FLUSH_AT);
    let mut state = shared.lock();
    loop {
        if state.waiting.len() < FLUSH_AT && state.done == state.asked {
            state = shared.wake.wait_timeout(state, FLUSH_EVERY).unwrap_or_else(|e| e.into_inner()).0;
        }
        std::mem::swap(&mut state.waiting, &mut taken);
        let asked = state.asked;
        drop(state);
        if !taken.is_empty() {
            // A failed write has nowhere to be reported but the log itself: the lines are lost.
            let _ = out.write_all(&taken).and_then(|()| out.flush());
            taken.clear();
            taken.shrink_to(MAX_WAITING.min(4 * FLUSH_AT));
        }
        state = shared.lock();
        if state.done < asked {
            state.done = asked;
            shared.flushed.notify_all();
        }
    }
}

impl Write for &Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole line per call.
        let mut state = self.0.lock();
        if state.waiting.len().saturating_add(line.len()) > MAX_WAITING {
            drop(state);
            super::DROPPED.inc();
            return Ok(line.len());
        }
        let before = state.waiting.len();
        state.waiting.extend_from_slice(line);
        if before < FLUSH_AT && state.waiting.len() >= FLUSH_AT {
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that can be held up, to make the writer fall behind.
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
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_flush_waits_for_them() {
        let sink = Sink::default();
        let lines = Lines::spawn(sink.clone());
        for n in 0..10_000 {
            (&lines).write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        lines.flush(Duration::from_secs(10));
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10_000).map(|n| format!("line {n}\n")).collect();
        assert!(written == expected, "{} bytes written, {} expected", written.len(), expected.len());
    }

    #[test]
    fn lines_are_written_within_the_flush_interval_without_asking() {
        let sink = Sink::default();
        let lines = Lines::spawn(sink.clone());
        (&lines).write_all(b"one line\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.written.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "a lone line was never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*sink.written.lock().unwrap(), b"one line\n");
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_instead_of_blocking() {
        let sink = Sink::default();
        let lines = Lines::spawn(sink.clone());
        let held = sink.gate.lock().unwrap();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        let before = super::super::DROPPED.get();
        let started = Instant::now();
        // Three times what may wait: the writer is stuck on its first batch, so at least the
        // last third cannot be kept.
        for _ in 0..3 * MAX_WAITING / line.len() {
            (&lines).write_all(&line).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "handing over a line must never wait for the writer"
        );
        let dropped = super::super::DROPPED.get() - before;
        assert!(dropped as usize >= MAX_WAITING / line.len(), "dropped {dropped}");
        drop(held);
        lines.flush(Duration::from_secs(10));
        let written = sink.written.lock().unwrap().len();
        assert!(written <= 2 * MAX_WAITING + line.len(), "{written} bytes written: more than was kept");
        assert_eq!(written % line.len(), 0, "only whole lines");
    }
}
