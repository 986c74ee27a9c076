//! The service's own tables: the store and product caches (`stores_cache`, `products_cache`).
//! Baskets themselves live in the event store.
//!
//! Every function takes the caller's connection so it joins the request's or message's
//! transaction. Writes never fail on a row that is already there or already gone: events and
//! lookups race to fill the caches, and whichever comes first wins (see [`CacheUpdate`]).

use sqlx::PgConnection;

use crate::domain::{Product, Store};

/// The cached product `id`, if any.
pub async fn find_product(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Product>> {
    let row: Option<(String, String, String, f64)> =
        sqlx::query_as("SELECT id, store_id, name, price FROM products_cache WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(id, store_id, name, price)| Product {
        id,
        store_id,
        name,
        price,
    }))
}

/// The cached product `id` with its store's name when the store is cached too: the look-ups
/// of adding an item in one statement.
pub async fn find_product_with_store(
    conn: &mut PgConnection,
    id: &str,
) -> sqlx::Result<Option<(Product, Option<String>)>> {
    let row: Option<(String, String, String, f64, Option<String>)> = sqlx::query_as(
        "SELECT p.id, p.store_id, p.name, p.price, s.name
         FROM products_cache p LEFT JOIN stores_cache s ON s.id = p.store_id
         WHERE p.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(id, store_id, name, price, store_name)| {
        (
            Product {
                id,
                store_id,
                name,
                price,
            },
            store_name,
        )
    }))
}

/// The cached store `id`, if any.
pub async fn find_store(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<Store>> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, name FROM stores_cache WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(id, name)| Store { id, name }))
}

/// A change to the caches, decided from one stores event or one lookup answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheUpdate {
    /// A store to cache; a row already there is kept (it is at least as new: a lookup answer or
    /// an earlier event, since events of one store arrive in order).
    AddStore(Store),
    /// A store's new name; nothing happens if the store is not cached (the next lookup fetches
    /// the current name from the stores service).
    RenameStore {
        /// Store id.
        id: String,
        /// The new name.
        name: String,
    },
    /// A product to cache; a row already there is kept, as for stores.
    AddProduct(Product),
    /// A product's new name; nothing happens if it is not cached.
    RenameProduct {
        /// Product id.
        id: String,
        /// The new name.
        name: String,
    },
    /// A product's absolute new price (spec weaknesses.md F1: the original added the event's
    /// delta, which counted a change twice when a lookup had already fetched the new price).
    /// Nothing happens if the product is not cached: the next lookup fetches the current price,
    /// so the change is not lost.
    SetPrice {
        /// Product id.
        id: String,
        /// The price after the change.
        price: f64,
    },
    /// A product left the catalogue; later adds look it up again and are refused.
    RemoveProduct {
        /// Product id.
        id: String,
    },
}

/// Writes `update` in the caller's transaction.
pub async fn apply(conn: &mut PgConnection, update: &CacheUpdate) -> sqlx::Result<()> {
    let query = match update {
        CacheUpdate::AddStore(store) => sqlx::query(
            "INSERT INTO stores_cache (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&store.id)
        .bind(&store.name),
        CacheUpdate::RenameStore { id, name } => {
            sqlx::query("UPDATE stores_cache SET name = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(name)
        }
        CacheUpdate::AddProduct(product) => sqlx::query(
            "INSERT INTO products_cache (id, store_id, name, price) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&product.id)
        .bind(&product.store_id)
        .bind(&product.name)
        .bind(product.price),
        CacheUpdate::RenameProduct { id, name } => {
            sqlx::query("UPDATE products_cache SET name = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(name)
        }
        CacheUpdate::SetPrice { id, price } => {
            sqlx::query("UPDATE products_cache SET price = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(price)
        }
        CacheUpdate::RemoveProduct { id } => {
            sqlx::query("DELETE FROM products_cache WHERE id = $1").bind(id)
        }
    };
    query.execute(conn).await?;
    Ok(())
}
