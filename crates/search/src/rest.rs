//! The REST API under `/api/search` (spec api.md §2.8, endpoints 35–36), which the original
//! never answered (both handlers panicked and took the process down, weakness A8/G1):
//!
//! - `POST /api/search/orders` `{"filters": {...}, "next": string, "limit": int}` →
//!   `{"orders": [SearchOrder], "next": string}`; `next` is `""` on the last page;
//! - `GET /api/search/orders/{id}` → `{"order": SearchOrder}`, 404 code 5 when not indexed.
//!
//! `SearchOrder` = `{"orderId", "customerId", "customerName", "items": [{"productId",
//! "storeId", "productName", "storeName", "price", "quantity"}], "total", "status"}` with
//! `quantity` a JSON string (int64 rule, api.md §1.2). Input takes camelCase or snake_case,
//! numbers as strings and `null` as the zero value.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use platform::{ApiError, ApiJson};
use serde::{Deserialize, Deserializer, Serialize};

use crate::application::{Indexer, SearchError};
use crate::domain::query::RawFilters;
use crate::postgres::OrderRow;

/// The message of the 404 for an order search does not know (worded like the stores
/// service's `product with that ID does not exist`).
pub const ORDER_NOT_FOUND: &str = "order with that ID does not exist";

/// The routes under `/api/search`.
pub fn router(indexer: Indexer) -> Router {
    Router::new()
        .route("/api/search/orders", post(search_orders))
        .route("/api/search/orders/{id}", get(get_order))
        .with_state(indexer)
}

/// `SearchOrdersRequest`.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = search::SearchRequest)]
#[serde(default, rename_all = "camelCase")]
struct SearchRequest {
    filters: Option<FiltersDto>,
    #[serde(deserialize_with = "platform::de_string_lenient")]
    next: String,
    #[serde(deserialize_with = "platform::de_i32_lenient")]
    limit: i32,
}

/// `SearchOrdersRequest.Filters`; missing fields are zero values ("not given").
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = search::FiltersDto)]
#[serde(default, rename_all = "camelCase")]
struct FiltersDto {
    #[serde(
        alias = "customer_id",
        deserialize_with = "platform::de_string_lenient"
    )]
    customer_id: String,
    #[serde(deserialize_with = "platform::de_string_lenient")]
    after: String,
    #[serde(deserialize_with = "platform::de_string_lenient")]
    before: String,
    #[serde(alias = "store_ids", deserialize_with = "de_ids")]
    store_ids: Vec<String>,
    #[serde(alias = "product_ids", deserialize_with = "de_ids")]
    product_ids: Vec<String>,
    #[serde(alias = "min_total", deserialize_with = "platform::de_f64_lenient")]
    min_total: f64,
    #[serde(alias = "max_total", deserialize_with = "platform::de_f64_lenient")]
    max_total: f64,
    #[serde(deserialize_with = "platform::de_string_lenient")]
    status: String,
}

impl From<FiltersDto> for RawFilters {
    fn from(f: FiltersDto) -> Self {
        RawFilters {
            customer_id: f.customer_id,
            after: f.after,
            before: f.before,
            store_ids: f.store_ids,
            product_ids: f.product_ids,
            min_total: f.min_total,
            max_total: f.max_total,
            status: f.status,
        }
    }
}

/// A list of ids: `null` is the empty list, `null` entries are dropped.
fn de_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let ids: Option<Vec<Option<String>>> = Option::deserialize(deserializer)?;
    Ok(ids.unwrap_or_default().into_iter().flatten().collect())
}

/// `searchpb.Order.Item`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = search::ItemDto)]
#[serde(rename_all = "camelCase")]
struct ItemDto {
    product_id: String,
    store_id: String,
    product_name: String,
    store_name: String,
    price: f64,
    /// int64: a JSON string.
    quantity: String,
}

/// `searchpb.Order`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = search::SearchOrder)]
#[serde(rename_all = "camelCase")]
struct SearchOrder {
    order_id: String,
    customer_id: String,
    customer_name: String,
    items: Vec<ItemDto>,
    total: f64,
    status: String,
}

impl From<OrderRow> for SearchOrder {
    fn from(row: OrderRow) -> Self {
        SearchOrder {
            order_id: row.order_id,
            customer_id: row.customer_id,
            customer_name: row.customer_name,
            items: row
                .items
                .0
                .into_iter()
                .map(|i| ItemDto {
                    product_id: i.product_id,
                    store_id: i.store_id,
                    product_name: i.product_name,
                    store_name: i.store_name,
                    price: i.price,
                    quantity: i.quantity.to_string(),
                })
                .collect(),
            total: row.total,
            status: row.status,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = search::SearchResponse)]
struct SearchResponse {
    orders: Vec<SearchOrder>,
    next: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = search::GetOrderResponse)]
struct GetOrderResponse {
    order: SearchOrder,
}

#[utoipa::path(
    post,
    path = "/api/search/orders",
    tag = "search",
    operation_id = "search.search_orders",
    summary = "Search orders",
    request_body(content = SearchRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = SearchResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn search_orders(
    State(indexer): State<Indexer>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    let filters: RawFilters = request.filters.unwrap_or_default().into();
    let page = indexer
        .search(&filters, &request.next, i64::from(request.limit))
        .await
        .map_err(|e| match e {
            SearchError::Invalid(why) => ApiError::bad_request(why.to_string()),
            SearchError::Database(e) => ApiError::internal(e),
        })?;
    Ok(ApiJson(SearchResponse {
        orders: page.orders.into_iter().map(SearchOrder::from).collect(),
        next: page.next.map(|c| c.encode()).unwrap_or_default(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/search/orders/{id}",
    tag = "search",
    operation_id = "search.get_order",
    summary = "Get an indexed order",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = GetOrderResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_order(
    State(indexer): State<Indexer>,
    Path(id): Path<String>,
) -> Result<ApiJson<GetOrderResponse>, ApiError> {
    let row = indexer
        .get_order(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(ORDER_NOT_FOUND))?;
    Ok(ApiJson(GetOrderResponse { order: row.into() }))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(search_orders, get_order))]
pub struct ApiDoc;
