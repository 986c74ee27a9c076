//! The monolith: every service module in one process, on one HTTP port and one NATS
//! connection. Only wiring lives here; the behaviour is in `platform` and the service crates.

use std::process::ExitCode;

use platform::{App, Config, Module};

/// The modules this process runs, in start order (spec ops.md §1: baskets, customers, depot,
/// notifications, ordering, payments, stores, cosec, search). Add each service here.
fn modules() -> Vec<Box<dyn Module>> {
    vec![]
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::load("mallbots", "MallBots: every service module in one process");
    // Installed before start-up so a SIGTERM during start-up stops the process cleanly.
    let stop = platform::shutdown_signal();
    platform::telemetry::init(&config);
    let outcome = match App::build(config, modules()).await {
        Ok(app) => app.run_until_stopped(stop).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mallbots stopped with an error");
            ExitCode::FAILURE
        }
    }
}
