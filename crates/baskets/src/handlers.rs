//! The consumers that keep the caches up to date from the stores' events: `baskets-stores` on
//! the store subject and `baskets-products` on the product subject (spec messaging.md §6).
//!
//! Each message is turned into a [`CacheUpdate`] by a pure function (bad data is a permanent
//! failure: it goes to the dead-letter subject at once), then written in one transaction with
//! its inbox record, so a redelivered message changes nothing twice.

use contracts::stores::v1 as stores;
use contracts::subjects;
use messaging::{HandlerError, Message, MessageContext, Subscription};
use persistence::inbox;
use sqlx::PgPool;

use crate::domain::{Product, Store};
use crate::postgres::{self, CacheUpdate};

/// Durable consumer of store events.
pub const STORES_CONSUMER: &str = "baskets-stores";
/// Durable consumer of product events.
pub const PRODUCTS_CONSUMER: &str = "baskets-products";

/// `baskets-stores`: StoreCreated and StoreRebranded; the other store events are skipped.
pub fn stores_subscription(pool: &PgPool) -> Subscription {
    let sub = Subscription::new(STORES_CONSUMER, subjects::STORE_EVENTS);
    let sub = on(sub, pool, store_created);
    let sub = on(sub, pool, store_rebranded);
    ignore_the_rest(
        sub,
        subjects::STORE_EVENTS,
        &[
            stores::StoreCreated::message_name(),
            stores::StoreRebranded::message_name(),
        ],
    )
}

/// `baskets-products`: every product event (added, rebranded, price changes, removed).
pub fn products_subscription(pool: &PgPool) -> Subscription {
    let sub = Subscription::new(PRODUCTS_CONSUMER, subjects::PRODUCT_EVENTS);
    let sub = on(sub, pool, product_added);
    let sub = on(sub, pool, product_rebranded);
    let sub = on(sub, pool, product_price_increased);
    let sub = on(sub, pool, product_price_decreased);
    let sub = on(sub, pool, product_removed);
    ignore_the_rest(
        sub,
        subjects::PRODUCT_EVENTS,
        &[
            stores::ProductAdded::message_name(),
            stores::ProductRebranded::message_name(),
            stores::ProductPriceIncreased::message_name(),
            stores::ProductPriceDecreased::message_name(),
            stores::ProductRemoved::message_name(),
        ],
    )
}

/// Acks and skips the names catalogued on `subject` that are not `handled` (today: the store
/// participation toggle), so only truly unknown names are dead-lettered.
fn ignore_the_rest(sub: Subscription, subject: &str, handled: &[String]) -> Subscription {
    sub.ignore(skipped(subject, handled))
}

/// The names catalogued on `subject` that are not `handled`.
fn skipped(subject: &str, handled: &[String]) -> Vec<String> {
    contracts::names_on(subject)
        .into_iter()
        .filter(|name| !handled.contains(name))
        .collect()
}

/// Registers the handler of `M`: decide the update, then write it through the inbox.
fn on<M: Message>(
    sub: Subscription,
    pool: &PgPool,
    decide: fn(M) -> Result<CacheUpdate, String>,
) -> Subscription {
    let pool = pool.clone();
    sub.on::<M, _, _>(move |message, ctx| {
        let pool = pool.clone();
        async move { handle(&pool, &ctx, decide(message)).await }
    })
}

/// One transaction: inbox record (a duplicate stops here), the cache write, commit.
async fn handle(
    pool: &PgPool,
    ctx: &MessageContext,
    update: Result<CacheUpdate, String>,
) -> Result<(), HandlerError> {
    let update = update.map_err(|reason| {
        HandlerError::permanent(format!(
            "{} {}: {reason}",
            ctx.envelope.name, ctx.envelope.id
        ))
    })?;
    let mut tx = pool.begin().await.map_err(HandlerError::retryable)?;
    let first = inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(HandlerError::retryable)?;
    if !first {
        tracing::debug!(id = %ctx.envelope.id, name = %ctx.envelope.name, "duplicate skipped");
        return Ok(());
    }
    postgres::apply(&mut tx, &update)
        .await
        .map_err(HandlerError::retryable)?;
    tx.commit().await.map_err(HandlerError::retryable)?;
    Ok(())
}

fn required(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("the {what} is blank"))
    } else {
        Ok(())
    }
}

fn finite(price: f64) -> Result<f64, String> {
    if price.is_finite() {
        Ok(price)
    } else {
        Err(format!("the price {price} is not a number"))
    }
}

fn store_created(event: stores::StoreCreated) -> Result<CacheUpdate, String> {
    required("store id", &event.id)?;
    Ok(CacheUpdate::AddStore(Store {
        id: event.id,
        name: event.name,
    }))
}

fn store_rebranded(event: stores::StoreRebranded) -> Result<CacheUpdate, String> {
    required("store id", &event.id)?;
    Ok(CacheUpdate::RenameStore {
        id: event.id,
        name: event.name,
    })
}

fn product_added(event: stores::ProductAdded) -> Result<CacheUpdate, String> {
    required("product id", &event.id)?;
    required("store id", &event.store_id)?;
    Ok(CacheUpdate::AddProduct(Product {
        price: finite(event.price)?,
        id: event.id,
        store_id: event.store_id,
        name: event.name,
    }))
}

fn product_rebranded(event: stores::ProductRebranded) -> Result<CacheUpdate, String> {
    required("product id", &event.id)?;
    Ok(CacheUpdate::RenameProduct {
        id: event.id,
        name: event.name,
    })
}

/// The absolute `price` is applied, not the `delta` (spec weaknesses.md F1).
fn product_price_increased(event: stores::ProductPriceIncreased) -> Result<CacheUpdate, String> {
    required("product id", &event.id)?;
    Ok(CacheUpdate::SetPrice {
        price: finite(event.price)?,
        id: event.id,
    })
}

/// The absolute `price` is applied, not the `delta` (spec weaknesses.md F1).
fn product_price_decreased(event: stores::ProductPriceDecreased) -> Result<CacheUpdate, String> {
    required("product id", &event.id)?;
    Ok(CacheUpdate::SetPrice {
        price: finite(event.price)?,
        id: event.id,
    })
}

fn product_removed(event: stores::ProductRemoved) -> Result<CacheUpdate, String> {
    required("product id", &event.id)?;
    Ok(CacheUpdate::RemoveProduct { id: event.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_events_become_cache_updates() {
        let created = stores::StoreCreated {
            id: "s".into(),
            name: "Store".into(),
            location: "Mall".into(),
        };
        assert_eq!(
            store_created(created),
            Ok(CacheUpdate::AddStore(Store {
                id: "s".into(),
                name: "Store".into()
            }))
        );
        let rebranded = stores::StoreRebranded {
            id: "s".into(),
            name: "New".into(),
        };
        assert_eq!(
            store_rebranded(rebranded),
            Ok(CacheUpdate::RenameStore {
                id: "s".into(),
                name: "New".into()
            })
        );
    }

    #[test]
    fn product_events_become_cache_updates() {
        let added = stores::ProductAdded {
            id: "p".into(),
            store_id: "s".into(),
            name: "Product".into(),
            description: "ignored".into(),
            sku: "ignored".into(),
            price: 9.99,
        };
        assert_eq!(
            product_added(added),
            Ok(CacheUpdate::AddProduct(Product {
                id: "p".into(),
                store_id: "s".into(),
                name: "Product".into(),
                price: 9.99
            }))
        );
        let rebranded = stores::ProductRebranded {
            id: "p".into(),
            name: "New".into(),
            description: "ignored".into(),
        };
        assert_eq!(
            product_rebranded(rebranded),
            Ok(CacheUpdate::RenameProduct {
                id: "p".into(),
                name: "New".into()
            })
        );
        let removed = stores::ProductRemoved { id: "p".into() };
        assert_eq!(
            product_removed(removed),
            Ok(CacheUpdate::RemoveProduct { id: "p".into() })
        );
    }

    #[test]
    fn price_events_set_the_absolute_price_and_ignore_the_delta() {
        let up = stores::ProductPriceIncreased {
            id: "p".into(),
            delta: 2.0,
            price: 12.0,
        };
        let down = stores::ProductPriceDecreased {
            id: "p".into(),
            delta: -4.5,
            price: 7.5,
        };
        let set = |price| {
            Ok(CacheUpdate::SetPrice {
                id: "p".into(),
                price,
            })
        };
        assert_eq!(product_price_increased(up), set(12.0));
        assert_eq!(product_price_decreased(down), set(7.5));
    }

    #[test]
    fn events_without_ids_or_with_broken_prices_are_refused() {
        assert!(store_created(stores::StoreCreated::default()).is_err());
        assert!(store_rebranded(stores::StoreRebranded::default()).is_err());
        assert!(product_rebranded(stores::ProductRebranded::default()).is_err());
        assert!(product_removed(stores::ProductRemoved::default()).is_err());
        let no_store = stores::ProductAdded {
            id: "p".into(),
            ..Default::default()
        };
        assert!(product_added(no_store).is_err());
        let nan = stores::ProductPriceIncreased {
            id: "p".into(),
            delta: 0.0,
            price: f64::NAN,
        };
        assert!(product_price_increased(nan).is_err());
        let infinite = stores::ProductAdded {
            id: "p".into(),
            store_id: "s".into(),
            price: f64::INFINITY,
            ..Default::default()
        };
        assert!(product_added(infinite).is_err());
    }

    #[test]
    fn only_the_participation_toggle_is_skipped() {
        let handled = [
            stores::StoreCreated::message_name(),
            stores::StoreRebranded::message_name(),
        ];
        assert_eq!(
            skipped(subjects::STORE_EVENTS, &handled),
            vec![stores::StoreParticipationToggled::message_name()]
        );
        let every_product_event = contracts::names_on(subjects::PRODUCT_EVENTS);
        assert_eq!(every_product_event.len(), 5);
        assert!(skipped(subjects::PRODUCT_EVENTS, &every_product_event).is_empty());
    }
}
