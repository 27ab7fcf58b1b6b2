//! The shutdown signal of the long-running commands (`tandem serve`, `tandem replicate`).

use tokio::signal::unix::{SignalKind, signal};

use super::Failure;

/// A future that completes at the first SIGINT or SIGTERM the process receives after this
/// call, logging `farewell` at info level (with the signal's name) when it does.
///
/// Installs both signal handlers at once, so a signal that arrives before the future is
/// first polled is not lost. Must be called inside a tokio runtime.
///
/// Errors: [`Failure::system`] when a handler cannot be installed.
pub(super) fn shutdown_signal(
    farewell: &'static str,
) -> Result<impl Future<Output = ()> + Send, Failure> {
    let install = |kind: SignalKind| {
        signal(kind).map_err(|error| Failure::system(format!("cannot handle signals: {error}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    Ok(async move {
        let received = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = received, "{farewell}");
    })
}
