//! The REST API under `/api/depot` (spec api.md §2.5, endpoints 26-29) plus
//! `GET /api/depot/shopping/{id}`, an addition that lets clients follow a list.
//! JSON in both spellings, camelCase out with every field present, errors in the
//! `{code, message, details}` shape with the original's texts.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{post, put};
use platform::{ApiError, ApiJson, ErrorKind, de_i32_lenient, de_string_lenient};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::application::{AppError, Depot};
use crate::domain::{RequestedItem, ShoppingList};

/// The routes, with their state.
pub fn routes(depot: Depot) -> Router {
    Router::new()
        .route("/api/depot/shopping", post(create_shopping_list))
        .route(
            "/api/depot/shopping/{id}",
            post(cancel_shopping_list).get(get_shopping_list),
        )
        .route("/api/depot/shopping/{id}/assign", put(assign_shopping_list))
        .route(
            "/api/depot/shopping/{id}/complete",
            put(complete_shopping_list),
        )
        .with_state(depot)
}

/// `POST /api/depot/shopping` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = depot::CreateRequest)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    #[serde(default, alias = "order_id", deserialize_with = "de_string_lenient")]
    order_id: String,
    #[serde(default, deserialize_with = "de_list_lenient")]
    items: Vec<ItemBody>,
}

/// `DepotOrderItem` (spec api.md §2.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = depot::ItemBody)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    #[serde(default, alias = "product_id", deserialize_with = "de_string_lenient")]
    product_id: String,
    #[serde(default, alias = "store_id", deserialize_with = "de_string_lenient")]
    store_id: String,
    #[serde(default, deserialize_with = "de_i32_lenient")]
    quantity: i32,
}

/// `PUT .../assign` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = depot::AssignRequest)]
#[serde(rename_all = "camelCase")]
struct AssignRequest {
    #[serde(default, alias = "bot_id", deserialize_with = "de_string_lenient")]
    bot_id: String,
}

/// The body of bodies that carry nothing (`{}`); read so that malformed JSON is still a 400.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = depot::NoFields)]
struct NoFields {}

/// A repeated field: a list, or `null` for the empty list (as protojson accepted).
fn de_list_lenient<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list as `GET /api/depot/shopping/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = depot::ListBody)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    id: String,
    order_id: String,
    status: &'static str,
    assigned_bot_id: String,
    stops: Vec<StopBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = depot::StopBody)]
#[serde(rename_all = "camelCase")]
struct StopBody {
    store_id: String,
    store_name: String,
    store_location: String,
    items: Vec<StopItemBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = depot::StopItemBody)]
#[serde(rename_all = "camelCase")]
struct StopItemBody {
    product_id: String,
    product_name: String,
    quantity: i32,
}

fn list_body(list: ShoppingList) -> ListBody {
    ListBody {
        id: list.id,
        order_id: list.order_id,
        status: list.status.as_str(),
        assigned_bot_id: list.assigned_bot_id,
        stops: list
            .stops
            .into_iter()
            .map(|s| StopBody {
                store_id: s.store_id,
                store_name: s.store_name,
                store_location: s.store_location,
                items: s
                    .items
                    .into_iter()
                    .map(|i| StopItemBody {
                        product_id: i.product_id,
                        product_name: i.product_name,
                        quantity: i.quantity,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Refusals are 400; an unknown list is 404 with the original's text; an unknown store or
/// product is 404 and an unreachable stores service 500, both with the original's
/// `building shopping list: ...` texts; anything else is ours (500, cause logged).
fn api_error(e: AppError) -> ApiError {
    match e {
        AppError::Domain(refusal) => ApiError::bad_request(refusal.to_string()),
        AppError::NotFound => ApiError::not_found(e.to_string()),
        AppError::Lookup(ref lookup) if lookup.is_transient() => {
            tracing::warn!(cause = %lookup.detail(), "stores lookup failed");
            ApiError::new(ErrorKind::Internal, e.to_string())
        }
        AppError::Lookup(_) => ApiError::not_found(e.to_string()),
        AppError::Storage(_) | AppError::Persistence(_) => ApiError::internal(e),
    }
}

/// 26. Makes a pending list for an order.
#[utoipa::path(
    post,
    path = "/api/depot/shopping",
    tag = "depot",
    operation_id = "depot.create_shopping_list",
    summary = "Create a shopping list",
    request_body(content = CreateRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::IdBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn create_shopping_list(
    State(depot): State<Depot>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    let items = body
        .items
        .into_iter()
        .map(|i| RequestedItem {
            product_id: i.product_id,
            store_id: i.store_id,
            quantity: i.quantity,
        })
        .collect();
    let id = depot
        .create_list(&body.order_id, items)
        .await
        .map_err(api_error)?;
    Ok(ApiJson(json!({ "id": id })))
}

/// 27. Cancels a list (`the shopping list cannot be canceled` once completed or canceled).
#[utoipa::path(
    post,
    path = "/api/depot/shopping/{id}",
    tag = "depot",
    operation_id = "depot.cancel_shopping_list",
    summary = "Cancel a shopping list",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn cancel_shopping_list(
    State(depot): State<Depot>,
    Path(id): Path<String>,
    ApiJson(NoFields {}): ApiJson<NoFields>,
) -> Result<ApiJson<Value>, ApiError> {
    depot
        .run(&id, ShoppingList::cancel)
        .await
        .map_err(api_error)?;
    Ok(ApiJson(json!({})))
}

/// 28. A bot takes an available list.
#[utoipa::path(
    put,
    path = "/api/depot/shopping/{id}/assign",
    tag = "depot",
    operation_id = "depot.assign_shopping_list",
    summary = "Assign a bot",
    params(("id" = String, Path, description = "The id")),
    request_body(content = AssignRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn assign_shopping_list(
    State(depot): State<Depot>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignRequest>,
) -> Result<ApiJson<Value>, ApiError> {
    depot
        .run(&id, |list| list.assign(&body.bot_id))
        .await
        .map_err(api_error)?;
    Ok(ApiJson(json!({})))
}

/// 29. The bot picked everything: the list completes and the order is told.
#[utoipa::path(
    put,
    path = "/api/depot/shopping/{id}/complete",
    tag = "depot",
    operation_id = "depot.complete_shopping_list",
    summary = "Complete a shopping list",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn complete_shopping_list(
    State(depot): State<Depot>,
    Path(id): Path<String>,
    ApiJson(NoFields {}): ApiJson<NoFields>,
) -> Result<ApiJson<Value>, ApiError> {
    depot
        .run(&id, ShoppingList::complete)
        .await
        .map_err(api_error)?;
    Ok(ApiJson(json!({})))
}

/// Reads a list (an addition: the original had no read endpoint).
#[utoipa::path(
    get,
    path = "/api/depot/shopping/{id}",
    tag = "depot",
    operation_id = "depot.get_shopping_list",
    summary = "Get a shopping list",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = GetListResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_shopping_list(
    State(depot): State<Depot>,
    Path(id): Path<String>,
) -> Result<ApiJson<Value>, ApiError> {
    let list = depot
        .get_list(&id)
        .await
        .map_err(api_error)?
        .ok_or_else(|| api_error(AppError::NotFound))?;
    Ok(ApiJson(json!({ "shoppingList": list_body(list) })))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_shopping_list,
    cancel_shopping_list,
    assign_shopping_list,
    complete_shopping_list,
    get_shopping_list
))]
pub struct ApiDoc;

/// `{"shoppingList": ShoppingList}` (documentation: the handler builds it as JSON).
#[derive(utoipa::ToSchema)]
#[schema(as = depot::GetListResponse)]
#[allow(dead_code)]
struct GetListResponse {
    #[schema(rename = "shoppingList")]
    shopping_list: ListBody,
}
