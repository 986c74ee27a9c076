//! The customers service (spec modules.md §3): customers register, change their SMS number and
//! are enabled or disabled over REST; the create-order saga asks whether a customer may order
//! (`AuthorizeCustomer`); notifications and search look customers up (`GetCustomer`).
//!
//! Customers are CRUD rows in the `customers` schema; every change publishes its integration
//! event on `customers.events.Customer` through the outbox.

pub mod application;
pub mod domain;
pub mod handlers;
pub mod postgres;
pub mod rest;

use anyhow::Context;
use axum::Router;
use contracts::customers::v1::GetCustomer;
use persistence::Migration;
use platform::{ModuleContext, async_trait};

use crate::application::Customers;

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "customers";

/// The service's own tables (the outbox and inbox come from `persistence`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "customers",
    sql: include_str!("migrations/0001_customers.sql"),
}];

/// The customers module, for the monolith or the `customers` binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomersModule;

impl CustomersModule {
    /// The module.
    pub fn new() -> Self {
        CustomersModule
    }
}

#[async_trait]
impl platform::Module for CustomersModule {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, true).await?;

        ctx.subscribe(handlers::commands(pool.clone()))
            .await
            .context("subscribing to customers commands")?;
        let answers = pool.clone();
        let responder = ctx
            .bus
            .serve::<GetCustomer, _, _>(
                handlers::QUERY_GROUP,
                move |query, _| {
                    let pool = answers.clone();
                    async move { handlers::get_customer(&pool, query).await }
                },
                ctx.shutdown.clone(),
            )
            .await
            .context("serving customers.v1.GetCustomer")?;
        ctx.track(responder);

        Ok(rest::router(Customers::new(pool, ctx.bus.clone())))
    }
}
