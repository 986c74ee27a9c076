//! The stores service: the mall's stores and their product catalogues.
//!
//! `Store` and `Product` are event-sourced aggregates ([`domain`]); every command commits its
//! events, the mall/catalogue read models ([`postgres`]) and its integration events (outbox) in
//! one transaction ([`application`]). The REST API lives under `/api/stores` ([`rest`]); other
//! services ask `stores.v1.GetStore` / `GetProduct` over NATS ([`handlers`]). The service
//! subscribes to nothing.
//!
//! The monolith and the `stores` binary both start it as a [`StoresModule`].

pub mod application;
pub mod domain;
pub mod handlers;
pub mod postgres;
pub mod rest;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use persistence::Migration;
use platform::{Module, ModuleContext};

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "stores";

/// The service's own tables (the event store, outbox and inbox come from `persistence`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "mall and catalog",
    sql: include_str!("migrations/0001_mall_and_catalog.sql"),
}];

/// The stores service as a module of a host process.
#[derive(Debug, Clone, Default)]
pub struct StoresModule {}

impl StoresModule {
    /// The module; everything it needs comes from the host's context at start.
    pub fn new() -> Self {
        StoresModule {}
    }
}

#[platform::async_trait]
impl Module for StoresModule {
    fn name(&self) -> &'static str {
        "stores"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        let stores = Arc::new(application::Stores::new(pool, ctx.bus.clone()));
        handlers::serve_queries(&ctx, stores.clone())
            .await
            .context("serving the stores queries")?;
        Ok(rest::router(stores))
    }
}
