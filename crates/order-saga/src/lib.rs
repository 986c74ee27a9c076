//! The create-order saga service (the original's `cosec` module).
//!
//! When ordering publishes `OrderCreated`, a saga keyed by the order id authorizes the customer,
//! has the depot create the shopping list, confirms the payment, initiates the shopping and
//! approves the order — or, when a step fails or stays unanswered past its deadline, cancels
//! the shopping list and rejects the order. A compensation that fails leaves the saga stuck,
//! visibly (`stuck_reason`, the `saga_stuck_total` metric, an error log, the read endpoint).
//!
//! - [`engine`]: the generic orchestrator (definition, pure decision core, PostgreSQL runner,
//!   deadline sweeper);
//! - [`create_order`]: the CreateOrder saga's data and steps;
//! - [`handlers`]: the `cosec-ordering` and `cosec-replies` consumers;
//! - [`rest`]: `GET /api/cosec/sagas/{id}`.

pub mod create_order;
pub mod engine;
pub mod handlers;
pub mod rest;

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use persistence::Migration;
use platform::{Module, ModuleContext};

use crate::engine::{Orchestrator, Settings};

/// The module's PostgreSQL schema (and migrations component).
pub const SCHEMA: &str = "cosec";

/// The module's own tables (the saga rows, inbox and outbox are the persistence crate's).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "saga commands",
    sql: include_str!("migrations/0001_saga_commands.sql"),
}];

/// The environment variable holding the step timeout (`30s`, `1m`, `500ms`, or seconds).
pub const STEP_TIMEOUT_VAR: &str = "SAGA_STEP_TIMEOUT";

/// How long a step waits for its reply unless configured otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the deadline sweeper runs unless configured otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The cosec module: the create-order saga's consumers, deadline sweeper, outbox relay and
/// read endpoint.
#[derive(Debug, Clone)]
pub struct OrderSagaModule {
    /// An invalid `SAGA_STEP_TIMEOUT` is kept as its error and fails [`Module::start`], so a
    /// host can build its module list unconditionally and still stop at start-up.
    step_timeout: Result<Duration, String>,
    sweep_interval: Duration,
}

impl Default for OrderSagaModule {
    /// The documented defaults, without reading the environment.
    fn default() -> Self {
        OrderSagaModule {
            step_timeout: Ok(DEFAULT_STEP_TIMEOUT),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl OrderSagaModule {
    /// The defaults, with the step timeout from `SAGA_STEP_TIMEOUT` when it is set.
    pub fn from_env() -> Self {
        OrderSagaModule {
            step_timeout: parse_step_timeout(std::env::var(STEP_TIMEOUT_VAR).ok().as_deref()),
            ..Self::default()
        }
    }

    /// The defaults with another step timeout (tests use a short one).
    pub fn with_step_timeout(timeout: Duration) -> Self {
        OrderSagaModule {
            step_timeout: Ok(timeout),
            ..Self::default()
        }
    }

    /// Another sweeper interval: how late past its deadline a step is noticed at most.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }
}

/// `SAGA_STEP_TIMEOUT`'s value: unset or blank means the default; zero is refused (every step
/// would time out at once).
fn parse_step_timeout(value: Option<&str>) -> Result<Duration, String> {
    let parsed = match value.map(str::trim) {
        None | Some("") => return Ok(DEFAULT_STEP_TIMEOUT),
        Some(text) => platform::config::parse_duration(text),
    };
    match parsed {
        Ok(timeout) if timeout.is_zero() => Err(format!("{STEP_TIMEOUT_VAR}: must be above zero")),
        Ok(timeout) => Ok(timeout),
        Err(e) => Err(format!("{STEP_TIMEOUT_VAR}: {e}")),
    }
}

#[platform::async_trait]
impl Module for OrderSagaModule {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let step_timeout = self.step_timeout.clone().map_err(anyhow::Error::msg)?;
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        let settings = Settings {
            step_timeout,
            sweep_interval: self.sweep_interval,
            ..Settings::default()
        };
        let saga = Orchestrator::new(create_order::definition(), pool, ctx.bus.clone(), settings);
        ctx.subscribe(handlers::replies(saga.clone()))
            .await
            .context("subscribing to the create-order replies")?;
        ctx.subscribe(handlers::order_events(saga.clone()))
            .await
            .context("subscribing to order events")?;
        ctx.spawn(saga.clone().run_sweeper(ctx.shutdown.clone()));
        tracing::info!(?step_timeout, sweep_interval = ?self.sweep_interval, "create-order saga running");
        Ok(rest::router(saga))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_timeout_defaults_parses_and_refuses_nonsense() {
        assert_eq!(parse_step_timeout(None), Ok(DEFAULT_STEP_TIMEOUT));
        assert_eq!(parse_step_timeout(Some("  ")), Ok(DEFAULT_STEP_TIMEOUT));
        assert_eq!(parse_step_timeout(Some("45")), Ok(Duration::from_secs(45)));
        assert_eq!(
            parse_step_timeout(Some("1m30s")),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            parse_step_timeout(Some("500ms")),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_step_timeout(Some("0s")).is_err());
        let err = parse_step_timeout(Some("soon")).unwrap_err();
        assert!(err.starts_with(STEP_TIMEOUT_VAR), "{err}");
    }
}
