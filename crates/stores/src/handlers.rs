//! Query responders: `stores.v1.GetStore` and `stores.v1.GetProduct`, asked over NATS
//! request/reply by baskets, depot and search when their local cache misses (what the original
//! did over gRPC). The stores service subscribes to no events or commands, so there are no
//! message handlers (and no inbox) here.
//!
//! An unknown id is an answer, not an error: the response's message field is left unset
//! (proto/stores/v1/queries.proto). Only a failure (the database is down) travels as a query
//! error, so a caller can tell "no such product" from "ask again later".

use std::sync::Arc;

use contracts::stores::v1 as api;
use platform::ModuleContext;

use crate::application::Stores;
use crate::postgres::{ProductRow, StoreRow};

/// The queue group every stores instance serves in: instances share the load.
pub const QUEUE_GROUP: &str = "stores";

/// Starts both responders under the module's shutdown token.
pub async fn serve_queries(ctx: &ModuleContext, stores: Arc<Stores>) -> messaging::Result<()> {
    let app = stores.clone();
    let get_store = ctx
        .bus
        .serve::<api::GetStore, _, _>(
            QUEUE_GROUP,
            move |query, _envelope| {
                let app = app.clone();
                async move { get_store(&app, &query.id).await }
            },
            ctx.shutdown.clone(),
        )
        .await?;
    ctx.track(get_store);

    let app = stores;
    let get_product = ctx
        .bus
        .serve::<api::GetProduct, _, _>(
            QUEUE_GROUP,
            move |query, _envelope| {
                let app = app.clone();
                async move { get_product(&app, &query.id).await }
            },
            ctx.shutdown.clone(),
        )
        .await?;
    ctx.track(get_product);
    Ok(())
}

async fn get_store(stores: &Stores, id: &str) -> Result<api::GetStoreResponse, String> {
    match stores.find_store(id).await {
        Ok(row) => Ok(api::GetStoreResponse {
            store: row.map(store_message),
        }),
        Err(e) => {
            tracing::warn!(store = id, error = %e, "GetStore failed");
            Err(format!("looking up store {id}: {e}"))
        }
    }
}

async fn get_product(stores: &Stores, id: &str) -> Result<api::GetProductResponse, String> {
    match stores.find_product(id).await {
        Ok(row) => Ok(api::GetProductResponse {
            product: row.map(product_message),
        }),
        Err(e) => {
            tracing::warn!(product = id, error = %e, "GetProduct failed");
            Err(format!("looking up product {id}: {e}"))
        }
    }
}

fn store_message(row: StoreRow) -> api::Store {
    api::Store {
        id: row.id,
        name: row.name,
        location: row.location,
        participating: row.participating,
    }
}

fn product_message(row: ProductRow) -> api::Product {
    api::Product {
        id: row.id,
        store_id: row.store_id,
        name: row.name,
        description: row.description,
        sku: row.sku,
        price: row.price,
    }
}
