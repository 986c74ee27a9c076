//! The REST API under `/api/baskets` (spec api.md §2.3, endpoints 15–20): request and response
//! bodies, and the one mapping from use-case errors to HTTP answers.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use platform::{ApiError, ApiJson, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::application::{Baskets, Error};
use crate::domain::{Basket, Item};

/// The routes, with the use cases as state.
pub fn router(baskets: Arc<Baskets>) -> Router {
    Router::new()
        .route("/api/baskets", post(start_basket))
        .route("/api/baskets/{id}", get(get_basket).delete(cancel_basket))
        .route("/api/baskets/{id}/addItem", put(add_item))
        .route("/api/baskets/{id}/removeItem", put(remove_item))
        .route("/api/baskets/{id}/checkout", put(checkout_basket))
        .with_state(baskets)
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Rejected(_) | Error::CheckoutRejected(_) => ApiError::bad_request(message),
            Error::BasketNotFound | Error::ProductNotFound | Error::StoreNotFound => {
                ApiError::not_found(message)
            }
            Error::ProductLookup(ref cause) | Error::StoreLookup(ref cause) => {
                // The client gets the original's text; the cause is for the operator.
                tracing::warn!(cause = %cause, "{message}");
                ApiError::new(ErrorKind::Internal, message)
            }
            Error::Concurrency => ApiError::conflict(message),
            Error::Unexpected(cause) => ApiError::internal(cause),
        }
    }
}

/// The `{id}` path segment, with a rejection in the API's error shape.
type BasketId = Result<Path<String>, PathRejection>;

fn basket_id(path: BasketId) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|rejection| ApiError::bad_request(format!("invalid basket id: {rejection}")))
}

/// `POST /api/baskets` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = baskets::StartBasketRequest)]
#[serde(rename_all = "camelCase")]
struct StartBasketRequest {
    #[serde(
        default,
        alias = "customer_id",
        deserialize_with = "platform::de_string_lenient"
    )]
    customer_id: String,
}

/// `{"id"}`, the answer to a create.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = baskets::IdResponse)]
struct IdResponse {
    id: String,
}

/// `PUT /api/baskets/{id}/addItem` and `/removeItem` body. A body `id` is ignored: the path
/// wins, as in the original's gateway.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = baskets::ItemRequest)]
#[serde(rename_all = "camelCase")]
struct ItemRequest {
    #[serde(
        default,
        alias = "product_id",
        deserialize_with = "platform::de_string_lenient"
    )]
    product_id: String,
    #[serde(default, deserialize_with = "platform::de_i32_lenient")]
    quantity: i32,
}

/// `PUT /api/baskets/{id}/checkout` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = baskets::CheckoutRequest)]
#[serde(rename_all = "camelCase")]
struct CheckoutRequest {
    #[serde(
        default,
        alias = "payment_id",
        deserialize_with = "platform::de_string_lenient"
    )]
    payment_id: String,
}

/// `{"basket": Basket}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = baskets::GetBasketResponse)]
struct GetBasketResponse {
    basket: BasketBody,
}

/// The API's Basket: id and lines only (no status, customer or payment, as the original).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = baskets::BasketBody)]
struct BasketBody {
    id: String,
    items: Vec<ItemBody>,
}

/// The API's BasketItem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = baskets::ItemBody)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    store_id: String,
    product_id: String,
    store_name: String,
    product_name: String,
    product_price: f64,
    quantity: i32,
}

impl From<&Item> for ItemBody {
    fn from(item: &Item) -> Self {
        ItemBody {
            store_id: item.store_id.clone(),
            product_id: item.product_id.clone(),
            store_name: item.store_name.clone(),
            product_name: item.product_name.clone(),
            product_price: item.product_price,
            quantity: item.quantity,
        }
    }
}

fn basket_body(id: String, basket: &Basket) -> BasketBody {
    BasketBody {
        id,
        items: basket.items().iter().map(ItemBody::from).collect(),
    }
}

/// The body of answers without data.
fn empty() -> ApiJson<Value> {
    ApiJson(json!({}))
}

#[utoipa::path(
    post,
    path = "/api/baskets",
    tag = "baskets",
    operation_id = "baskets.start_basket",
    summary = "Start a basket",
    request_body(content = StartBasketRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = IdResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn start_basket(
    State(baskets): State<Arc<Baskets>>,
    ApiJson(request): ApiJson<StartBasketRequest>,
) -> Result<ApiJson<IdResponse>, ApiError> {
    let id = baskets.start_basket(&request.customer_id).await?;
    Ok(ApiJson(IdResponse { id }))
}

#[utoipa::path(
    get,
    path = "/api/baskets/{id}",
    tag = "baskets",
    operation_id = "baskets.get_basket",
    summary = "Get a basket",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = GetBasketResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_basket(
    State(baskets): State<Arc<Baskets>>,
    path: BasketId,
) -> Result<ApiJson<GetBasketResponse>, ApiError> {
    let id = basket_id(path)?;
    let basket = baskets.basket(&id).await?;
    Ok(ApiJson(GetBasketResponse {
        basket: basket_body(id, &basket),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/baskets/{id}",
    tag = "baskets",
    operation_id = "baskets.cancel_basket",
    summary = "Cancel a basket",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn cancel_basket(
    State(baskets): State<Arc<Baskets>>,
    path: BasketId,
) -> Result<ApiJson<Value>, ApiError> {
    let id = basket_id(path)?;
    baskets.cancel_basket(&id).await?;
    Ok(empty())
}

#[utoipa::path(
    put,
    path = "/api/baskets/{id}/addItem",
    tag = "baskets",
    operation_id = "baskets.add_item",
    summary = "Add an item",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ItemRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn add_item(
    State(baskets): State<Arc<Baskets>>,
    path: BasketId,
    ApiJson(request): ApiJson<ItemRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    let id = basket_id(path)?;
    baskets
        .add_item(&id, &request.product_id, request.quantity)
        .await?;
    Ok(empty())
}

#[utoipa::path(
    put,
    path = "/api/baskets/{id}/removeItem",
    tag = "baskets",
    operation_id = "baskets.remove_item",
    summary = "Remove an item",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ItemRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn remove_item(
    State(baskets): State<Arc<Baskets>>,
    path: BasketId,
    ApiJson(request): ApiJson<ItemRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    let id = basket_id(path)?;
    baskets
        .remove_item(&id, &request.product_id, request.quantity)
        .await?;
    Ok(empty())
}

#[utoipa::path(
    put,
    path = "/api/baskets/{id}/checkout",
    tag = "baskets",
    operation_id = "baskets.checkout_basket",
    summary = "Check out",
    params(("id" = String, Path, description = "The id")),
    request_body(content = CheckoutRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn checkout_basket(
    State(baskets): State<Arc<Baskets>>,
    path: BasketId,
    ApiJson(request): ApiJson<CheckoutRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    let id = basket_id(path)?;
    baskets.checkout_basket(&id, &request.payment_id).await?;
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BasketError;

    #[test]
    fn bodies_accept_both_spellings_strings_and_nulls() {
        let a: ItemRequest =
            platform::parse_body(br#"{"productId":"p","quantity":"3","id":"ignored"}"#).unwrap();
        let b: ItemRequest = platform::parse_body(br#"{"product_id":"p","quantity":3}"#).unwrap();
        assert_eq!((a.product_id.as_str(), a.quantity), ("p", 3));
        assert_eq!((b.product_id.as_str(), b.quantity), ("p", 3));
        let c: ItemRequest =
            platform::parse_body(br#"{"productId":null,"quantity":null}"#).unwrap();
        assert_eq!((c.product_id.as_str(), c.quantity), ("", 0));
        let d: StartBasketRequest = platform::parse_body(b"").unwrap();
        assert_eq!(d.customer_id, "");
        let e: CheckoutRequest = platform::parse_body(br#"{"payment_id":"pay"}"#).unwrap();
        assert_eq!(e.payment_id, "pay");
    }

    #[test]
    fn baskets_render_in_camel_case_with_every_field() {
        let body = serde_json::to_value(ItemBody {
            store_id: "s".into(),
            product_id: "p".into(),
            store_name: String::new(),
            product_name: "n".into(),
            product_price: 0.0,
            quantity: 1,
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"storeId":"s","productId":"p","storeName":"","productName":"n",
                   "productPrice":0.0,"quantity":1})
        );
    }

    #[test]
    fn errors_map_to_the_api_statuses_and_texts() {
        let cases: [(Error, u16, &str); 8] = [
            (
                Error::Rejected(BasketError::CannotBeCancelled),
                400,
                "the basket cannot be cancelled",
            ),
            (
                Error::CheckoutRejected(BasketError::NoItems),
                400,
                "baskets checkout: the basket has no items",
            ),
            (Error::BasketNotFound, 404, "the basket was not found"),
            (
                Error::ProductNotFound,
                404,
                "product fallback failed: product was not located",
            ),
            (
                Error::ProductLookup("no responder".into()),
                500,
                "product fallback failed: requesting product",
            ),
            (Error::StoreNotFound, 404, "store fallback failed"),
            (
                Error::StoreLookup("timeout".into()),
                500,
                "store fallback failed: requesting store",
            ),
            (
                Error::Concurrency,
                409,
                "the basket was changed by another request at the same time, try again",
            ),
        ];
        for (error, status, message) in cases {
            let api = ApiError::from(error);
            assert_eq!(api.status().as_u16(), status, "{message}");
            assert_eq!(api.message(), message);
        }
        let hidden = ApiError::from(Error::Unexpected(persistence::Error::InvalidName(
            "secret".into(),
        )));
        assert_eq!(hidden.status().as_u16(), 500);
        assert_eq!(hidden.message(), "internal error");
    }
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    start_basket,
    get_basket,
    cancel_basket,
    add_item,
    remove_item,
    checkout_basket
))]
pub struct ApiDoc;
