//! The `payments` and `invoices` tables. Functions run on the caller's connection (usually
//! inside its transaction) and speak in domain types. Amounts are stored as `numeric` (exact,
//! unbounded) and cross the boundary as `float8`, the API's type.

use sqlx::PgConnection;

use crate::domain::{Invoice, InvoiceStatus, Payment};

#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: String,
    customer_id: String,
    amount: f64,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: String,
    order_id: String,
    amount: f64,
    status: String,
}

impl TryFrom<InvoiceRow> for Invoice {
    type Error = sqlx::Error;

    fn try_from(row: InvoiceRow) -> Result<Self, Self::Error> {
        let status = InvoiceStatus::parse(&row.status).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("invoice {} has an unknown status {:?}", row.id, row.status).into(),
            )
        })?;
        Ok(Invoice {
            id: row.id,
            order_id: row.order_id,
            amount: row.amount,
            status,
        })
    }
}

/// Inserts a new payment authorization.
pub async fn insert_payment(conn: &mut PgConnection, payment: &Payment) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payments (id, customer_id, amount) VALUES ($1, $2, $3::float8::numeric)",
    )
    .bind(&payment.id)
    .bind(&payment.customer_id)
    .bind(payment.amount)
    .execute(conn)
    .await?;
    Ok(())
}

/// The payment `id`, if there is one.
pub async fn find_payment(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Payment>> {
    let row: Option<PaymentRow> = sqlx::query_as(
        "SELECT id, customer_id, amount::float8 AS amount FROM payments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Payment {
        id: r.id,
        customer_id: r.customer_id,
        amount: r.amount,
    }))
}

/// Inserts a new invoice unless one with its id exists; returns whether it was inserted. An
/// order readied twice therefore keeps its first invoice, whatever happened to it since.
pub async fn insert_invoice_once(conn: &mut PgConnection, invoice: &Invoice) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO invoices (id, order_id, amount, status)
         VALUES ($1, $2, $3::float8::numeric, $4)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&invoice.id)
    .bind(&invoice.order_id)
    .bind(invoice.amount)
    .bind(invoice.status.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The invoice `id`, locked until the transaction ends, so a payment and a cancellation of one
/// invoice are decided one after the other.
pub async fn find_invoice_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> sqlx::Result<Option<Invoice>> {
    let row: Option<InvoiceRow> = sqlx::query_as(
        "SELECT id, order_id, amount::float8 AS amount, status FROM invoices
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Invoice::try_from).transpose()
}

/// Writes an invoice's new status.
pub async fn update_invoice_status(conn: &mut PgConnection, invoice: &Invoice) -> sqlx::Result<()> {
    sqlx::query("UPDATE invoices SET status = $2, updated_at = now() WHERE id = $1")
        .bind(&invoice.id)
        .bind(invoice.status.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
