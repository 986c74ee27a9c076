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
mod readiness;
mod signal;
pub mod telemetry;

pub use app::{App, Error};
pub use config::{Config, LogFormat};
pub use http::BODY_LIMIT;
pub use http::error::{ApiError, ErrorKind};
pub use http::json::{
    ApiJson, de_f64_lenient, de_i32_lenient, de_i64_lenient, de_string_lenient, parse_body,
};
pub use module::{Module, ModuleContext};
pub use readiness::{CHECK_TIMEOUT, CheckState, Readiness, ReadinessReport};
pub use signal::shutdown_signal;

/// Re-exported so service crates implement [`Module`] with the same macro version.
pub use async_trait::async_trait;
