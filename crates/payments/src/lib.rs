//! The payments service (spec modules.md §6): customers authorize payments over REST before
//! checkout; the create-order saga confirms them (`ConfirmPayment`); a ready order gets an
//! invoice (`OrderReadied`), which the customer pays over REST (`InvoicePaid` is published so
//! ordering completes the order) or which is canceled with its order (`OrderCanceled`).
//!
//! Payments and invoices are CRUD rows in the `payments` schema.

pub mod application;
pub mod domain;
pub mod handlers;
pub mod postgres;
pub mod rest;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use persistence::{Migration, OutboxRelay, RelayConfig, inbox};
use platform::{ModuleContext, async_trait};

use crate::application::Payments;

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "payments";

/// The service's own tables (the outbox and inbox come from `persistence`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "payments and invoices",
    sql: include_str!("migrations/0001_payments.sql"),
}];

/// How often handled-message records older than the inbox retention are deleted.
const INBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The payments module, for the monolith or the `payments` binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsModule;

impl PaymentsModule {
    /// The module.
    pub fn new() -> Self {
        PaymentsModule
    }
}

#[async_trait]
impl platform::Module for PaymentsModule {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let pool = persistence::connect(&ctx.database_url, SCHEMA)
            .await
            .context("connecting to the payments database")?;
        persistence::migrate::migrate_common(&pool, SCHEMA)
            .await
            .context("migrating the common tables of payments")?;
        persistence::migrate(&pool, SCHEMA, "payments", MIGRATIONS)
            .await
            .context("migrating the payments tables")?;

        let relay = OutboxRelay::new(
            pool.clone(),
            ctx.bus.transport().clone(),
            RelayConfig::default(),
        );
        let shutdown = ctx.shutdown.clone();
        ctx.spawn(async move { relay.run(shutdown).await });
        ctx.spawn(inbox::run_pruner(
            pool.clone(),
            inbox::DEFAULT_RETENTION,
            INBOX_PRUNE_INTERVAL,
            ctx.shutdown.clone(),
        ));

        let probe = pool.clone();
        ctx.readiness.add_check("postgres:payments", move || {
            let pool = probe.clone();
            async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()) }
        });

        ctx.subscribe(handlers::commands(pool.clone()))
            .await
            .context("subscribing to payments commands")?;
        ctx.subscribe(handlers::orders(pool.clone()))
            .await
            .context("subscribing to order events")?;

        Ok(rest::router(Payments::new(pool, ctx.bus.clone())))
    }
}
