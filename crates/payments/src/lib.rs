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

use anyhow::Context;
use axum::Router;
use persistence::Migration;
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
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        ctx.subscribe(handlers::commands(pool.clone()))
            .await
            .context("subscribing to payments commands")?;
        ctx.subscribe(handlers::orders(pool.clone()))
            .await
            .context("subscribing to order events")?;

        Ok(rest::router(Payments::new(pool, ctx.bus.clone())))
    }
}
