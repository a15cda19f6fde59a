//! Logging: JSON lines in production, readable lines on a terminal. Fields are always chosen
//! by hand; no request, header set or secret is ever logged whole.
//!
//! A request never waits for its log line: lines go to a buffer that a thread of their own writes
//! out ([`lines`]), and JSON lines are formatted without the parsing that `tracing-subscriber`'s
//! JSON format does for every event in a span ([`json`]).

mod json;
mod lines;

use std::io::IsTerminal;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
pub use lines::Lines;

/// The filter when `HEXBROKER_LOG` is unset: hexbroker's own events at info, its libraries' only
/// when they warn.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,hyper_util=warn";

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
    let lines = LINES.get_or_init(|| Lines::spawn(std::io::stderr())).clone();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(lines);
    let _ = match format {
        LogFormat::Json => builder.fmt_fields(json::Members).event_format(json::Line).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    format
}

/// Writes out every line handed over so far (waiting at most a second): before the process
/// exits.
pub fn flush() {
    if let Some(lines) = LINES.get() {
        lines.flush(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::check_filter;

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
}
