//! The depot's tables (`migrations/0001_shopping.sql`): shopping lists with their stops as
//! JSON, and the store and product caches fed by the stores service's events and queries.
//! Every function runs on the caller's connection, so it joins the caller's transaction.

use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::{ListStatus, ProductInfo, ShoppingList, Stop, StoreInfo};

/// A stored list whose status the code does not know is corrupt data, not a missing row.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A row cannot be read back.
    #[error("shopping list {id} has an unknown status {status:?}")]
    UnknownStatus {
        /// The list.
        id: String,
        /// What the row holds.
        status: String,
    },
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: String,
    order_id: String,
    stops: Json<Vec<Stop>>,
    assigned_bot_id: String,
    status: String,
}

impl TryFrom<ListRow> for ShoppingList {
    type Error = StorageError;

    fn try_from(row: ListRow) -> Result<Self, StorageError> {
        let status = ListStatus::parse(&row.status).ok_or_else(|| StorageError::UnknownStatus {
            id: row.id.clone(),
            status: row.status.clone(),
        })?;
        Ok(ShoppingList {
            id: row.id,
            order_id: row.order_id,
            stops: row.stops.0,
            assigned_bot_id: row.assigned_bot_id,
            status,
        })
    }
}

/// Stores a new list.
pub async fn insert_list(conn: &mut PgConnection, list: &ShoppingList) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO shopping_lists (id, order_id, stops, assigned_bot_id, status)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&list.id)
    .bind(&list.order_id)
    .bind(Json(&list.stops))
    .bind(&list.assigned_bot_id)
    .bind(list.status.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// List `id`; with `lock`, the row stays locked until the transaction ends, so two changes of
/// one list (a REST call and a saga command) cannot interleave.
pub async fn find_list(
    conn: &mut PgConnection,
    id: &str,
    lock: bool,
) -> Result<Option<ShoppingList>, StorageError> {
    let sql = if lock {
        "SELECT id, order_id, stops, assigned_bot_id, status FROM shopping_lists
         WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT id, order_id, stops, assigned_bot_id, status FROM shopping_lists WHERE id = $1"
    };
    let row: Option<ListRow> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await?;
    row.map(ShoppingList::try_from).transpose()
}

/// The order's list, if it has one: the oldest that is not canceled, else a canceled one
/// (the flag says which). An order gets one list in its life; a canceled one means its saga
/// compensated, and a late or re-published CreateShoppingList must not make another.
pub async fn list_of_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<(String, bool)>, StorageError> {
    let found = sqlx::query_as(
        "SELECT id, status = 'canceled' FROM shopping_lists WHERE order_id = $1
         ORDER BY status = 'canceled', created_at LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(found)
}

/// Writes a changed list's status and bot back.
pub async fn update_list(conn: &mut PgConnection, list: &ShoppingList) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE shopping_lists SET status = $2, assigned_bot_id = $3, updated_at = now()
         WHERE id = $1",
    )
    .bind(&list.id)
    .bind(list.status.as_str())
    .bind(&list.assigned_bot_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The cached stores among `ids`, by id: one query for a whole list instead of one per item.
pub async fn cached_stores(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<StoreInfo>, StorageError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, name, location FROM stores_cache WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, location)| StoreInfo { id, name, location })
        .collect())
}

/// The cached products among `ids` (see [`cached_stores`]).
pub async fn cached_products(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<ProductInfo>, StorageError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, store_id, name FROM products_cache WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, store_id, name)| ProductInfo { id, store_id, name })
        .collect())
}

/// Caches a store unless it is there already: a row filled by a lookup is newer than a
/// StoreCreated event arriving late, and renames come as their own events.
pub async fn add_store(conn: &mut PgConnection, store: &StoreInfo) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO stores_cache (id, name, location) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&store.id)
    .bind(&store.name)
    .bind(&store.location)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renames a cached store (a store not cached yet is looked up when first needed).
pub async fn rename_store(
    conn: &mut PgConnection,
    id: &str,
    name: &str,
) -> Result<(), StorageError> {
    sqlx::query("UPDATE stores_cache SET name = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Caches a product unless it is there already (see [`add_store`]).
pub async fn add_product(
    conn: &mut PgConnection,
    product: &ProductInfo,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO products_cache (id, store_id, name) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&product.id)
    .bind(&product.store_id)
    .bind(&product.name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renames a cached product.
pub async fn rename_product(
    conn: &mut PgConnection,
    id: &str,
    name: &str,
) -> Result<(), StorageError> {
    sqlx::query("UPDATE products_cache SET name = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets a removed product: a later list asking for it looks it up and finds nothing.
pub async fn remove_product(conn: &mut PgConnection, id: &str) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM products_cache WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
