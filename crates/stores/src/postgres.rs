//! The service's own tables: the mall (`stores`) and the catalogue (`products`) read models.
//!
//! Writers take the caller's connection (`&mut *tx`), because a projection must commit with the
//! events it projects; readers take the pool. Lists are ordered by creation (then id) so answers
//! are stable, where the original's were in whatever order the table scan gave.

use sqlx::{PgConnection, PgPool};

/// A mall row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoreRow {
    /// The store id.
    pub id: String,
    /// The current name.
    pub name: String,
    /// Where in the mall it is.
    pub location: String,
    /// Whether it takes part in the programme.
    pub participating: bool,
}

/// A catalogue row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProductRow {
    /// The product id.
    pub id: String,
    /// The store selling it.
    pub store_id: String,
    /// The current name.
    pub name: String,
    /// The current description.
    pub description: String,
    /// Stock-keeping unit.
    pub sku: String,
    /// The current price.
    pub price: f64,
}

/// Adds a store to the mall (not participating).
pub async fn insert_store(
    conn: &mut PgConnection,
    id: &str,
    name: &str,
    location: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO stores (id, name, location) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(location)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a store's participation flag.
pub async fn set_participation(
    conn: &mut PgConnection,
    id: &str,
    participating: bool,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE stores SET participating = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(participating)
        .execute(conn)
        .await?;
    Ok(())
}

/// Renames a store.
pub async fn rename_store(conn: &mut PgConnection, id: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE stores SET name = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a store with this id exists, inside the caller's transaction. Stores are never
/// deleted, so the answer cannot be invalidated before the caller commits.
pub async fn store_exists(conn: &mut PgConnection, id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM stores WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// One store.
pub async fn find_store(pool: &PgPool, id: &str) -> sqlx::Result<Option<StoreRow>> {
    sqlx::query_as("SELECT id, name, location, participating FROM stores WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Every store.
pub async fn all_stores(pool: &PgPool) -> sqlx::Result<Vec<StoreRow>> {
    sqlx::query_as("SELECT id, name, location, participating FROM stores ORDER BY created_at, id")
        .fetch_all(pool)
        .await
}

/// The participating stores.
pub async fn participating_stores(pool: &PgPool) -> sqlx::Result<Vec<StoreRow>> {
    sqlx::query_as(
        "SELECT id, name, location, participating FROM stores WHERE participating
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
}

/// Adds a product to the catalogue.
pub async fn insert_product(conn: &mut PgConnection, row: &ProductRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO products (id, store_id, name, description, sku, price)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.id)
    .bind(&row.store_id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.sku)
    .bind(row.price)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renames a product and replaces its description.
pub async fn rebrand_product(
    conn: &mut PgConnection,
    id: &str,
    name: &str,
    description: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE products SET name = $2, description = $3, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a product's price to the absolute value the event carries (never `price + delta`,
/// which would drift and double-apply on a replay).
pub async fn set_price(conn: &mut PgConnection, id: &str, price: f64) -> sqlx::Result<()> {
    sqlx::query("UPDATE products SET price = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(price)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes a product out of the catalogue.
pub async fn delete_product(conn: &mut PgConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM products WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One product.
pub async fn find_product(pool: &PgPool, id: &str) -> sqlx::Result<Option<ProductRow>> {
    sqlx::query_as("SELECT id, store_id, name, description, sku, price FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A store's catalogue (empty for an unknown store).
pub async fn catalog(pool: &PgPool, store_id: &str) -> sqlx::Result<Vec<ProductRow>> {
    sqlx::query_as(
        "SELECT id, store_id, name, description, sku, price FROM products WHERE store_id = $1
         ORDER BY created_at, id",
    )
    .bind(store_id)
    .fetch_all(pool)
    .await
}
