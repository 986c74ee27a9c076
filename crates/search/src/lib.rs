//! The search service: a denormalised read model of orders and the queries over it (spec
//! modules.md §8, flows.md F24, api.md §2.8), which the original indexed only partly and never
//! answered (weakness A8).
//!
//! - Name caches (`customers_cache`, `stores_cache`, `products_cache`) fed by customer, store and
//!   product events; a miss asks the owning service (`customers.v1.GetCustomer`,
//!   `stores.v1.GetStore`, `stores.v1.GetProduct`) and caches the answer. No responder or a
//!   timeout is a retryable handler failure (NAK with back-off), never a crash.
//! - `orders`: one row per `OrderCreated` with names resolved, the total, the creation time
//!   (the event's `Sent-At`) and product/store id arrays; status `New`, then `Approved`,
//!   `Rejected`, `Ready For Pickup`, `Canceled`, `Completed` from the order's events. A status
//!   that arrives before its order is kept in `pending_statuses` and applied when it is indexed.
//! - Every message is handled in one transaction with its inbox record.
//! - Publishes nothing, so it runs no outbox relay.
//! - REST: `POST /api/search/orders`, `GET /api/search/orders/{id}` (see the `rest` module).

mod application;
mod domain;
mod handlers;
mod postgres;
mod rest;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use platform::{Module, ModuleContext};

pub use domain::OrderStatus;
pub use domain::query::{DEFAULT_LIMIT, MAX_LIMIT};
pub use handlers::{CUSTOMERS_DURABLE, ORDERS_DURABLE, PRODUCTS_DURABLE, STORES_DURABLE};
pub use rest::ORDER_NOT_FOUND;

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "search";

/// The service's own tables, applied after the common ones (inbox...).
pub const MIGRATIONS: &[persistence::Migration] = &[persistence::Migration {
    version: 1,
    name: "name caches and the orders read model",
    sql: include_str!("migrations/0001_search.sql"),
}];

/// How long indexing waits for another service's answer to one lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The search module, for the monolith and the service binary.
#[derive(Debug, Clone)]
pub struct SearchModule {
    lookup_timeout: Duration,
}

impl SearchModule {
    /// A module whose name lookups wait `lookup_timeout` for each answer.
    pub fn with_lookup_timeout(lookup_timeout: Duration) -> Self {
        SearchModule { lookup_timeout }
    }
}

/// Lookups wait [`LOOKUP_TIMEOUT`] (2 s) for each answer.
impl Default for SearchModule {
    fn default() -> Self {
        SearchModule::with_lookup_timeout(LOOKUP_TIMEOUT)
    }
}

#[platform::async_trait]
impl Module for SearchModule {
    fn name(&self) -> &'static str {
        "search"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, false).await?;

        let indexer = application::Indexer::new(pool, ctx.bus.clone(), self.lookup_timeout);
        for subscription in [
            handlers::customers_subscription(&indexer),
            handlers::stores_subscription(&indexer),
            handlers::products_subscription(&indexer),
            handlers::orders_subscription(&indexer),
        ] {
            let durable = subscription.durable().to_owned();
            ctx.subscribe(subscription)
                .await
                .with_context(|| format!("starting consumer {durable}"))?;
        }
        Ok(rest::router(indexer))
    }
}
