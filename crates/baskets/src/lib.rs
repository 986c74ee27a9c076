//! The baskets service: customers start a basket, add and remove products, and check it out
//! with a payment, which hands it to ordering (spec modules.md §2, flows.md F12–F16).
//!
//! - [`domain`]: the event-sourced `Basket` aggregate, pure;
//! - `application`: the use cases, one transaction each (event store, caches, outbox);
//! - `postgres`: the store and product caches;
//! - `handlers`: the consumers `baskets-stores` and `baskets-products` feeding the caches;
//! - `rest`: the API under `/api/baskets`.
//!
//! A product or store missing from the caches is asked of the stores service
//! (`stores.v1.GetProduct` / `GetStore` queries) with a deadline, and cached.

mod application;
pub mod domain;
mod handlers;
mod postgres;
mod rest;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use persistence::{Aggregate, EventStore, Migration, SnapshotPolicy};
use platform::{Module, ModuleContext};

use crate::domain::Basket;

pub use handlers::{PRODUCTS_CONSUMER, STORES_CONSUMER};

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "baskets";

/// The service's own tables (the event store, outbox and inbox come from `persistence`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "caches",
    sql: include_str!("migrations/0001_caches.sql"),
}];

/// How long a stores lookup may take by default before the request fails (the original waited
/// without a deadline, spec weaknesses.md E1).
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Baskets replay from a snapshot once they reach this many events: most stay far below, a
/// long-lived one with many changes does not replay them all on every request.
const SNAPSHOT_EVERY: u32 = 20;

/// The baskets service as a [`Module`] of the host (monolith or its own binary).
#[derive(Debug, Clone)]
pub struct BasketsModule {
    lookup_timeout: Duration,
}

impl Default for BasketsModule {
    fn default() -> Self {
        BasketsModule::new()
    }
}

impl BasketsModule {
    /// The module with the default lookup deadline.
    pub fn new() -> Self {
        BasketsModule {
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
        }
    }

    /// Changes how long a stores lookup may take.
    pub fn with_lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }
}

#[platform::async_trait]
impl Module for BasketsModule {
    fn name(&self) -> &'static str {
        "baskets"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<axum::Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        ctx.subscribe(handlers::stores_subscription(&pool))
            .await
            .context("subscribing to store events")?;
        ctx.subscribe(handlers::products_subscription(&pool))
            .await
            .context("subscribing to product events")?;

        let events =
            EventStore::new().with_snapshots(Basket::TYPE, SnapshotPolicy::Every(SNAPSHOT_EVERY));
        let baskets = application::Baskets::new(pool, events, ctx.bus.clone(), self.lookup_timeout);
        Ok(rest::router(Arc::new(baskets)))
    }
}
