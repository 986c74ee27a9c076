//! The notifications service: texts customers about their orders (spec modules.md §7, flows.md
//! F23), which the original never did (its notify operations were no-ops, weakness A7).
//!
//! - Keeps `customers_cache` (id, name, SMS number) from `CustomerRegistered` and
//!   `CustomerSmsChanged`; a customer missing from it is asked of the customers service
//!   (`customers.v1.GetCustomer` query) and cached.
//! - On `OrderCreated`, `OrderReadied`, `OrderCanceled` and `OrderRejected` sends one SMS through
//!   the [`SmsSender`] port and records it in `notifications`, once per (order, kind) however
//!   often the event arrives.
//! - Every message is handled in one transaction with its inbox record (weakness B4).
//! - Publishes nothing, so it runs no outbox relay.
//! - REST (an addition): `GET /api/notifications?orderId=` and
//!   `GET /api/notifications/orders/{id}` list the recorded texts.

mod application;
mod domain;
mod handlers;
mod postgres;
mod rest;
mod sms;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use platform::{Module, ModuleContext};

pub use domain::NotificationKind;
pub use handlers::{CUSTOMERS_DURABLE, ORDERS_DURABLE};
pub use sms::{LogSmsSender, Sms, SmsError, SmsSender};

/// The PostgreSQL schema the service owns.
pub const SCHEMA: &str = "notifications";

/// The service's own tables, applied after the common ones (inbox...).
pub const MIGRATIONS: &[persistence::Migration] = &[persistence::Migration {
    version: 1,
    name: "customers cache and notifications",
    sql: include_str!("migrations/0001_notifications.sql"),
}];

/// The notifications module, for the monolith and the service binary.
pub struct NotificationsModule {
    sender: Arc<dyn SmsSender>,
}

impl NotificationsModule {
    /// A module that sends its texts through `sender` (a gateway adapter, or a test double).
    pub fn new(sender: Arc<dyn SmsSender>) -> Self {
        NotificationsModule { sender }
    }
}

/// Texts go to the log ([`LogSmsSender`]) until a gateway adapter is configured.
impl Default for NotificationsModule {
    fn default() -> Self {
        NotificationsModule::new(Arc::new(LogSmsSender))
    }
}

#[platform::async_trait]
impl Module for NotificationsModule {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        <rest::ApiDoc as utoipa::OpenApi>::openapi()
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let pool = ctx.open_database(SCHEMA, MIGRATIONS, false).await?;

        let notifier = application::Notifier::new(
            pool.clone(),
            ctx.bus.clone(),
            self.sender.clone(),
            application::Timeouts::default(),
        );
        ctx.subscribe(handlers::customers_subscription(&notifier))
            .await
            .context("subscribing to customer events")?;
        ctx.subscribe(handlers::orders_subscription(&notifier))
            .await
            .context("subscribing to order events")?;
        Ok(rest::router(pool))
    }
}
