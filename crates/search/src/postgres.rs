//! The service's tables: three name caches, the orders read model and the statuses waiting for
//! their order. Writes take `&mut PgConnection` (the caller's transaction, with its inbox
//! record); cache reads and searches take any executor or the pool.
//!
//! Duplicate-tolerant inserts use `ON CONFLICT DO NOTHING`: the original caught the unique
//! violation inside the transaction, which aborts it in PostgreSQL (weakness C4).

use std::collections::HashMap;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool};
use time::OffsetDateTime;

use crate::domain::query::{Cursor, Filters};
use crate::domain::{IndexedOrder, Item, OrderStatus};

/// Caches a customer's name; an existing row wins.
pub async fn insert_customer(conn: &mut PgConnection, id: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO customers_cache (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// A cached customer's name.
pub async fn customer_name<'e>(db: impl PgExecutor<'e>, id: &str) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM customers_cache WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|(name,)| name))
}

/// Caches a store's name; an existing row wins (it is as recent or more: a rename, or the
/// stores service's current answer).
pub async fn insert_store(conn: &mut PgConnection, id: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO stores_cache (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Renames a cached store, caching it if missing (a rename carries the whole row).
pub async fn rename_store(conn: &mut PgConnection, id: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stores_cache (id, name) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
    )
    .bind(id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// A cached store's name.
pub async fn store_name<'e>(db: impl PgExecutor<'e>, id: &str) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM stores_cache WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|(name,)| name))
}

/// Caches a product; an existing row wins.
pub async fn insert_product(
    conn: &mut PgConnection,
    id: &str,
    store_id: &str,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO products_cache (id, store_id, name) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(store_id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renames a cached product; returns whether it was cached (a rebrand does not carry the store,
/// so an uncached product stays uncached and is asked for when an order needs it).
pub async fn rebrand_product(conn: &mut PgConnection, id: &str, name: &str) -> sqlx::Result<bool> {
    let changed =
        sqlx::query("UPDATE products_cache SET name = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(changed > 0)
}

/// Flags a cached product as removed (its name stays for orders placed before the removal).
pub async fn remove_product(conn: &mut PgConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE products_cache SET removed = true, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The cached products among `ids`: id → (store id, name). One query for a whole order.
pub async fn products<'e>(
    db: impl PgExecutor<'e>,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, (String, String)>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, store_id, name FROM products_cache WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, store_id, name)| (id, (store_id, name)))
        .collect())
}

/// The cached stores' names among `ids`: id → name.
pub async fn store_names<'e>(
    db: impl PgExecutor<'e>,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, String>> {
    sqlx::query_as("SELECT id, name FROM stores_cache WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(db)
        .await
        .map(|rows: Vec<(String, String)>| rows.into_iter().collect())
}

/// Serialises every write about one order (indexing, status changes) until the transaction
/// ends, so a status arriving while its order is being indexed cannot slip between "no row
/// yet" and "row inserted" and be lost, whichever instance handles it.
pub async fn lock_order(conn: &mut PgConnection, order_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('search.orders'), hashtext($1))")
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts an indexed order; returns false if the order was indexed already (by another
/// `OrderCreated` message for the same order), which is left as it is.
pub async fn insert_order(conn: &mut PgConnection, order: &IndexedOrder) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, customer_id, customer_name, items, total, status,
                             product_ids, store_ids, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order.order_id)
    .bind(&order.customer_id)
    .bind(&order.customer_name)
    .bind(Json(&order.items))
    .bind(order.total)
    .bind(order.status.as_str())
    .bind(&order.product_ids)
    .bind(&order.store_ids)
    .bind(order.created_at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether the order is indexed.
pub async fn order_exists(pool: &PgPool, order_id: &str) -> sqlx::Result<bool> {
    let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// An indexed order's status text, if the order is indexed.
pub async fn order_status(conn: &mut PgConnection, order_id: &str) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT status FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(s,)| s))
}

/// Sets an indexed order's status.
pub async fn set_status(
    conn: &mut PgConnection,
    order_id: &str,
    status: OrderStatus,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE orders SET status = $2, updated_at = now() WHERE order_id = $1")
        .bind(order_id)
        .bind(status.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// The status waiting for an order not indexed yet.
pub async fn pending_status(
    conn: &mut PgConnection,
    order_id: &str,
) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT status FROM pending_statuses WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(s,)| s))
}

/// Keeps `status` for an order not indexed yet.
pub async fn set_pending_status(
    conn: &mut PgConnection,
    order_id: &str,
    status: OrderStatus,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO pending_statuses (order_id, status) VALUES ($1, $2)
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now()",
    )
    .bind(order_id)
    .bind(status.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes and returns the status waiting for `order_id`.
pub async fn take_pending_status(
    conn: &mut PgConnection,
    order_id: &str,
) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("DELETE FROM pending_statuses WHERE order_id = $1 RETURNING status")
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(s,)| s))
}

/// An indexed order as read back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    /// Order id.
    pub order_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Customer name.
    pub customer_name: String,
    /// Lines.
    pub items: Json<Vec<Item>>,
    /// Total.
    pub total: f64,
    /// Status text.
    pub status: String,
    /// Creation time (for the cursor).
    pub created_at: OffsetDateTime,
}

/// One indexed order.
pub async fn get_order(pool: &PgPool, order_id: &str) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(
        "SELECT order_id, customer_id, customer_name, items, total, status, created_at
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
}

/// Up to `limit` orders matching every given filter, newest first, after `cursor`.
pub async fn search(
    pool: &PgPool,
    filters: &Filters,
    cursor: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    let non_empty = |ids: &Vec<String>| (!ids.is_empty()).then(|| ids.clone());
    sqlx::query_as(
        "SELECT order_id, customer_id, customer_name, items, total, status, created_at
         FROM orders
         WHERE ($1::text IS NULL OR customer_id = $1)
           AND ($2::timestamptz IS NULL OR created_at > $2)
           AND ($3::timestamptz IS NULL OR created_at < $3)
           AND ($4::text[] IS NULL OR store_ids && $4)
           AND ($5::text[] IS NULL OR product_ids && $5)
           AND ($6::float8 IS NULL OR total >= $6)
           AND ($7::float8 IS NULL OR total <= $7)
           AND ($8::text IS NULL OR status = $8)
           AND ($9::timestamptz IS NULL OR (created_at, order_id) < ($9, $10::text))
         ORDER BY created_at DESC, order_id DESC
         LIMIT $11",
    )
    .bind(filters.customer_id.as_deref())
    .bind(filters.after)
    .bind(filters.before)
    .bind(non_empty(&filters.store_ids))
    .bind(non_empty(&filters.product_ids))
    .bind(filters.min_total)
    .bind(filters.max_total)
    .bind(filters.status.map(OrderStatus::as_str))
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.order_id.as_str()))
    .bind(limit)
    .fetch_all(pool)
    .await
}
