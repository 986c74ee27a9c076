//! What every MallBots process shares: configuration ([`Config`]), telemetry, the HTTP host
//! ([`App`]) with health, readiness and metrics endpoints, graceful shutdown, the error shape
//! of the REST API ([`ApiError`]), and the [`Module`] trait each service implements.
//!
//! A binary only wires: `Config::load` → `telemetry::init` → `App::build(config, modules)` →
//! `run_until_stopped(shutdown_signal())`.

mod app;
pub mod config;
mod http;
mod module;
pub mod openapi;
mod readiness;
mod signal;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use app::{App, Error};

pub use config::{Config, LogFormat};
pub use http::MAX_PATH_ID_LEN;
pub use http::error::{ApiError, ErrorKind};
pub use http::json::{
    ApiJson, de_f64_lenient, de_i32_lenient, de_i64_lenient, de_string_lenient, parse_body,
};
/// The global allocator every MallBots binary installs (`#[global_allocator] static A:
/// platform::Allocator = platform::Allocator;`). Message handling allocates small, short-lived
/// buffers on several threads at once; glibc's allocator serialises them on its arena locks
/// (`make bench-messaging` spent over a tenth of its time in malloc and its futex waits), and
/// mimalloc's thread-local heaps raised the crate's consume rate from ~24k to ~33k msg/s.
pub use mimalloc::MiMalloc as Allocator;
pub use module::{Module, ModuleContext};
pub use openapi::{ApiErrorBody, EmptyBody, IdBody};
pub use readiness::{CHECK_TIMEOUT, CheckState, Readiness, ReadinessReport};
pub use signal::shutdown_signal;

/// The whole `main` of a MallBots binary: load the configuration (flags and environment), start
/// logging, build the app with `modules`, serve until SIGTERM/ctrl-c. The monolith and every
/// service binary call this, so they share one configuration surface and one lifecycle.
pub async fn run_binary(
    name: &'static str,
    about: &'static str,
    modules: impl FnOnce() -> Vec<Box<dyn Module>>,
) -> std::process::ExitCode {
    let config = Config::load(name, about);
    // Installed before start-up so a SIGTERM during start-up stops the process cleanly.
    let stop = shutdown_signal();
    telemetry::init(&config);
    let mut modules = modules();
    if let Some(wanted) = &config.modules {
        let known: Vec<&str> = modules.iter().map(|m| m.name()).collect();
        if let Some(unknown) = wanted.iter().find(|w| !known.contains(&w.trim())) {
            eprintln!(
                "error: MALLBOTS_MODULES names unknown module {unknown:?} (known: {})",
                known.join(", ")
            );
            return std::process::ExitCode::from(2);
        }
        modules.retain(|m| wanted.iter().any(|w| w.trim() == m.name()));
    }
    let outcome = match App::build(config, modules).await {
        Ok(app) => app.run_until_stopped(stop).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Re-exported so service crates implement [`Module`] with the same macro version.
pub use async_trait::async_trait;
