//! The `customers` table: one row per customer. Every function runs on the caller's connection
//! (usually inside its transaction) and speaks in domain [`Customer`]s, so the SQL stays here.

use sqlx::PgConnection;

use crate::domain::Customer;

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    sms_number: String,
    enabled: bool,
}

impl From<Row> for Customer {
    fn from(row: Row) -> Self {
        Customer {
            id: row.id,
            name: row.name,
            sms_number: row.sms_number,
            enabled: row.enabled,
        }
    }
}

/// Inserts a new customer.
pub async fn insert(conn: &mut PgConnection, customer: &Customer) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO customers (id, name, sms_number, enabled) VALUES ($1, $2, $3, $4)")
        .bind(&customer.id)
        .bind(&customer.name)
        .bind(&customer.sms_number)
        .bind(customer.enabled)
        .execute(conn)
        .await?;
    Ok(())
}

/// The customer `id`, if there is one.
pub async fn find(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Customer>> {
    let row: Option<Row> =
        sqlx::query_as("SELECT id, name, sms_number, enabled FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Customer::from))
}

/// The customer `id`, locked until the transaction ends: two concurrent changes of one customer
/// are decided one after the other, and their events leave the outbox in that order.
pub async fn find_for_update(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Customer>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, name, sms_number, enabled FROM customers WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Customer::from))
}

/// Writes a changed customer back (name, number, flag).
pub async fn update(conn: &mut PgConnection, customer: &Customer) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE customers SET name = $2, sms_number = $3, enabled = $4, updated_at = now()
         WHERE id = $1",
    )
    .bind(&customer.id)
    .bind(&customer.name)
    .bind(&customer.sms_number)
    .bind(customer.enabled)
    .execute(conn)
    .await?;
    Ok(())
}
