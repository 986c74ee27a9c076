//! The four durable consumers (spec messaging.md §6 #14–17; the orders consumer has its own
//! durable `search-orders` instead of the original's `notification-orders` shared with
//! notifications, weakness B2). Names a consumer does not need on its subject are acked and
//! skipped; an unknown name is dead-lettered.
//!
//! | durable | subject | handled |
//! |---|---|---|
//! | `search-customers` | `customers.events.Customer` | `CustomerRegistered` |
//! | `search-stores` | `stores.events.Store` | `StoreCreated`, `StoreRebranded` |
//! | `search-products` | `stores.events.Product` | `ProductAdded`, `ProductRebranded`, `ProductRemoved` |
//! | `search-orders` | `ordering.events.Order` | `OrderCreated`, `OrderApproved`, `OrderRejected`, `OrderReadied`, `OrderCanceled`, `OrderCompleted` |

use contracts::customers::v1::CustomerRegistered;
use contracts::ordering::v1::{
    OrderApproved, OrderCanceled, OrderCompleted, OrderCreated, OrderReadied, OrderRejected,
};
use contracts::stores::v1::{
    ProductAdded, ProductRebranded, ProductRemoved, StoreCreated, StoreRebranded,
};
use contracts::subjects;
use messaging::{MessageContext, Subscription};

use crate::application::{AppError, Indexer};
use crate::domain::OrderStatus;

/// Durable consumer of customer events.
pub const CUSTOMERS_DURABLE: &str = "search-customers";
/// Durable consumer of store events.
pub const STORES_DURABLE: &str = "search-stores";
/// Durable consumer of product events.
pub const PRODUCTS_DURABLE: &str = "search-products";
/// Durable consumer of order events.
pub const ORDERS_DURABLE: &str = "search-orders";

/// Registers a handler that clones the indexer into each call and maps its error.
macro_rules! on {
    ($sub:expr, $indexer:expr, $msg:ty, |$app:ident, $e:ident, $ctx:ident| $body:expr) => {{
        let indexer = $indexer.clone();
        $sub.on::<$msg, _, _>(move |$e: $msg, $ctx: MessageContext| {
            let $app = indexer.clone();
            async move { $body.await.map_err(AppError::into_handler_error) }
        })
    }};
}

/// The customer-names consumer.
pub fn customers_subscription(indexer: &Indexer) -> Subscription {
    let sub = Subscription::new(CUSTOMERS_DURABLE, subjects::CUSTOMER_EVENTS);
    let sub = on!(sub, indexer, CustomerRegistered, |app, e, ctx| app
        .customer_registered(&e.id, &e.name, &ctx.envelope, &ctx.consumer));
    sub.ignore(contracts::names_on(subjects::CUSTOMER_EVENTS))
}

/// The store-names consumer.
pub fn stores_subscription(indexer: &Indexer) -> Subscription {
    let sub = Subscription::new(STORES_DURABLE, subjects::STORE_EVENTS);
    let sub = on!(sub, indexer, StoreCreated, |app, e, ctx| app.store_created(
        &e.id,
        &e.name,
        &ctx.envelope,
        &ctx.consumer
    ));
    let sub = on!(sub, indexer, StoreRebranded, |app, e, ctx| app
        .store_rebranded(&e.id, &e.name, &ctx.envelope, &ctx.consumer));
    sub.ignore(contracts::names_on(subjects::STORE_EVENTS))
}

/// The product-names consumer.
pub fn products_subscription(indexer: &Indexer) -> Subscription {
    let sub = Subscription::new(PRODUCTS_DURABLE, subjects::PRODUCT_EVENTS);
    let sub = on!(sub, indexer, ProductAdded, |app, e, ctx| app.product_added(
        &e.id,
        &e.store_id,
        &e.name,
        &ctx.envelope,
        &ctx.consumer
    ));
    let sub = on!(sub, indexer, ProductRebranded, |app, e, ctx| app
        .product_rebranded(&e.id, &e.name, &ctx.envelope, &ctx.consumer));
    let sub = on!(sub, indexer, ProductRemoved, |app, e, ctx| app
        .product_removed(&e.id, &ctx.envelope, &ctx.consumer));
    sub.ignore(contracts::names_on(subjects::PRODUCT_EVENTS))
}

/// The orders consumer: indexing and status changes.
pub fn orders_subscription(indexer: &Indexer) -> Subscription {
    let sub = Subscription::new(ORDERS_DURABLE, subjects::ORDER_EVENTS);
    let sub = on!(sub, indexer, OrderCreated, |app, e, ctx| app.order_created(
        &e,
        &ctx.envelope,
        &ctx.consumer
    ));
    let sub = on!(sub, indexer, OrderApproved, |app, e, ctx| app
        .status_changed(
            &e.id,
            OrderStatus::Approved,
            &ctx.envelope,
            &ctx.consumer
        ));
    let sub = on!(sub, indexer, OrderRejected, |app, e, ctx| app
        .status_changed(
            &e.id,
            OrderStatus::Rejected,
            &ctx.envelope,
            &ctx.consumer
        ));
    let sub = on!(sub, indexer, OrderReadied, |app, e, ctx| app
        .status_changed(
            &e.id,
            OrderStatus::ReadyForPickup,
            &ctx.envelope,
            &ctx.consumer
        ));
    let sub = on!(sub, indexer, OrderCanceled, |app, e, ctx| app
        .status_changed(
            &e.id,
            OrderStatus::Canceled,
            &ctx.envelope,
            &ctx.consumer
        ));
    let sub = on!(sub, indexer, OrderCompleted, |app, e, ctx| app
        .status_changed(
            &e.id,
            OrderStatus::Completed,
            &ctx.envelope,
            &ctx.consumer
        ));
    sub.ignore(contracts::names_on(subjects::ORDER_EVENTS))
}
