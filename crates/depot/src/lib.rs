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

use std::time::Duration;

use persistence::{Migration, OutboxRelay, RelayConfig, inbox};
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

/// How often handled-message records older than the inbox retention are deleted.
const INBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

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
        let pool = persistence::connect(&ctx.database_url, SCHEMA).await?;
        persistence::migrate_common(&pool, SCHEMA).await?;
        persistence::migrate(&pool, SCHEMA, "depot", MIGRATIONS).await?;

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
        ctx.readiness.add_check("postgres:depot", move || {
            let pool = probe.clone();
            async move { sqlx::query("SELECT 1").execute(&pool).await.map(drop) }
        });

        let depot = Depot::new(pool, ctx.bus.clone());
        for subscription in handlers::subscriptions(&depot) {
            ctx.subscribe(subscription).await?;
        }
        Ok(rest::routes(depot))
    }
}
