//! The ordering service (spec modules.md §5): orders as event-sourced aggregates, created from
//! basket checkouts or the REST API, approved or rejected by the create-order saga, readied when
//! the depot finishes shopping and completed when the invoice is paid.
//!
//! - [`domain`] — the pure `Order` aggregate and its state machine;
//! - [`application`] — use cases (load, decide, save, enqueue integration events);
//! - [`handlers`] — the consumers and saga commands;
//! - [`rest`] — `/api/ordering`.
//!
//! Every state change is published through the outbox: OrderCreated, OrderRejected,
//! OrderApproved, OrderCanceled, OrderReadied, OrderCompleted on `ordering.events.Order`.

pub mod application;
pub mod domain;
pub mod handlers;
pub mod rest;

use persistence::Migration;
use platform::{Module, ModuleContext};

use crate::application::Orders;

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "ordering";

/// The service's own tables. None: orders live in the event store (and its snapshots), which
/// the common migrations create; reads load the aggregate, so there is no read model to keep.
pub const MIGRATIONS: &[Migration] = &[];

/// The ordering module, for the monolith or the `ordering` binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderingModule;

impl OrderingModule {
    /// The module.
    pub fn new() -> Self {
        OrderingModule
    }
}

#[platform::async_trait]
impl Module for OrderingModule {
    fn name(&self) -> &'static str {
        "ordering"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<axum::Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        let orders = Orders::new(pool, ctx.bus.clone());
        for subscription in handlers::subscriptions(&orders) {
            ctx.subscribe(subscription).await?;
        }
        Ok(rest::routes(orders))
    }
}
