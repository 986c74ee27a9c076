//! The depot's use cases: make a shopping list (looking up stores and products), and move a
//! list through its life, publishing ShoppingListCompleted through the outbox.
//!
//! Lookups read the local caches and, on a miss, ask the stores service over NATS
//! (`stores.v1.GetStore` / `GetProduct`, weaknesses.md A9: the original asked its own gRPC
//! address); what the answer brings is cached in the transaction that saves the list.
//! Lookups run before that transaction opens, so no database transaction waits on the network.

use std::collections::HashMap;
use std::time::Duration;

use contracts::depot::v1::ShoppingListCompleted;
use contracts::stores::v1::{GetProduct, GetStore};
use messaging::{Bus, Envelope};
use persistence::outbox;
use sqlx::{PgConnection, PgPool};

use crate::domain::{
    Change, ListError, ListEvent, PlannedItem, ProductInfo, RequestedItem, ShoppingList, StoreInfo,
    check_request,
};
use crate::postgres::{self, StorageError};

/// How long one stores query may take before the lookup counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a store or product could not be looked up. The texts are the original's.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Neither the cache nor the stores service knows the store.
    #[error("store fallback failed")]
    StoreNotFound {
        /// The store asked for.
        id: String,
    },
    /// The stores service did not answer (timeout, no responder, its own failure).
    #[error("store fallback failed")]
    StoreUnavailable {
        /// The store asked for.
        id: String,
        /// What went wrong.
        source: messaging::Error,
    },
    /// Neither the cache nor the stores service knows the product.
    #[error("product fallback failed")]
    ProductNotFound {
        /// The product asked for.
        id: String,
    },
    /// The stores service did not answer.
    #[error("product fallback failed")]
    ProductUnavailable {
        /// The product asked for.
        id: String,
        /// What went wrong.
        source: messaging::Error,
    },
}

impl LookupError {
    /// Whether asking again later may succeed (the stores service was unreachable), rather
    /// than the id being unknown.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LookupError::StoreUnavailable { .. } | LookupError::ProductUnavailable { .. }
        )
    }

    /// The cause, for logs.
    pub fn detail(&self) -> String {
        match self {
            LookupError::StoreNotFound { id } => format!("store {id:?} not found"),
            LookupError::ProductNotFound { id } => format!("product {id:?} not found"),
            LookupError::StoreUnavailable { id, source } => format!("store {id:?}: {source}"),
            LookupError::ProductUnavailable { id, source } => {
                format!("product {id:?}: {source}")
            }
        }
    }
}

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The list refused (a domain rule), or the request was invalid.
    #[error(transparent)]
    Domain(#[from] ListError),
    /// No list has that id. The text is the original's (spec api.md §2.5), kept for clients
    /// that match on it; the status is now 404 instead of 500.
    #[error("sql: no rows in result set")]
    NotFound,
    /// A store or product could not be looked up.
    #[error("building shopping list: {0}")]
    Lookup(#[from] LookupError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The outbox failed.
    #[error(transparent)]
    Persistence(#[from] persistence::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Storage(e.into())
    }
}

impl AppError {
    /// Whether running the use case again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Domain(_) | AppError::NotFound => false,
            AppError::Lookup(e) => e.is_transient(),
            AppError::Storage(StorageError::UnknownStatus { .. }) => false,
            AppError::Storage(StorageError::Database(e)) => is_transient_db(e),
            AppError::Persistence(e) => e.is_retryable(),
        }
    }
}

/// Connection trouble, pool exhaustion, serialization failures and deadlocks may pass; a
/// constraint violation or a syntax error will not (the same split as the persistence crate).
fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "55P03" | "57P01" | "08006")
        ),
        _ => false,
    }
}

/// A list ready to be saved: built from looked-up stores and products, with what the lookups
/// fetched from the stores service (cached when the list is saved).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The new list (pending).
    pub list: ShoppingList,
    fetched_stores: Vec<StoreInfo>,
    fetched_products: Vec<ProductInfo>,
}

/// The depot's use cases over its pool and bus.
#[derive(Debug, Clone)]
pub struct Depot {
    pool: PgPool,
    bus: Bus,
    lookup_timeout: Duration,
}

impl Depot {
    /// Use cases on `pool` (the `depot` schema), asking and publishing through `bus`.
    pub fn new(pool: PgPool, bus: Bus) -> Self {
        Depot {
            pool,
            bus,
            lookup_timeout: LOOKUP_TIMEOUT,
        }
    }

    /// The pool (handlers open their transactions on it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks the request, looks up every store and product and builds the pending list under
    /// a fresh id. Writes nothing; the first failed lookup ends it.
    pub async fn prepare(
        &self,
        order_id: &str,
        items: Vec<RequestedItem>,
    ) -> Result<Prepared, AppError> {
        check_request(order_id, &items)?;
        // Everything the cache knows, in two queries on one connection; only misses are
        // asked of the stores service, one by one.
        let (mut stores, mut products) = {
            let known = |id: &&str| !id.trim().is_empty();
            let store_ids: Vec<&str> = items
                .iter()
                .map(|i| i.store_id.as_str())
                .filter(known)
                .collect();
            let product_ids: Vec<&str> = items
                .iter()
                .map(|i| i.product_id.as_str())
                .filter(known)
                .collect();
            let mut conn = self.pool.acquire().await?;
            let stores: HashMap<String, StoreInfo> = postgres::cached_stores(&mut conn, &store_ids)
                .await?
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect();
            let products: HashMap<String, ProductInfo> =
                postgres::cached_products(&mut conn, &product_ids)
                    .await?
                    .into_iter()
                    .map(|p| (p.id.clone(), p))
                    .collect();
            (stores, products)
        };
        let mut fetched_stores = Vec::new();
        let mut fetched_products = Vec::new();
        let mut planned = Vec::with_capacity(items.len());
        for item in items {
            let store = match stores.get(&item.store_id) {
                Some(store) => store.clone(),
                None => {
                    let store = self.fetch_store(&item.store_id).await?;
                    fetched_stores.push(store.clone());
                    stores.insert(store.id.clone(), store.clone());
                    store
                }
            };
            let product = match products.get(&item.product_id) {
                Some(product) => product.clone(),
                None => {
                    let product = self.fetch_product(&item.product_id).await?;
                    fetched_products.push(product.clone());
                    products.insert(product.id.clone(), product.clone());
                    product
                }
            };
            planned.push(PlannedItem {
                store,
                product,
                quantity: item.quantity,
            });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (list, _created) = ShoppingList::create(id, order_id, planned)?;
        Ok(Prepared {
            list,
            fetched_stores,
            fetched_products,
        })
    }

    /// Store `id` from the stores service (the cache did not have it).
    async fn fetch_store(&self, id: &str) -> Result<StoreInfo, AppError> {
        let not_found = || LookupError::StoreNotFound { id: id.to_owned() };
        if id.trim().is_empty() {
            return Err(not_found().into());
        }
        let answer = self
            .bus
            .query(&GetStore { id: id.to_owned() }, self.lookup_timeout)
            .await
            .map_err(|source| LookupError::StoreUnavailable {
                id: id.to_owned(),
                source,
            })?;
        let store = answer.store.ok_or_else(not_found)?;
        Ok(StoreInfo {
            id: id.to_owned(),
            name: store.name,
            location: store.location,
        })
    }

    /// Product `id` from the stores service (the cache did not have it).
    async fn fetch_product(&self, id: &str) -> Result<ProductInfo, AppError> {
        let not_found = || LookupError::ProductNotFound { id: id.to_owned() };
        if id.trim().is_empty() {
            return Err(not_found().into());
        }
        let answer = self
            .bus
            .query(&GetProduct { id: id.to_owned() }, self.lookup_timeout)
            .await
            .map_err(|source| LookupError::ProductUnavailable {
                id: id.to_owned(),
                source,
            })?;
        let product = answer.product.ok_or_else(not_found)?;
        Ok(ProductInfo {
            id: id.to_owned(),
            store_id: product.store_id,
            name: product.name,
        })
    }

    /// Saves a prepared list and caches what its lookups fetched, on the caller's connection.
    pub async fn save_new(
        &self,
        conn: &mut PgConnection,
        prepared: &Prepared,
    ) -> Result<(), AppError> {
        for store in &prepared.fetched_stores {
            postgres::add_store(conn, store).await?;
        }
        for product in &prepared.fetched_products {
            postgres::add_product(conn, product).await?;
        }
        postgres::insert_list(conn, &prepared.list).await?;
        Ok(())
    }

    /// Locks list `id`, applies `change`, writes it back and enqueues what other services
    /// must hear (caused by `cause` when a message asked for it). Returns the list as it is
    /// now. A refusal writes nothing.
    pub async fn change(
        &self,
        conn: &mut PgConnection,
        id: &str,
        cause: Option<&Envelope>,
        change: impl FnOnce(&mut ShoppingList) -> Change,
    ) -> Result<ShoppingList, AppError> {
        let mut list = postgres::find_list(conn, id, true)
            .await?
            .ok_or(AppError::NotFound)?;
        let events = change(&mut list)?;
        if events.is_empty() {
            return Ok(list);
        }
        postgres::update_list(conn, &list).await?;
        let envelopes: Vec<Envelope> = events
            .iter()
            .filter_map(|event| match event {
                ListEvent::Completed => Some(self.bus.event(&ShoppingListCompleted {
                    id: list.id.clone(),
                    order_id: list.order_id.clone(),
                })),
                // Only completion concerns anyone else (spec messaging.md §5.1).
                ListEvent::Created
                | ListEvent::Canceled
                | ListEvent::Initiated
                | ListEvent::Assigned { .. } => None,
            })
            .map(|env| match cause {
                Some(cause) => env.caused_by(cause),
                None => env,
            })
            .collect();
        outbox::enqueue(conn, &envelopes).await?;
        for event in &events {
            tracing::info!(list = %list.id, order = %list.order_id, ?event, "shopping list changed");
        }
        Ok(list)
    }

    /// Makes a list (REST); returns its id.
    pub async fn create_list(
        &self,
        order_id: &str,
        items: Vec<RequestedItem>,
    ) -> Result<String, AppError> {
        let prepared = self.prepare(order_id, items).await?;
        let mut tx = self.pool.begin().await?;
        self.save_new(&mut tx, &prepared).await?;
        tx.commit().await?;
        Ok(prepared.list.id)
    }

    /// Applies `change` to list `id` in a transaction of its own (REST).
    pub async fn run(
        &self,
        id: &str,
        change: impl FnOnce(&mut ShoppingList) -> Change,
    ) -> Result<ShoppingList, AppError> {
        let mut tx = self.pool.begin().await?;
        let list = self.change(&mut tx, id, None, change).await?;
        tx.commit().await?;
        Ok(list)
    }

    /// List `id`, if it exists.
    pub async fn get_list(&self, id: &str) -> Result<Option<ShoppingList>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(postgres::find_list(&mut conn, id, false).await?)
    }
}
