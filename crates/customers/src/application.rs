//! The customers use cases behind the REST API: each one opens a transaction, loads the row,
//! lets the domain decide, writes the row and enqueues the integration event in the outbox, and
//! commits — so a customer never changes without its event, nor the other way round.

use contracts::customers::v1 as api;
use messaging::{Bus, Envelope};
use persistence::outbox;
use sqlx::PgPool;

use crate::domain::{self, Customer, CustomerError, CustomerEvent};
use crate::postgres;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No customer has the id.
    #[error("customer {0} not found")]
    NotFound(String),
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] CustomerError),
    /// The database or the outbox failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox write failed.
    #[error(transparent)]
    Persistence(#[from] persistence::Error),
}

/// The customers service: its pool and the bus that names its messages.
#[derive(Debug, Clone)]
pub struct Customers {
    pool: PgPool,
    bus: Bus,
}

impl Customers {
    /// The service on `pool` (schema `customers`), building envelopes with `bus`.
    pub fn new(pool: PgPool, bus: Bus) -> Self {
        Customers { pool, bus }
    }

    /// The pool, for the message handlers.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Registers an enabled customer; returns its new id.
    pub async fn register(&self, name: String, sms_number: String) -> Result<String, AppError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (customer, event) = Customer::register(id.clone(), name, sms_number)?;
        let mut tx = self.pool.begin().await?;
        postgres::insert(&mut tx, &customer).await?;
        outbox::enqueue(&mut tx, &[self.envelope(&event)]).await?;
        tx.commit().await?;
        metrics::counter!("customers_registered_count").increment(1);
        Ok(id)
    }

    /// The customer `id`.
    pub async fn get(&self, id: &str) -> Result<Customer, AppError> {
        let mut conn = self.pool.acquire().await?;
        postgres::find(&mut conn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// Replaces the SMS number. A blank number is refused before anything is read.
    pub async fn change_sms_number(&self, id: &str, sms_number: String) -> Result<(), AppError> {
        domain::check_sms_number(&sms_number)?;
        self.change(id, |customer| customer.change_sms_number(sms_number))
            .await
    }

    /// Enables a disabled customer.
    pub async fn enable(&self, id: &str) -> Result<(), AppError> {
        self.change(id, |customer| customer.enable().map(Some))
            .await
    }

    /// Disables an enabled customer.
    pub async fn disable(&self, id: &str) -> Result<(), AppError> {
        self.change(id, |customer| customer.disable().map(Some))
            .await
    }

    /// Load (locked), decide, save, enqueue, commit. A refused command rolls back untouched.
    async fn change<F>(&self, id: &str, decide: F) -> Result<(), AppError>
    where
        F: FnOnce(&mut Customer) -> Result<Option<CustomerEvent>, CustomerError>,
    {
        let mut tx = self.pool.begin().await?;
        let mut customer = postgres::find_for_update(&mut tx, id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let Some(event) = decide(&mut customer)? else {
            return Ok(());
        };
        postgres::update(&mut tx, &customer).await?;
        outbox::enqueue(&mut tx, &[self.envelope(&event)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The integration event announcing `event`.
    fn envelope(&self, event: &CustomerEvent) -> Envelope {
        match event.clone() {
            CustomerEvent::Registered {
                id,
                name,
                sms_number,
            } => self.bus.event(&api::CustomerRegistered {
                id,
                name,
                sms_number,
            }),
            CustomerEvent::SmsChanged { id, sms_number } => {
                self.bus.event(&api::CustomerSmsChanged { id, sms_number })
            }
            CustomerEvent::Enabled { id } => self.bus.event(&api::CustomerEnabled { id }),
            CustomerEvent::Disabled { id } => self.bus.event(&api::CustomerDisabled { id }),
        }
    }
}

/// The contract's view of a customer (the GetCustomer answer).
impl From<Customer> for api::Customer {
    fn from(c: Customer) -> Self {
        api::Customer {
            id: c.id,
            name: c.name,
            sms_number: c.sms_number,
            enabled: c.enabled,
        }
    }
}
