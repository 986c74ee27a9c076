//! The REST API under `/api/ordering` (spec api.md §2.6, endpoints 30-32): JSON in both
//! spellings, camelCase out with every field present, errors in the `{code, message, details}`
//! shape with the original's texts.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use platform::{ApiError, ApiJson, de_f64_lenient, de_i32_lenient, de_string_lenient};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::application::{AppError, NewOrder, Orders};
use crate::domain::{Order, OrderError, OrderItem, OrderStatus};

/// The routes, with their state.
pub fn routes(orders: Orders) -> Router {
    Router::new()
        .route("/api/ordering", post(create_order))
        .route("/api/ordering/{id}", get(get_order).delete(cancel_order))
        .with_state(orders)
}

/// `POST /api/ordering` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ordering::CreateOrderRequest)]
#[serde(rename_all = "camelCase")]
struct CreateOrderRequest {
    #[serde(default, deserialize_with = "de_list_lenient")]
    items: Vec<ItemBody>,
    #[serde(default, alias = "customer_id", deserialize_with = "de_string_lenient")]
    customer_id: String,
    #[serde(default, alias = "payment_id", deserialize_with = "de_string_lenient")]
    payment_id: String,
}

/// An order line as clients send and receive it (`OrderItem`, spec api.md §2.1).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = ordering::ItemBody)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    #[serde(default, alias = "store_id", deserialize_with = "de_string_lenient")]
    store_id: String,
    #[serde(default, alias = "product_id", deserialize_with = "de_string_lenient")]
    product_id: String,
    #[serde(default, alias = "store_name", deserialize_with = "de_string_lenient")]
    store_name: String,
    #[serde(
        default,
        alias = "product_name",
        deserialize_with = "de_string_lenient"
    )]
    product_name: String,
    #[serde(default, deserialize_with = "de_f64_lenient")]
    price: f64,
    #[serde(default, deserialize_with = "de_i32_lenient")]
    quantity: i32,
}

/// The `order` of `GET /api/ordering/{id}`: the original's fields plus `shoppingId` and
/// `invoiceId` (spec README, required additions).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ordering::OrderBody)]
#[serde(rename_all = "camelCase")]
struct OrderBody {
    id: String,
    customer_id: String,
    payment_id: String,
    items: Vec<ItemBody>,
    status: &'static str,
    shopping_id: String,
    invoice_id: String,
}

/// A repeated field: a list, or `null` for the empty list (as protojson accepted).
fn de_list_lenient<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

impl From<ItemBody> for OrderItem {
    fn from(i: ItemBody) -> Self {
        OrderItem {
            product_id: i.product_id,
            store_id: i.store_id,
            store_name: i.store_name,
            product_name: i.product_name,
            price: i.price,
            quantity: i.quantity,
        }
    }
}

impl From<&OrderItem> for ItemBody {
    fn from(i: &OrderItem) -> Self {
        ItemBody {
            store_id: i.store_id.clone(),
            product_id: i.product_id.clone(),
            store_name: i.store_name.clone(),
            product_name: i.product_name.clone(),
            price: i.price,
            quantity: i.quantity,
        }
    }
}

fn order_body(id: String, order: &Order) -> OrderBody {
    OrderBody {
        id,
        customer_id: order.customer_id.clone(),
        payment_id: order.payment_id.clone(),
        items: order.items.iter().map(ItemBody::from).collect(),
        status: order.status.map_or("", OrderStatus::as_str),
        shopping_id: order.shopping_id.clone(),
        invoice_id: order.invoice_id.clone(),
    }
}

/// Domain refusals are the client's problem (400); a lost concurrency race that survived the
/// retries is a 409; anything else is ours (500, cause logged).
fn api_error(e: AppError) -> ApiError {
    match e {
        AppError::Domain(refusal) => ApiError::bad_request(refusal.to_string()),
        AppError::Persistence(persistence::Error::Conflict { .. }) => {
            ApiError::conflict("the order was changed at the same time, try again")
        }
        AppError::Persistence(e) => ApiError::internal(e),
    }
}

/// 30. Places an order; the create-order saga takes it from there.
#[utoipa::path(
    post,
    path = "/api/ordering",
    tag = "ordering",
    operation_id = "ordering.create_order",
    summary = "Create an order",
    request_body(content = CreateOrderRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::IdBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn create_order(
    State(orders): State<Orders>,
    ApiJson(body): ApiJson<CreateOrderRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    let order = NewOrder {
        customer_id: body.customer_id,
        payment_id: body.payment_id,
        items: body.items.into_iter().map(OrderItem::from).collect(),
    };
    let id = orders
        .create_order(order)
        .await
        .map_err(|e| api_error(e).context("create order command"))?;
    Ok(ApiJson(json!({ "id": id })))
}

/// 31. Reads an order. An unknown id is a 404 (the original answered 200 with an empty order).
#[utoipa::path(
    get,
    path = "/api/ordering/{id}",
    tag = "ordering",
    operation_id = "ordering.get_order",
    summary = "Get an order",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = GetOrderResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_order(
    State(orders): State<Orders>,
    Path(id): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    let order = orders
        .get_order(&id)
        .await
        .map_err(api_error)?
        .ok_or_else(|| ApiError::not_found(OrderError::NotFound.to_string()))?;
    Ok(ApiJson(json!({ "order": order_body(id, &order) })))
}

/// 32. Cancels a pending order (`the order cannot be cancelled` otherwise, unknown ids too).
#[utoipa::path(
    delete,
    path = "/api/ordering/{id}",
    tag = "ordering",
    operation_id = "ordering.cancel_order",
    summary = "Cancel an order",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn cancel_order(
    State(orders): State<Orders>,
    Path(id): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    orders.cancel_order(&id).await.map_err(api_error)?;
    Ok(ApiJson(json!({})))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_order, get_order, cancel_order))]
pub struct ApiDoc;

/// `{"order": Order}` (documentation: the handler builds it as JSON).
#[derive(utoipa::ToSchema)]
#[schema(as = ordering::GetOrderResponse)]
#[allow(dead_code)]
struct GetOrderResponse {
    order: OrderBody,
}
