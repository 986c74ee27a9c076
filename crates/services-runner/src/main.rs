//! `run-services`: every MallBots service as its own process behind one HTTP entry point
//! (`make run-services`). Stops them all on SIGTERM or ctrl-c.

use std::process::ExitCode;

use clap::Parser;
use services_runner::{Runner, RunnerConfig};

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let config = RunnerConfig::parse();
    let stop = platform::shutdown_signal();
    platform::telemetry::init(&config.platform);
    let outcome = match Runner::start(config).await {
        Ok(runner) => runner.run_until_stopped(stop).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "run-services stopped with an error"
            );
            ExitCode::FAILURE
        }
    }
}
