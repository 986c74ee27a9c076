//! The use cases of the stores service.
//!
//! A command is one transaction: load the aggregate, let the domain decide, append the events
//! (optimistic concurrency), project them into the mall/catalogue read models and enqueue the
//! integration events in the outbox, commit. If another request appended to the same stream
//! first, the whole unit of work runs again on the fresh state (a few times) instead of failing
//! the request as the original did (weaknesses.md F3). Reads go to the read models.

use contracts::stores::v1 as api;
use messaging::{Bus, Envelope};
use persistence::{Aggregate, EventStore, SnapshotPolicy, outbox};
use sqlx::{PgConnection, PgPool};

use crate::domain::{Product, ProductError, ProductEvent, Store, StoreError, StoreEvent};
use crate::postgres::{self, ProductRow, StoreRow};

/// The original's text for an unknown store (it leaked the driver error); kept because clients
/// match on messages, now with status 404 instead of 500.
pub const STORE_NOT_FOUND: &str = "scanning store: sql: no rows in result set";
/// The original's text for an unknown product.
pub const PRODUCT_NOT_FOUND: &str = "product with that ID does not exist";
/// Adding a product to a store that does not exist (the original did not check).
pub const PRODUCT_STORE_NOT_FOUND: &str = "store with that ID does not exist";
/// The context the original put before the errors of adding a product.
const ADD_PRODUCT_CONTEXT: &str = "initializing product";

/// How often a command runs at most when it keeps losing the race for its stream before giving
/// up with a conflict. Each retry reloads; concurrent writers of one stream commit one per
/// round, so this many attempts lets a burst of that many writers all succeed.
const MAX_ATTEMPTS: u32 = 10;

/// Snapshot stores and products every 50 events: they are long-lived but rarely change, so this
/// bounds the replay without a snapshot write on every few commands.
const SNAPSHOT_EVERY: u32 = 50;

/// Why a use case failed, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is invalid or the domain refused it: fix the request.
    #[error("{0}")]
    Invalid(String),
    /// The addressed store or product does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state changed under the request too often: try again.
    #[error("{0}")]
    Conflict(String),
    /// Our failure (database, corrupt history): logged, answered with a 500.
    #[error("{0:#}")]
    Unexpected(anyhow::Error),
}

impl AppError {
    /// Prefixes the client-facing message with context, as the original composed messages.
    fn context(self, context: &str) -> Self {
        match self {
            AppError::Invalid(m) => AppError::Invalid(format!("{context}: {m}")),
            AppError::NotFound(m) => AppError::NotFound(format!("{context}: {m}")),
            AppError::Conflict(m) => AppError::Conflict(format!("{context}: {m}")),
            unexpected @ AppError::Unexpected(_) => unexpected,
        }
    }

    /// An unknown store.
    pub fn store_not_found() -> Self {
        AppError::NotFound(STORE_NOT_FOUND.to_owned())
    }

    /// An unknown product.
    pub fn product_not_found() -> Self {
        AppError::NotFound(PRODUCT_NOT_FOUND.to_owned())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Unexpected(anyhow::Error::new(e))
    }
}

impl From<persistence::Error> for AppError {
    fn from(e: persistence::Error) -> Self {
        AppError::Unexpected(anyhow::Error::new(e))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::store_not_found(),
            StoreError::AlreadyExists => AppError::Conflict(e.to_string()),
            StoreError::BlankName
            | StoreError::BlankLocation
            | StoreError::AlreadyParticipating
            | StoreError::AlreadyNotParticipating => AppError::Invalid(e.to_string()),
        }
    }
}

impl From<ProductError> for AppError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::NotFound => AppError::product_not_found(),
            ProductError::AlreadyExists => AppError::Conflict(e.to_string()),
            ProductError::BlankName
            | ProductError::NegativePrice
            | ProductError::PriceNotFinite
            | ProductError::WouldDecrease
            | ProductError::WouldIncrease => AppError::Invalid(e.to_string()),
        }
    }
}

/// The fields of a new product.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewProduct {
    /// Required, not blank.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Free text.
    pub sku: String,
    /// Finite and not negative.
    pub price: f64,
}

/// The stores service's use cases over its database and bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stores {
    pool: PgPool,
    events: EventStore,
    bus: Bus,
}

impl Stores {
    /// Use cases on `pool` (the `stores` schema), announcing changes through the outbox as
    /// envelopes built for `bus`'s prefix.
    pub fn new(pool: PgPool, bus: Bus) -> Self {
        let events = EventStore::new()
            .with_snapshots(Store::TYPE, SnapshotPolicy::Every(SNAPSHOT_EVERY))
            .with_snapshots(Product::TYPE, SnapshotPolicy::Every(SNAPSHOT_EVERY));
        Stores { pool, events, bus }
    }

    /// Opens a store; returns its new id.
    pub async fn create_store(&self, name: &str, location: &str) -> Result<String, AppError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.store_command(&id, |store| store.create(name, location))
            .await?;
        Ok(id)
    }

    /// Makes a store participate.
    pub async fn enable_participation(&self, id: &str) -> Result<(), AppError> {
        self.store_command(id, Store::enable_participation).await
    }

    /// Ends a store's participation.
    pub async fn disable_participation(&self, id: &str) -> Result<(), AppError> {
        self.store_command(id, Store::disable_participation).await
    }

    /// Renames a store.
    pub async fn rebrand_store(&self, id: &str, name: &str) -> Result<(), AppError> {
        self.store_command(id, |store| store.rebrand(name)).await
    }

    /// Adds a product to an existing store's catalogue; returns the product's new id.
    ///
    /// The fields are validated first, then the store's existence, so a request that is wrong
    /// in both ways gets the validation message the original gave.
    pub async fn add_product(&self, store_id: &str, new: &NewProduct) -> Result<String, AppError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.product_command(&id, Some(store_id), |product| {
            product
                .add(store_id, &new.name, &new.description, &new.sku, new.price)
                .map_err(|e| AppError::from(e).context(ADD_PRODUCT_CONTEXT))
        })
        .await?;
        Ok(id)
    }

    /// Renames a product and replaces its description.
    pub async fn rebrand_product(
        &self,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<(), AppError> {
        self.product_command(id, None, |product| Ok(product.rebrand(name, description)?))
            .await
    }

    /// Raises a product's price to `price`.
    pub async fn increase_price(&self, id: &str, price: f64) -> Result<(), AppError> {
        self.product_command(id, None, |product| Ok(product.increase_price(price)?))
            .await
    }

    /// Lowers a product's price to `price`.
    pub async fn decrease_price(&self, id: &str, price: f64) -> Result<(), AppError> {
        self.product_command(id, None, |product| Ok(product.decrease_price(price)?))
            .await
    }

    /// Takes a product out of the catalogue.
    pub async fn remove_product(&self, id: &str) -> Result<(), AppError> {
        self.product_command(id, None, |product| Ok(product.remove()?))
            .await
    }

    /// One store, `None` if unknown.
    pub async fn find_store(&self, id: &str) -> Result<Option<StoreRow>, AppError> {
        Ok(postgres::find_store(&self.pool, id).await?)
    }

    /// Every store of the mall.
    pub async fn stores(&self) -> Result<Vec<StoreRow>, AppError> {
        Ok(postgres::all_stores(&self.pool).await?)
    }

    /// The participating stores.
    pub async fn participating_stores(&self) -> Result<Vec<StoreRow>, AppError> {
        Ok(postgres::participating_stores(&self.pool).await?)
    }

    /// One product, `None` if unknown or removed.
    pub async fn find_product(&self, id: &str) -> Result<Option<ProductRow>, AppError> {
        Ok(postgres::find_product(&self.pool, id).await?)
    }

    /// A store's catalogue (empty for an unknown store, as the original answered).
    pub async fn catalog(&self, store_id: &str) -> Result<Vec<ProductRow>, AppError> {
        Ok(postgres::catalog(&self.pool, store_id).await?)
    }

    /// Runs one command on store `id` (see the module header).
    async fn store_command<F>(&self, id: &str, decide: F) -> Result<(), AppError>
    where
        F: Fn(&Store) -> Result<Vec<StoreEvent>, StoreError> + Send + Sync,
    {
        let mut attempt = 1;
        loop {
            let mut tx = self.pool.begin().await?;
            let mut loaded = self.events.load::<Store>(&mut tx, id).await?;
            let events = decide(&loaded.state)?;
            match self.events.save(&mut tx, &mut loaded, &events).await {
                Ok(()) => {}
                Err(persistence::Error::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(store = id, attempt, "store changed concurrently, retrying");
                    drop(tx);
                    retry_pause(attempt).await;
                    attempt += 1;
                    continue;
                }
                Err(persistence::Error::Conflict { .. }) => {
                    return Err(AppError::Conflict(
                        "the store is being changed by other requests; try again".to_owned(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            let outgoing = project_store(&mut tx, &self.bus, id, &events).await?;
            outbox::enqueue(&mut tx, &outgoing).await?;
            tx.commit().await?;
            return Ok(());
        }
    }

    /// Runs one command on product `id` (see the module header). With `store`, the command
    /// also needs that store to exist (checked after the domain accepted the command).
    async fn product_command<F>(
        &self,
        id: &str,
        store: Option<&str>,
        decide: F,
    ) -> Result<(), AppError>
    where
        F: Fn(&Product) -> Result<Vec<ProductEvent>, AppError> + Send + Sync,
    {
        let mut attempt = 1;
        loop {
            let mut tx = self.pool.begin().await?;
            let mut loaded = self.events.load::<Product>(&mut tx, id).await?;
            let events = decide(&loaded.state)?;
            if let Some(store_id) = store
                && !postgres::store_exists(&mut tx, store_id).await?
            {
                return Err(AppError::NotFound(PRODUCT_STORE_NOT_FOUND.to_owned()));
            }
            match self.events.save(&mut tx, &mut loaded, &events).await {
                Ok(()) => {}
                Err(persistence::Error::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(
                        product = id,
                        attempt,
                        "product changed concurrently, retrying"
                    );
                    drop(tx);
                    retry_pause(attempt).await;
                    attempt += 1;
                    continue;
                }
                Err(persistence::Error::Conflict { .. }) => {
                    return Err(AppError::Conflict(
                        "the product is being changed by other requests; try again".to_owned(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            let outgoing = project_product(&mut tx, &self.bus, id, &events).await?;
            outbox::enqueue(&mut tx, &outgoing).await?;
            tx.commit().await?;
            return Ok(());
        }
    }
}

/// A short, jittered pause before running a command again, so writers that lost the same race
/// do not all collide again at once. The transaction is dropped (rolled back) before it.
async fn retry_pause(attempt: u32) {
    let jitter = uuid::Uuid::new_v4().as_u64_pair().0 % 5;
    let millis = u64::from(attempt) * 2 + jitter;
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
}

/// Applies store events to the mall and returns the integration events announcing them.
async fn project_store(
    conn: &mut PgConnection,
    bus: &Bus,
    id: &str,
    events: &[StoreEvent],
) -> Result<Vec<Envelope>, AppError> {
    let mut outgoing = Vec::with_capacity(events.len());
    for event in events {
        let envelope = match event {
            StoreEvent::Created { name, location } => {
                postgres::insert_store(conn, id, name, location).await?;
                bus.event(&api::StoreCreated {
                    id: id.to_owned(),
                    name: name.clone(),
                    location: location.clone(),
                })
            }
            StoreEvent::ParticipationEnabled | StoreEvent::ParticipationDisabled => {
                let participating = matches!(event, StoreEvent::ParticipationEnabled);
                postgres::set_participation(conn, id, participating).await?;
                bus.event(&api::StoreParticipationToggled {
                    id: id.to_owned(),
                    participating,
                })
            }
            StoreEvent::Rebranded { name } => {
                postgres::rename_store(conn, id, name).await?;
                bus.event(&api::StoreRebranded {
                    id: id.to_owned(),
                    name: name.clone(),
                })
            }
        };
        outgoing.push(envelope);
    }
    Ok(outgoing)
}

/// Applies product events to the catalogue and returns the integration events announcing them.
async fn project_product(
    conn: &mut PgConnection,
    bus: &Bus,
    id: &str,
    events: &[ProductEvent],
) -> Result<Vec<Envelope>, AppError> {
    let mut outgoing = Vec::with_capacity(events.len());
    for event in events {
        let envelope = match event {
            ProductEvent::Added {
                store_id,
                name,
                description,
                sku,
                price,
            } => {
                let row = ProductRow {
                    id: id.to_owned(),
                    store_id: store_id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    sku: sku.clone(),
                    price: *price,
                };
                postgres::insert_product(conn, &row).await?;
                bus.event(&api::ProductAdded {
                    id: row.id,
                    store_id: row.store_id,
                    name: row.name,
                    description: row.description,
                    sku: row.sku,
                    price: row.price,
                })
            }
            ProductEvent::Rebranded { name, description } => {
                postgres::rebrand_product(conn, id, name, description).await?;
                bus.event(&api::ProductRebranded {
                    id: id.to_owned(),
                    name: name.clone(),
                    description: description.clone(),
                })
            }
            ProductEvent::PriceIncreased { delta, price } => {
                postgres::set_price(conn, id, *price).await?;
                bus.event(&api::ProductPriceIncreased {
                    id: id.to_owned(),
                    delta: *delta,
                    price: *price,
                })
            }
            ProductEvent::PriceDecreased { delta, price } => {
                postgres::set_price(conn, id, *price).await?;
                bus.event(&api::ProductPriceDecreased {
                    id: id.to_owned(),
                    delta: *delta,
                    price: *price,
                })
            }
            ProductEvent::Removed => {
                postgres::delete_product(conn, id).await?;
                bus.event(&api::ProductRemoved { id: id.to_owned() })
            }
        };
        outgoing.push(envelope);
    }
    Ok(outgoing)
}
