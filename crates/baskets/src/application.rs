//! The baskets use cases. Each runs in one transaction: load the basket from its events, look
//! up what it needs (product and store, from the caches or the stores service), let the
//! aggregate decide, save the events and enqueue the integration events in the outbox, commit.
//! A refused command commits nothing.

use std::future::Future;
use std::time::Duration;

use contracts::baskets::v1 as api;
use contracts::stores::v1::{GetProduct, GetStore};
use messaging::Bus;
use persistence::{EventStore, Loaded, outbox};
use sqlx::{PgConnection, PgPool};

use crate::domain::{Basket, BasketError, Product, Store};
use crate::postgres::{self, CacheUpdate};

/// Tries of a command that lost an optimistic-concurrency race before answering 409: the
/// command is decided again on the fresh state each time.
const CONFLICT_ATTEMPTS: usize = 3;

/// Why a use case failed. The texts of the client-facing variants are the API's messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The basket refused the command.
    #[error(transparent)]
    Rejected(#[from] BasketError),
    /// The basket refused the checkout (the original prefixes these messages).
    #[error("baskets checkout: {0}")]
    CheckoutRejected(BasketError),
    /// No basket has this id (reads only: commands answer with the basket's own refusal).
    #[error("the basket was not found")]
    BasketNotFound,
    /// Neither the cache nor the stores service knows the product.
    #[error("product fallback failed: product was not located")]
    ProductNotFound,
    /// The stores service could not be asked (no responder, timeout, its own failure).
    #[error("product fallback failed: requesting product")]
    ProductLookup(String),
    /// Neither the cache nor the stores service knows the product's store.
    #[error("store fallback failed")]
    StoreNotFound,
    /// The stores service could not be asked about the store.
    #[error("store fallback failed: requesting store")]
    StoreLookup(String),
    /// Other requests kept changing the basket while this one was decided.
    #[error("the basket was changed by another request at the same time, try again")]
    Concurrency,
    /// The database failed.
    #[error(transparent)]
    Unexpected(persistence::Error),
}

impl From<persistence::Error> for Error {
    fn from(e: persistence::Error) -> Self {
        match e {
            persistence::Error::Conflict { .. } => Error::Concurrency,
            other => Error::Unexpected(other),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Unexpected(persistence::Error::Database(e))
    }
}

/// The use cases, with what they need: the pool, the event store, the bus (outbox envelopes
/// and stores lookups) and the lookup deadline.
#[derive(Debug, Clone)]
pub struct Baskets {
    pool: PgPool,
    events: EventStore,
    bus: Bus,
    lookup_timeout: Duration,
}

impl Baskets {
    /// The use cases on `pool` (schema `baskets`); stores lookups give up after
    /// `lookup_timeout`.
    pub fn new(pool: PgPool, events: EventStore, bus: Bus, lookup_timeout: Duration) -> Self {
        Baskets {
            pool,
            events,
            bus,
            lookup_timeout,
        }
    }

    /// Starts a basket for `customer_id`; returns its new id. Publishes `BasketStarted`.
    pub async fn start_basket(&self, customer_id: &str) -> Result<String, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        // A fresh id: no stream to load. Saving expects version 0, so a clash would conflict.
        let mut basket = Loaded {
            id: id.clone(),
            version: 0,
            state: Basket::default(),
        };
        let events = basket.state.start(customer_id)?;
        let mut tx = self.pool.begin().await?;
        self.events.save(&mut tx, &mut basket, &events).await?;
        let started = api::BasketStarted {
            id: id.clone(),
            customer_id: basket.state.customer_id().to_owned(),
        };
        outbox::enqueue(&mut tx, &[self.bus.event(&started)]).await?;
        tx.commit().await?;
        metrics::counter!("baskets_started_count").increment(1);
        Ok(id)
    }

    /// The basket `id`; [`Error::BasketNotFound`] if it was never started.
    pub async fn basket(&self, id: &str) -> Result<Basket, Error> {
        let mut conn = self.pool.acquire().await?;
        let loaded = self.events.load::<Basket>(&mut conn, id).await?;
        if !loaded.exists() {
            return Err(Error::BasketNotFound);
        }
        Ok(loaded.state)
    }

    /// Cancels an open basket. Publishes `BasketCanceled`.
    pub async fn cancel_basket(&self, id: &str) -> Result<(), Error> {
        retrying(move || self.try_cancel(id)).await?;
        metrics::counter!("baskets_canceled_count").increment(1);
        Ok(())
    }

    async fn try_cancel(&self, id: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let mut basket = self.events.load::<Basket>(&mut tx, id).await?;
        let events = basket.state.cancel()?;
        self.events.save(&mut tx, &mut basket, &events).await?;
        let canceled = api::BasketCanceled { id: id.to_owned() };
        outbox::enqueue(&mut tx, &[self.bus.event(&canceled)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds `quantity` of a product. Check order as the original: basket loaded, product found,
    /// its store found, then the basket's rules. Publishes nothing.
    pub async fn add_item(&self, id: &str, product_id: &str, quantity: i32) -> Result<(), Error> {
        retrying(move || self.try_add_item(id, product_id, quantity)).await
    }

    async fn try_add_item(&self, id: &str, product_id: &str, quantity: i32) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let mut basket = self.events.load::<Basket>(&mut tx, id).await?;
        let (product, store) = self.product_and_store(&mut tx, product_id).await?;
        let events = basket.state.add_item(&store, &product, quantity)?;
        self.events.save(&mut tx, &mut basket, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `quantity` of a product. Publishes nothing.
    ///
    /// The original looked the product up first, so an unknown product is a 404; we do that
    /// only for a product the basket does not hold. A line already in the basket is removed
    /// without asking stores, so a product taken off the catalogue (or a stores outage) does
    /// not trap it there. For every product the catalogue knows, the answers are the same.
    pub async fn remove_item(
        &self,
        id: &str,
        product_id: &str,
        quantity: i32,
    ) -> Result<(), Error> {
        retrying(move || self.try_remove_item(id, product_id, quantity)).await
    }

    async fn try_remove_item(
        &self,
        id: &str,
        product_id: &str,
        quantity: i32,
    ) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let mut basket = self.events.load::<Basket>(&mut tx, id).await?;
        if !basket.state.has_item(product_id) {
            self.product(&mut tx, product_id).await?;
        }
        let events = basket.state.remove_item(product_id, quantity)?;
        self.events.save(&mut tx, &mut basket, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the basket out with `payment_id`. Publishes `BasketCheckedOut` with every line,
    /// from which ordering creates the order (whose id is the basket's).
    pub async fn checkout_basket(&self, id: &str, payment_id: &str) -> Result<(), Error> {
        retrying(move || self.try_checkout(id, payment_id)).await?;
        metrics::counter!("baskets_checked_out_count").increment(1);
        Ok(())
    }

    async fn try_checkout(&self, id: &str, payment_id: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let mut basket = self.events.load::<Basket>(&mut tx, id).await?;
        let events = basket
            .state
            .checkout(payment_id)
            .map_err(Error::CheckoutRejected)?;
        self.events.save(&mut tx, &mut basket, &events).await?;
        let checked_out = checked_out_event(id, &basket.state);
        outbox::enqueue(&mut tx, &[self.bus.event(&checked_out)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The product and its store: from the cache in one statement; what the cache lacks is
    /// fetched from the stores service (and cached in this transaction).
    async fn product_and_store(
        &self,
        conn: &mut PgConnection,
        product_id: &str,
    ) -> Result<(Product, Store), Error> {
        if product_id.trim().is_empty() {
            // No product has a blank id: no need to ask.
            return Err(Error::ProductNotFound);
        }
        let product = match postgres::find_product_with_store(conn, product_id).await? {
            Some((product, Some(store_name))) => {
                let store = Store {
                    id: product.store_id.clone(),
                    name: store_name,
                };
                return Ok((product, store));
            }
            Some((product, None)) => product,
            None => self.fetch_product(conn, product_id).await?,
        };
        let store = self.store(conn, &product.store_id).await?;
        Ok((product, store))
    }

    /// The product from the cache, else from the stores service (cached in this transaction).
    async fn product(&self, conn: &mut PgConnection, id: &str) -> Result<Product, Error> {
        if id.trim().is_empty() {
            // No product has a blank id: no need to ask.
            return Err(Error::ProductNotFound);
        }
        if let Some(product) = postgres::find_product(conn, id).await? {
            return Ok(product);
        }
        self.fetch_product(conn, id).await
    }

    /// Product `id` from the stores service (the cache did not have it), cached in this
    /// transaction.
    async fn fetch_product(&self, conn: &mut PgConnection, id: &str) -> Result<Product, Error> {
        let query = GetProduct { id: id.to_owned() };
        let answer = self
            .bus
            .query(&query, self.lookup_timeout)
            .await
            .map_err(|e| Error::ProductLookup(e.to_string()))?;
        let found = answer.product.ok_or(Error::ProductNotFound)?;
        if !found.price.is_finite() {
            return Err(Error::ProductLookup(format!(
                "product {id} has the price {}",
                found.price
            )));
        }
        let product = Product {
            id: id.to_owned(),
            store_id: found.store_id,
            name: found.name,
            price: found.price,
        };
        postgres::apply(conn, &CacheUpdate::AddProduct(product.clone())).await?;
        Ok(product)
    }

    /// The store from the cache, else from the stores service (cached in this transaction).
    async fn store(&self, conn: &mut PgConnection, id: &str) -> Result<Store, Error> {
        if id.trim().is_empty() {
            return Err(Error::StoreNotFound);
        }
        if let Some(store) = postgres::find_store(conn, id).await? {
            return Ok(store);
        }
        let query = GetStore { id: id.to_owned() };
        let answer = self
            .bus
            .query(&query, self.lookup_timeout)
            .await
            .map_err(|e| Error::StoreLookup(e.to_string()))?;
        let found = answer.store.ok_or(Error::StoreNotFound)?;
        let store = Store {
            id: id.to_owned(),
            name: found.name,
        };
        postgres::apply(conn, &CacheUpdate::AddStore(store.clone())).await?;
        Ok(store)
    }
}

/// Runs a unit of work again while it loses optimistic-concurrency races, a bounded number of
/// times; each run reloads the basket and decides anew.
async fn retrying<F, Fut>(mut unit: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut attempt = 1;
    loop {
        match unit().await {
            Err(Error::Concurrency) if attempt < CONFLICT_ATTEMPTS => attempt += 1,
            outcome => return outcome,
        }
    }
}

/// The integration event of a checkout: the whole basket, so ordering needs no lookup.
pub fn checked_out_event(id: &str, basket: &Basket) -> api::BasketCheckedOut {
    api::BasketCheckedOut {
        id: id.to_owned(),
        customer_id: basket.customer_id().to_owned(),
        payment_id: basket.payment_id().to_owned(),
        items: basket
            .items()
            .iter()
            .map(|item| api::basket_checked_out::Item {
                store_id: item.store_id.clone(),
                product_id: item.product_id.clone(),
                store_name: item.store_name.clone(),
                product_name: item.product_name.clone(),
                price: item.product_price,
                quantity: item.quantity,
            })
            .collect(),
    }
}
