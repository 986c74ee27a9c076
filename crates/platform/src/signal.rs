//! The stop signal for binaries: SIGTERM (orchestrators) or SIGINT (ctrl-c).
//!
//! The library never listens for signals by itself ([`App::run_until_stopped`](crate::App)
//! takes any future); binaries pass this one, and tests pass a channel.

use std::future::Future;

/// A future that completes on the first SIGTERM or SIGINT.
///
/// The handlers are installed when this is called, not when it is first polled, so call it
/// before start-up: a signal that arrives while modules start is not lost and does not kill
/// the process abruptly; it stops it as soon as it runs.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tracing::info!(signal = name, "stop signal received");
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for stop signals; stop the process another way");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!(signal = "ctrl-c", "stop signal received");
            } else {
                std::future::pending::<()>().await;
            }
        }
    }
}
