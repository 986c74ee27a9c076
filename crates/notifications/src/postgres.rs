//! The service's tables: the customers cache and the record of sent notifications. Functions
//! that write take `&mut PgConnection` so they run inside the caller's transaction (with its
//! inbox record); reads for the REST API take the pool.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Recipient;

/// Caches a customer; an existing row wins. A registration is the oldest fact about a customer,
/// so a row already there (from a lookup, or a later SMS change) is at least as recent.
pub async fn insert_customer(
    conn: &mut PgConnection,
    id: &str,
    name: &str,
    sms_number: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO customers_cache (id, name, sms_number) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(sms_number)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a cached customer's number; returns whether the customer was cached.
pub async fn change_sms(conn: &mut PgConnection, id: &str, sms_number: &str) -> sqlx::Result<bool> {
    let changed =
        sqlx::query("UPDATE customers_cache SET sms_number = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(sms_number)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(changed > 0)
}

/// The cached customer, if any.
pub async fn find_customer(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Recipient>> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, name, sms_number FROM customers_cache WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(id, name, sms_number)| Recipient {
        id,
        name,
        sms_number,
    }))
}

/// Whether the (order, kind) notification was sent already.
pub async fn notification_exists(
    conn: &mut PgConnection,
    order_id: &str,
    kind: &str,
) -> sqlx::Result<bool> {
    let found: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM notifications WHERE order_id = $1 AND kind = $2")
            .bind(order_id)
            .bind(kind)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

/// A notification about to be sent.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    /// Its id.
    pub id: Uuid,
    /// The order.
    pub order_id: &'a str,
    /// The customer.
    pub customer_id: &'a str,
    /// The number texted.
    pub sms_number: &'a str,
    /// The kind (`order-created`...).
    pub kind: &'a str,
    /// The text.
    pub text: &'a str,
}

/// Records a notification unless (order, kind) is recorded already; returns whether this call
/// recorded it, i.e. whether the caller owns the send. A concurrent transaction recording the
/// same pair makes this one wait for its outcome, so exactly one of them sends.
pub async fn claim_notification(
    conn: &mut PgConnection,
    n: &NewNotification<'_>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, order_id, customer_id, sms_number, kind, text)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (order_id, kind) DO NOTHING",
    )
    .bind(n.id)
    .bind(n.order_id)
    .bind(n.customer_id)
    .bind(n.sms_number)
    .bind(n.kind)
    .bind(n.text)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A recorded notification.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    /// Its id.
    pub id: Uuid,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// The number texted.
    pub sms_number: String,
    /// The kind.
    pub kind: String,
    /// The text.
    pub text: String,
    /// When it was sent.
    pub sent_at: OffsetDateTime,
}

/// Most notifications one listing returns (the newest ones when there are more).
pub const LIST_LIMIT: i64 = 500;

/// Recorded notifications, oldest first, filtered by order and/or customer when given.
pub async fn list_notifications(
    pool: &PgPool,
    order_id: Option<&str>,
    customer_id: Option<&str>,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as(
        "SELECT * FROM (
             SELECT id, order_id, customer_id, sms_number, kind, text, sent_at
             FROM notifications
             WHERE ($1::text IS NULL OR order_id = $1)
               AND ($2::text IS NULL OR customer_id = $2)
             ORDER BY sent_at DESC, id DESC
             LIMIT $3
         ) newest
         ORDER BY sent_at, id",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(LIST_LIMIT)
    .fetch_all(pool)
    .await
}
