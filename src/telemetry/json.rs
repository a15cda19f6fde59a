//! JSON lines, written straight into the line buffer: the event's fields at the top level, the
//! current span's under `span` (as `tracing-subscriber`'s JSON format lays them out, so readers
//! of the logs see the same shape).
//!
//! Why not that format itself: it keeps a span's fields as a JSON object text, parses it into a
//! map every time a field is recorded on the span, and parses it again for every event inside
//! the span. The request span records two fields and carries one event per request, so those
//! parses were most of the access log's cost. Here a span's fields are kept as JSON members
//! (`"name":value,…`), appended to when recorded and copied into each line as they are.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats a span's fields as JSON members, and appends to them when more are recorded.
#[derive(Debug, Default)]
pub struct Members;

impl<'w> FormatFields<'w> for Members {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = MemberWriter { out: writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = MemberWriter { out: current.as_writer(), first, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Formats an event as one JSON line.
#[derive(Debug, Default)]
pub struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        out.write_str("{\"timestamp\":\"")?;
        out.write_str(timestamp(std::time::SystemTime::now(), &mut [0; 27]))?;
        out.write_str("\",\"level\":\"")?;
        out.write_str(meta.level().as_str())?;
        out.write_str("\"")?;
        let mut visitor = MemberWriter { out: out.by_ref(), first: false, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        out.write_str(",\"target\":")?;
        string(&mut out, meta.target())?;
        if let Some(span) = ctx.parent_span() {
            let extensions = span.extensions();
            out.write_str(",\"span\":{")?;
            if let Some(fields) = extensions.get::<FormattedFields<N>>().filter(|f| !f.fields.is_empty()) {
                // Written by `Members` when `N` is `Members`: JSON members, ready to copy.
                out.write_str(&fields.fields)?;
                out.write_str(",")?;
            }
            out.write_str("\"name\":")?;
            string(&mut out, span.name())?;
            out.write_str("}")?;
        }
        out.write_str("}\n")
    }
}

/// `at` as `2026-12-07T12:00:00.123456Z` (UTC, microseconds, truncated), written into `buf`.
/// The date and time of day are worked out once per second and thread, not per line.
fn timestamp(at: std::time::SystemTime, buf: &mut [u8; 27]) -> &str {
    use std::cell::Cell;
    thread_local! {
        /// The second last written, and its first 19 bytes (`2026-12-07T12:00:00`).
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let head = SECOND.with(|cached| {
        let (second, head) = cached.get();
        if second == secs {
            return head;
        }
        let head = date_and_time(secs);
        cached.set((secs, head));
        head
    });
    buf[..19].copy_from_slice(&head);
    buf[19] = b'.';
    digits(&mut buf[20..26], u64::from(since_epoch.subsec_micros()));
    buf[26] = b'Z';
    std::str::from_utf8(buf).unwrap_or("1970-01-01T00:00:00.000000Z")
}

/// `secs` after the epoch as `YYYY-MM-DDTHH:MM:SS` (proleptic Gregorian calendar, UTC).
fn date_and_time(secs: u64) -> [u8; 19] {
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
    let days = secs / 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9_999);
    let time = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00";
    digits(&mut out[0..4], year);
    digits(&mut out[5..7], month);
    digits(&mut out[8..10], day);
    digits(&mut out[11..13], time / 3_600);
    digits(&mut out[14..16], time / 60 % 60);
    digits(&mut out[17..19], time % 60);
    out
}

/// `n`'s last `out.len()` decimal digits, zero-padded.
fn digits(out: &mut [u8], mut n: u64) {
    for place in out.iter_mut().rev() {
        *place = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `n` in decimal.
fn integer(out: &mut Writer<'_>, negative: bool, mut n: u64) -> fmt::Result {
    let mut buf = [0u8; 21];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    out.write_str(std::str::from_utf8(&buf[at..]).map_err(|_| fmt::Error)?)
}

/// Writes each field as `"name":value`, with a comma before all but the first.
struct MemberWriter<'w> {
    out: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl MemberWriter<'_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_str(if std::mem::take(&mut self.first) { "\"" } else { ",\"" })?;
            Escaped(&mut self.out).write_str(field.name())?;
            self.out.write_str("\":")?;
            value(&mut self.out)
        })();
    }
}

impl Visit for MemberWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| integer(out, value < 0, value.unsigned_abs()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| integer(out, false, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.member(
            field,
            |out| if value.is_finite() { write!(out, "{value}") } else { out.write_str("null") },
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }
}

/// A JSON string.
fn string(out: &mut Writer<'_>, text: &str) -> fmt::Result {
    out.write_str("\"")?;
    Escaped(out).write_str(text)?;
    out.write_str("\"")
}

/// Writes what it is given as the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let clean = clean_prefix(bytes);
        if clean == bytes.len() {
            return self.0.write_str(text);
        }
        // Byte by byte from there: every character escaped is ASCII, so each cut falls between
        // characters.
        let mut from = 0;
        for (at, &byte) in bytes.iter().enumerate().skip(clean) {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&text[from..at])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", byte)?;
            } else {
                self.0.write_str(escaped)?;
            }
            from = at + 1;
        }
        self.0.write_str(&text[from..])
    }
}

/// How many of `bytes`' first bytes need no escaping, give or take: the bytes before the first
/// one that does, rounded down to a multiple of eight. Eight bytes are looked at a time.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `word` is zero (exact for the word as a whole).
    let any_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH != 0;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // A control character (below 0x20), a quote, a backslash or DEL.
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
        if control
            || any_zero(word ^ (ONES * u64::from(b'"')))
            || any_zero(word ^ (ONES * u64::from(b'\\')))
            || any_zero(word ^ (ONES * 0x7f))
        {
            return at;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
        .unwrap_or(bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn strings_are_escaped_wherever_the_character_falls() {
        for len in 0..40 {
            for at in 0..len {
                for odd in ['"', '\\', '\n', '\r', '\t', '\0', '\u{1f}', '\u{7f}', 'é', ' ', '~'] {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].to_owned();
                    text.replace_range(at..=at, &odd.to_string());
                    let mut out = String::new();
                    Escaped(&mut Writer::new(&mut out)).write_str(&text).unwrap();
                    let json = format!("\"{out}\"");
                    let back: String = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
                    assert_eq!(back, text);
                    // As serde_json writes it, but for DEL, which it leaves as it is.
                    assert_eq!(json, serde_json::to_string(&text).unwrap().replace('\u{7f}', "\\u007f"));
                }
            }
        }
    }

    #[test]
    fn timestamps_read_as_chrono_writes_them() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut seconds: Vec<u64> = vec![0, 59, 60, 86_399, 86_400, 951_782_400, 951_868_799, 4_107_542_400];
        // Every day for 400 years from 1970 (leap years, century rules), at an odd time of day.
        seconds.extend((0..146_097u64).map(|day| day * 86_400 + 45_296));
        for secs in seconds {
            for micros in [0u32, 7, 999_999] {
                let at = UNIX_EPOCH + Duration::new(secs, micros * 1_000 + 999);
                let expected = chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%dT%H:%M:%S%.6fZ");
                assert_eq!(timestamp(at, &mut [0; 27]), expected.to_string(), "{secs}.{micros}");
            }
        }
    }

    #[test]
    fn lines_are_json_with_the_event_at_the_top_and_the_span_beside_it() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(Members)
            .event_format(Line)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                method = %"GET",
                route = "/v1/proxy/{*path}",
                key_id = tracing::field::Empty,
                status = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("status", 200_u16);
            span.record("key_id", "k-1");
            tracing::info!(
                latency_ms = 0.25,
                small = -3_i64,
                big = u64::MAX,
                flag = false,
                odd = "quote \" backslash \\ newline \n nul \0 del \u{7f}",
                "finished"
            );
            tracing::warn!(nan = f64::NAN, "no span fields lost");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_writer(captured.clone())
                .fmt_fields(Members)
                .event_format(Line)
                .finish(),
            || tracing::info!(n = -3_i64, yes = true, "outside any span"),
        );
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first = &lines[0];
        assert_eq!(first["message"], "finished");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["latency_ms"], 0.25);
        assert_eq!(first["small"], -3);
        assert_eq!(first["big"], u64::MAX);
        assert_eq!(first["flag"], false);
        assert_eq!(first["odd"], "quote \" backslash \\ newline \n nul \0 del \u{7f}");
        assert_eq!(first["span"]["method"], "GET");
        assert_eq!(first["span"]["route"], "/v1/proxy/{*path}");
        assert_eq!(first["span"]["status"], 200);
        assert_eq!(first["span"]["key_id"], "k-1");
        assert_eq!(first["span"]["name"], "request");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(first["target"].as_str().unwrap().contains("json"));
        assert_eq!(lines[1]["nan"], Value::Null);
        assert_eq!(lines[1]["span"]["status"], 200);
        assert_eq!(lines[2]["n"], -3);
        assert_eq!(lines[2]["yes"], true);
        assert!(lines[2].get("span").is_none());
    }
}
