//! Logging: JSON lines in production, readable lines on a terminal. Fields are always chosen
//! by hand; no request, header set or secret is ever logged whole.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; the filter comes from `HEXBROKER_LOG` (default `info`).
pub fn init(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_env("HEXBROKER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,hyper_util=warn"));
    let format =
        format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
