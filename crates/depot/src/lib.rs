//! The depot service (spec modules.md §4): shopping lists the robots pick for approved orders.
//!
//! The create-order saga asks for a list (CreateShoppingList), releases it to the bots once the
//! payment is confirmed (InitiateShopping) or calls it off (CancelShoppingList); over REST a
//! bot is assigned and completes it, and ShoppingListCompleted tells ordering the order is
//! ready. Store and product names come from local caches fed by the stores service's events,
//! with a NATS query to stores on a miss.
//!
//! - [`domain`] — the pure `ShoppingList` entity and its state machine;
//! - [`application`] — use cases (lookups, transitions, outbox);
//! - [`postgres`] — the `shopping_lists`, `stores_cache` and `products_cache` tables;
//! - [`handlers`] — the commands and cache consumers;
//! - [`rest`] — `/api/depot`.

pub mod application;
pub mod domain;
pub mod handlers;
pub mod postgres;
pub mod rest;

use persistence::Migration;
use platform::{Module, ModuleContext};

use crate::application::Depot;

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "depot";

/// The service's own tables.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "shopping lists and caches",
    sql: include_str!("migrations/0001_shopping.sql"),
}];

/// The depot module, for the monolith or the `depot` binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct DepotModule;

impl DepotModule {
    /// The module.
    pub fn new() -> Self {
        DepotModule
    }
}

#[platform::async_trait]
impl Module for DepotModule {
    fn name(&self) -> &'static str {
        "depot"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<axum::Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        let depot = Depot::new(pool, ctx.bus.clone());
        for subscription in handlers::subscriptions(&depot) {
            ctx.subscribe(subscription).await?;
        }
        Ok(rest::routes(depot))
    }
}
