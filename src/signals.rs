//! Signals: the first Ctrl-C or SIGTERM starts a graceful shutdown, a second one exits at once.

use std::future::Future;

/// Completes on the first Ctrl-C or SIGTERM; a second one exits the process at once, without
/// waiting for the shutdown grace period (status 130 after SIGINT, 143 after SIGTERM, as if the
/// signal's default action had run). The handlers are installed when this is called, not when
/// the future is first polled, so a signal sent as soon as the server says it listens is not lost
/// to the default action (which would kill the process without draining).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            let name = next_signal(&mut interrupt, &mut terminate).await;
            tracing::info!(signal = name, "shutting down; a second signal exits at once");
            tokio::spawn(async move {
                let name = next_signal(&mut interrupt, &mut terminate).await;
                tracing::warn!(
                    signal = name,
                    "second signal: exiting without waiting for requests in progress"
                );
                crate::telemetry::flush();
                std::process::exit(if name == "SIGINT" { 130 } else { 143 });
            });
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        }
    }
}

/// The name of the next of the two signals to arrive (a handler that could not be installed
/// never fires).
#[cfg(unix)]
async fn next_signal(
    interrupt: &mut Option<tokio::signal::unix::Signal>,
    terminate: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
        if let Some(signal) = signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
    tokio::select! {
        () = recv(interrupt) => "SIGINT",
        () = recv(terminate) => "SIGTERM",
    }
}
