//! The payments use cases behind the REST API: authorize a payment, pay an invoice. Each runs
//! in one transaction; paying writes the new status and the `InvoicePaid` event together.

use contracts::payments::v1 as api;
use messaging::Bus;
use persistence::outbox;
use sqlx::PgPool;

use crate::domain::{InvoiceError, InvoiceEvent, Payment, PaymentError};
use crate::postgres;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No invoice has the id.
    #[error("invoice {0} not found")]
    InvoiceNotFound(String),
    /// The payment was refused.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The invoice refused the change.
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox write failed.
    #[error(transparent)]
    Persistence(#[from] persistence::Error),
}

/// The payments service: its pool and the bus that names its messages.
#[derive(Debug, Clone)]
pub struct Payments {
    pool: PgPool,
    bus: Bus,
}

impl Payments {
    /// The service on `pool` (schema `payments`), building envelopes with `bus`.
    pub fn new(pool: PgPool, bus: Bus) -> Self {
        Payments { pool, bus }
    }

    /// Records a payment authorization; returns its new id. Publishes nothing: the id travels
    /// with the checkout, and the saga confirms it later.
    pub async fn authorize_payment(
        &self,
        customer_id: String,
        amount: f64,
    ) -> Result<String, AppError> {
        let payment = Payment::authorize(uuid::Uuid::new_v4().to_string(), customer_id, amount)?;
        let mut conn = self.pool.acquire().await?;
        postgres::insert_payment(&mut conn, &payment).await?;
        Ok(payment.id)
    }

    /// Pays a pending invoice and announces it, so ordering completes the order.
    pub async fn pay_invoice(&self, id: &str) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await?;
        let mut invoice = postgres::find_invoice_for_update(&mut tx, id)
            .await?
            .ok_or_else(|| AppError::InvoiceNotFound(id.to_owned()))?;
        let event = invoice.pay()?;
        postgres::update_invoice_status(&mut tx, &invoice).await?;
        if let InvoiceEvent::Paid { id, order_id } = event {
            outbox::enqueue(
                &mut tx,
                &[self.bus.event(&api::InvoicePaid { id, order_id })],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
