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
        write!(out, "{}", chrono::Utc::now().format_with_items(TIMESTAMP.iter()))?;
        write!(out, "\",\"level\":\"{}\"", meta.level())?;
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
                out.write_char(',')?;
            }
            out.write_str("\"name\":")?;
            string(&mut out, span.name())?;
            out.write_char('}')?;
        }
        out.write_str("}\n")
    }
}

/// `2026-12-07T12:00:00.123456Z`, parsed once.
static TIMESTAMP: std::sync::LazyLock<Vec<chrono::format::Item<'static>>> =
    std::sync::LazyLock::new(|| chrono::format::StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.6fZ").collect());

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
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            string(&mut self.out, field.name())?;
            self.out.write_char(':')?;
            value(&mut self.out)
        })();
    }
}

impl Visit for MemberWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
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
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// A JSON string.
fn string(out: &mut Writer<'_>, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(text)?;
    out.write_char('"')
}

/// Writes what it is given as the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ' || c == '\u{7f}') {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or(' ');
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{:04x}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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
