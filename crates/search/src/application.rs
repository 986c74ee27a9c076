//! The use cases: keep the name caches, index orders, follow their status, and answer searches.
//!
//! Every message is handled in one transaction that starts with its inbox record. Indexing an
//! order first resolves every name (caches, else a query to the owning service) without holding
//! a transaction open across the network, then writes the answers to the caches and the order
//! row together.

use std::time::Duration;

use contracts::customers::v1::GetCustomer;
use contracts::ordering::v1::OrderCreated;
use contracts::stores::v1::{GetProduct, GetStore};
use messaging::{Bus, Envelope, HandlerError};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::domain::query::{Cursor, Filters, QueryError, RawFilters, page_limit};
use crate::domain::{IndexedOrder, Item, OrderStatus};
use crate::postgres::{self, OrderRow};

/// Why handling a message failed, sorted by what a retry can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database failed: retry.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The inbox failed (a database error too): retry.
    #[error("inbox: {0}")]
    Inbox(#[from] persistence::Error),
    /// A name lookup failed (nobody answers, timeout, the responder's own failure).
    #[error("asking for {what}: {source}")]
    Lookup {
        /// What was asked (`customer <id>`...).
        what: String,
        /// What went wrong.
        source: messaging::Error,
    },
    /// The message is unusable: dead-letter it.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl AppError {
    /// Retry what may succeed later (a missing responder is retried with back-off, never a
    /// crash); dead-letter what never will.
    pub fn into_handler_error(self) -> HandlerError {
        let permanent = match &self {
            AppError::Database(_) | AppError::Inbox(_) => false,
            AppError::Lookup { source, .. } => matches!(source, messaging::Error::Malformed(_)),
            AppError::Invalid(_) => true,
        };
        if permanent {
            HandlerError::permanent(self)
        } else {
            HandlerError::retryable(self)
        }
    }
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Bad filters, limit or cursor (400).
    #[error(transparent)]
    Invalid(#[from] QueryError),
    /// The database failed (500).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// One page of results.
#[derive(Debug)]
pub struct Page {
    /// The orders, newest first.
    pub orders: Vec<OrderRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Names learnt from other services while resolving an order, cached with the order row.
#[derive(Debug, Default)]
struct Learnt {
    customers: Vec<(String, String)>,
    stores: Vec<(String, String)>,
    /// (id, store id, name).
    products: Vec<(String, String, String)>,
}

/// The application service: what message handlers and REST handlers call.
#[derive(Clone)]
pub struct Indexer {
    pool: PgPool,
    bus: Bus,
    lookup_timeout: Duration,
}

impl Indexer {
    /// An indexer on `pool`, asking other services over `bus`, waiting `lookup_timeout` for
    /// each answer.
    pub fn new(pool: PgPool, bus: Bus, lookup_timeout: Duration) -> Self {
        Indexer {
            pool,
            bus,
            lookup_timeout,
        }
    }

    /// Runs `write` once per message: in a transaction with the message's inbox record.
    async fn once<W>(&self, envelope: &Envelope, consumer: &str, write: W) -> Result<(), AppError>
    where
        W: AsyncFnOnce(&mut PgConnection) -> Result<(), AppError>,
    {
        let mut tx = self.pool.begin().await?;
        if persistence::inbox::record(&mut tx, envelope, consumer).await? {
            write(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `CustomerRegistered`.
    pub async fn customer_registered(
        &self,
        id: &str,
        name: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "customer id")?;
        self.once(env, consumer, async |c| {
            Ok(postgres::insert_customer(c, id, name).await?)
        })
        .await
    }

    /// `StoreCreated`.
    pub async fn store_created(
        &self,
        id: &str,
        name: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "store id")?;
        self.once(env, consumer, async |c| {
            Ok(postgres::insert_store(c, id, name).await?)
        })
        .await
    }

    /// `StoreRebranded`.
    pub async fn store_rebranded(
        &self,
        id: &str,
        name: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "store id")?;
        self.once(env, consumer, async |c| {
            Ok(postgres::rename_store(c, id, name).await?)
        })
        .await
    }

    /// `ProductAdded`.
    pub async fn product_added(
        &self,
        id: &str,
        store_id: &str,
        name: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "product id")?;
        self.once(env, consumer, async |c| {
            Ok(postgres::insert_product(c, id, store_id, name).await?)
        })
        .await
    }

    /// `ProductRebranded`.
    pub async fn product_rebranded(
        &self,
        id: &str,
        name: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "product id")?;
        self.once(env, consumer, async |c| {
            if !postgres::rebrand_product(c, id, name).await? {
                tracing::debug!(product_id = id, "rebrand of an uncached product");
            }
            Ok(())
        })
        .await
    }

    /// `ProductRemoved`.
    pub async fn product_removed(
        &self,
        id: &str,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let id = required(id, "product id")?;
        self.once(env, consumer, async |c| {
            Ok(postgres::remove_product(c, id).await?)
        })
        .await
    }

    /// `OrderCreated`: index the order with every name resolved, created at the event's send
    /// time, with the status that may have arrived before it.
    pub async fn order_created(
        &self,
        event: &OrderCreated,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let order_id = required(&event.id, "order id")?;
        // Indexed already (a redelivery, or another OrderCreated for the same order): the first
        // one stands, and nothing needs resolving — which also spares asking services that may
        // be down.
        if postgres::order_exists(&self.pool, order_id).await? {
            return self
                .once(env, consumer, async |_| {
                    tracing::info!(
                        order_id,
                        "order indexed already; this OrderCreated changes nothing"
                    );
                    Ok(())
                })
                .await;
        }
        let created_at = env.sent_at().unwrap_or_else(|| {
            tracing::warn!(order_id, message_id = %env.id, "OrderCreated without a readable Sent-At; indexing it as created now");
            OffsetDateTime::now_utc()
        });
        let mut learnt = Learnt::default();
        let customer_name = self.customer_name(&event.customer_id, &mut learnt).await?;
        // What the cache knows about the order's products and stores, in two queries on one
        // connection. Missing products are asked of the stores service; a store not asked for
        // here (the store of such a product) is looked up in the cache first, then asked.
        let (cached_products, mut stores) = {
            let known = |id: &&str| !id.trim().is_empty();
            let product_ids: Vec<&str> = event
                .items
                .iter()
                .map(|l| l.product_id.as_str())
                .filter(known)
                .collect();
            let mut conn = self.pool.acquire().await?;
            let products = postgres::products(&mut *conn, &product_ids).await?;
            let store_ids: Vec<&str> = event
                .items
                .iter()
                .map(|l| l.store_id.as_str())
                .chain(products.values().map(|(store_id, _)| store_id.as_str()))
                .filter(known)
                .collect();
            let stores = postgres::store_names(&mut *conn, &store_ids).await?;
            (products, stores)
        };
        let mut items = Vec::with_capacity(event.items.len());
        for line in &event.items {
            let (product_store, product_name) = match cached_products.get(&line.product_id) {
                Some(found) => found.clone(),
                None => self.product(&line.product_id, &mut learnt).await?,
            };
            // The order's own store id is authoritative; the product's is the fallback.
            let store_id = if line.store_id.trim().is_empty() {
                product_store
            } else {
                line.store_id.clone()
            };
            let store_name = match stores.get(&store_id) {
                Some(name) => name.clone(),
                None => {
                    let name = self.store_name(&store_id, &mut learnt).await?;
                    stores.insert(store_id.clone(), name.clone());
                    name
                }
            };
            items.push(Item {
                product_id: line.product_id.clone(),
                store_id,
                product_name,
                store_name,
                price: line.price,
                quantity: i64::from(line.quantity),
            });
        }

        let mut tx = self.pool.begin().await?;
        if !persistence::inbox::record(&mut tx, env, consumer).await? {
            tx.commit().await?;
            return Ok(());
        }
        for (id, name) in &learnt.customers {
            postgres::insert_customer(&mut tx, id, name).await?;
        }
        for (id, name) in &learnt.stores {
            postgres::insert_store(&mut tx, id, name).await?;
        }
        for (id, store_id, name) in &learnt.products {
            postgres::insert_product(&mut tx, id, store_id, name).await?;
        }
        postgres::lock_order(&mut tx, order_id).await?;
        let early = postgres::take_pending_status(&mut tx, order_id)
            .await?
            .and_then(|s| OrderStatus::parse(&s));
        let status = early.map_or(OrderStatus::New, |s| OrderStatus::New.advance(s));
        let order = IndexedOrder::new(
            order_id.to_owned(),
            event.customer_id.clone(),
            customer_name,
            items,
            status,
            created_at,
        );
        if !postgres::insert_order(&mut tx, &order).await? {
            tracing::info!(
                order_id,
                "order indexed already; this OrderCreated changes nothing"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// A status event: applied to the indexed order, or kept until the order is indexed (status
    /// events of one order are ordered after its `OrderCreated`, but that one may be retried or
    /// even dead-lettered, and the status must survive that).
    pub async fn status_changed(
        &self,
        order_id: &str,
        incoming: OrderStatus,
        env: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let order_id = required(order_id, "order id")?;
        self.once(env, consumer, async |c| {
            postgres::lock_order(c, order_id).await?;
            if let Some(current) = postgres::order_status(c, order_id).await? {
                let current = OrderStatus::parse(&current).unwrap_or(OrderStatus::New);
                let next = current.advance(incoming);
                if next != current {
                    postgres::set_status(c, order_id, next).await?;
                } else if next != incoming {
                    tracing::debug!(order_id, %current, %incoming, "stale status ignored");
                }
            } else {
                let pending = postgres::pending_status(c, order_id)
                    .await?
                    .and_then(|s| OrderStatus::parse(&s));
                let next = pending.map_or(incoming, |p| p.advance(incoming));
                postgres::set_pending_status(c, order_id, next).await?;
                tracing::info!(order_id, status = %next, "status kept until the order is indexed");
            }
            Ok(())
        })
        .await
    }

    /// The customer's name: cache, else the customers service; empty when unknown.
    async fn customer_name(&self, id: &str, learnt: &mut Learnt) -> Result<String, AppError> {
        if id.trim().is_empty() {
            return Ok(String::new());
        }
        if let Some(name) = postgres::customer_name(&self.pool, id).await? {
            return Ok(name);
        }
        let answer = self
            .ask(&GetCustomer { id: id.to_owned() }, || {
                format!("customer {id}")
            })
            .await?;
        match answer.customer {
            Some(c) => {
                learnt.customers.push((id.to_owned(), c.name.clone()));
                Ok(c.name)
            }
            None => {
                tracing::warn!(customer_id = id, "unknown customer; indexed without a name");
                Ok(String::new())
            }
        }
    }

    /// The product's (store id, name) for one the cache did not have: from what this order
    /// already learnt, else the stores service; empty when unknown.
    async fn product(&self, id: &str, learnt: &mut Learnt) -> Result<(String, String), AppError> {
        if id.trim().is_empty() {
            return Ok((String::new(), String::new()));
        }
        if let Some(found) = learnt.products.iter().find(|(p, _, _)| p == id) {
            return Ok((found.1.clone(), found.2.clone()));
        }
        let answer = self
            .ask(&GetProduct { id: id.to_owned() }, || {
                format!("product {id}")
            })
            .await?;
        match answer.product {
            Some(p) => {
                learnt
                    .products
                    .push((id.to_owned(), p.store_id.clone(), p.name.clone()));
                Ok((p.store_id, p.name))
            }
            None => {
                tracing::warn!(product_id = id, "unknown product; indexed without a name");
                Ok((String::new(), String::new()))
            }
        }
    }

    /// The store's name: cache, else the stores service; empty when unknown.
    async fn store_name(&self, id: &str, learnt: &mut Learnt) -> Result<String, AppError> {
        if id.trim().is_empty() {
            return Ok(String::new());
        }
        if let Some(name) = postgres::store_name(&self.pool, id).await? {
            return Ok(name);
        }
        let answer = self
            .ask(&GetStore { id: id.to_owned() }, || format!("store {id}"))
            .await?;
        match answer.store {
            Some(s) => {
                learnt.stores.push((id.to_owned(), s.name.clone()));
                Ok(s.name)
            }
            None => {
                tracing::warn!(store_id = id, "unknown store; indexed without a name");
                Ok(String::new())
            }
        }
    }

    async fn ask<Q: messaging::Query>(
        &self,
        query: &Q,
        what: impl FnOnce() -> String,
    ) -> Result<Q::Response, AppError> {
        self.bus
            .query(query, self.lookup_timeout)
            .await
            .map_err(|source| AppError::Lookup {
                what: what(),
                source,
            })
    }

    /// One indexed order.
    pub async fn get_order(&self, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        postgres::get_order(&self.pool, order_id).await
    }

    /// A page of orders matching `raw` filters, after the `next` cursor.
    pub async fn search(
        &self,
        raw: &RawFilters,
        next: &str,
        limit: i64,
    ) -> Result<Page, SearchError> {
        let filters = Filters::parse(raw)?;
        let cursor = Cursor::decode(next)?;
        let limit = page_limit(limit)?;
        // One row more than asked tells whether another page exists.
        let mut orders = postgres::search(&self.pool, &filters, cursor.as_ref(), limit + 1).await?;
        let more = orders.len() as i64 > limit;
        orders.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = more.then(|| orders.last()).flatten().map(|last| Cursor {
            created_at: last.created_at,
            order_id: last.order_id.clone(),
        });
        Ok(Page { orders, next })
    }
}

/// A required id: blank means the message is malformed.
fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, AppError> {
    let v = value.trim();
    if v.is_empty() {
        Err(AppError::Invalid(format!("the event has no {what}")))
    } else {
        Ok(v)
    }
}
