//! The REST API under `/api/stores` (spec api.md §2.2, endpoints 1-14): request and response
//! shapes, and the one mapping from use-case errors to the `{code, message, details}` body.
//!
//! Input is lenient as the original's: missing fields and `null` are zero values, numbers may
//! come as strings, unknown fields are ignored, an empty body is `{}`; path ids win over body
//! fields of the same name (the body's `id`/`storeId` are simply not read). Output is camelCase
//! with every field present.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use platform::{ApiError, ApiJson, de_f64_lenient, de_string_lenient};
use serde::{Deserialize, Serialize};

use crate::application::{AppError, NewProduct, Stores};
use crate::postgres::{ProductRow, StoreRow};

/// The routes, with the use cases as state.
///
/// `/api/stores/participating` is a static segment, which the router prefers over
/// `/api/stores/{id}`: it lists the participating stores and is never read as a store id.
pub fn router(stores: Arc<Stores>) -> Router {
    Router::new()
        .route("/api/stores", post(create_store).get(get_stores))
        .route("/api/stores/participating", get(get_participating_stores))
        .route("/api/stores/{id}", get(get_store))
        .route(
            "/api/stores/{id}/participating",
            put(enable_participation).delete(disable_participation),
        )
        .route("/api/stores/{id}/rebrand", put(rebrand_store))
        .route(
            "/api/stores/{id}/products",
            post(add_product).get(get_catalog),
        )
        .route(
            "/api/stores/products/{id}",
            get(get_product).delete(remove_product),
        )
        .route("/api/stores/products/{id}/rebrand", put(rebrand_product))
        .route(
            "/api/stores/products/{id}/increasePrice",
            put(increase_product_price),
        )
        .route(
            "/api/stores/products/{id}/decreasePrice",
            put(decrease_product_price),
        )
        .with_state(stores)
}

/// The one table from use-case errors to API errors.
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(message) => ApiError::bad_request(message),
            AppError::NotFound(message) => ApiError::not_found(message),
            AppError::Conflict(message) => ApiError::conflict(message),
            AppError::Unexpected(cause) => ApiError::internal(format!("{cause:#}")),
        }
    }
}

type Result<T> = std::result::Result<ApiJson<T>, ApiError>;

/// The `{id}` path segment. Ids are opaque strings (no format check, as the original); a
/// segment that does not decode is a 400 in the API's error shape, not axum's plain text.
struct PathId(String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> std::result::Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| PathId(id))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!("invalid path: {}", e.body_text()))
            })
    }
}

// ---- request bodies ----

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::CreateStoreRequest)]
struct CreateStoreRequest {
    #[serde(default, deserialize_with = "de_string_lenient")]
    name: String,
    #[serde(default, deserialize_with = "de_string_lenient")]
    location: String,
}

/// A body the endpoint does not read; it must still be JSON (an object, or empty).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::IgnoredBody)]
struct IgnoredBody {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::RebrandStoreRequest)]
struct RebrandStoreRequest {
    #[serde(default, deserialize_with = "de_string_lenient")]
    name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::AddProductRequest)]
struct AddProductRequest {
    #[serde(default, deserialize_with = "de_string_lenient")]
    name: String,
    #[serde(default, deserialize_with = "de_string_lenient")]
    description: String,
    #[serde(default, deserialize_with = "de_string_lenient")]
    sku: String,
    #[serde(default, deserialize_with = "de_f64_lenient")]
    price: f64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::RebrandProductRequest)]
struct RebrandProductRequest {
    #[serde(default, deserialize_with = "de_string_lenient")]
    name: String,
    #[serde(default, deserialize_with = "de_string_lenient")]
    description: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = stores::ChangePriceRequest)]
struct ChangePriceRequest {
    #[serde(default, deserialize_with = "de_f64_lenient")]
    price: f64,
}

// ---- response bodies ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::IdResponse)]
struct IdResponse {
    id: String,
}

/// `{}`: the body of every command that creates nothing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::EmptyResponse)]
struct EmptyResponse {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::StoreDto)]
#[serde(rename_all = "camelCase")]
struct StoreDto {
    id: String,
    name: String,
    location: String,
    participating: bool,
}

impl From<StoreRow> for StoreDto {
    fn from(row: StoreRow) -> Self {
        StoreDto {
            id: row.id,
            name: row.name,
            location: row.location,
            participating: row.participating,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::ProductDto)]
#[serde(rename_all = "camelCase")]
struct ProductDto {
    id: String,
    store_id: String,
    name: String,
    description: String,
    sku: String,
    #[serde(serialize_with = "protojson_double")]
    price: f64,
}

/// A `double` as protojson writes it: an integral value without a fraction (`10`, not `10.0`),
/// so bodies read the same as the original's. Beyond 2^53 an `f64` is no longer exact as an
/// integer, and non-finite prices are refused on input, so the float form is kept there.
fn protojson_double<S: serde::Serializer>(
    value: &f64,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

impl From<ProductRow> for ProductDto {
    fn from(row: ProductRow) -> Self {
        ProductDto {
            id: row.id,
            store_id: row.store_id,
            name: row.name,
            description: row.description,
            sku: row.sku,
            price: row.price,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::StoreResponse)]
struct StoreResponse {
    store: StoreDto,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::StoresResponse)]
struct StoresResponse {
    stores: Vec<StoreDto>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::ProductResponse)]
struct ProductResponse {
    product: ProductDto,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = stores::ProductsResponse)]
struct ProductsResponse {
    products: Vec<ProductDto>,
}

// ---- handlers ----

/// 1. `POST /api/stores`
#[utoipa::path(
    post,
    path = "/api/stores",
    tag = "stores",
    operation_id = "stores.create_store",
    summary = "Create a store",
    request_body(content = CreateStoreRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = IdResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn create_store(
    State(stores): State<Arc<Stores>>,
    ApiJson(body): ApiJson<CreateStoreRequest>,
) -> Result<IdResponse> {
    let id = stores.create_store(&body.name, &body.location).await?;
    Ok(ApiJson(IdResponse { id }))
}

/// 2. `GET /api/stores`
#[utoipa::path(
    get,
    path = "/api/stores",
    tag = "stores",
    operation_id = "stores.get_stores",
    summary = "List stores",
    responses((status = 200, description = "Success", body = StoresResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_stores(State(stores): State<Arc<Stores>>) -> Result<StoresResponse> {
    let rows = stores.stores().await?;
    Ok(ApiJson(StoresResponse {
        stores: rows.into_iter().map(StoreDto::from).collect(),
    }))
}

/// 3. `GET /api/stores/participating`
#[utoipa::path(
    get,
    path = "/api/stores/participating",
    tag = "stores",
    operation_id = "stores.get_participating_stores",
    summary = "List participating stores",
    responses((status = 200, description = "Success", body = StoresResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_participating_stores(State(stores): State<Arc<Stores>>) -> Result<StoresResponse> {
    let rows = stores.participating_stores().await?;
    Ok(ApiJson(StoresResponse {
        stores: rows.into_iter().map(StoreDto::from).collect(),
    }))
}

/// 4. `GET /api/stores/{id}`
#[utoipa::path(
    get,
    path = "/api/stores/{id}",
    tag = "stores",
    operation_id = "stores.get_store",
    summary = "Get a store",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = StoreResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_store(State(stores): State<Arc<Stores>>, PathId(id): PathId) -> Result<StoreResponse> {
    let row = stores
        .find_store(&id)
        .await?
        .ok_or_else(AppError::store_not_found)?;
    Ok(ApiJson(StoreResponse { store: row.into() }))
}

/// 5. `PUT /api/stores/{id}/participating`
#[utoipa::path(
    put,
    path = "/api/stores/{id}/participating",
    tag = "stores",
    operation_id = "stores.enable_participation",
    summary = "Enable participation",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn enable_participation(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
    ApiJson(_): ApiJson<IgnoredBody>,
) -> Result<EmptyResponse> {
    stores.enable_participation(&id).await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 6. `DELETE /api/stores/{id}/participating`
#[utoipa::path(
    delete,
    path = "/api/stores/{id}/participating",
    tag = "stores",
    operation_id = "stores.disable_participation",
    summary = "Disable participation",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn disable_participation(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
) -> Result<EmptyResponse> {
    stores.disable_participation(&id).await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 7. `PUT /api/stores/{id}/rebrand`
#[utoipa::path(
    put,
    path = "/api/stores/{id}/rebrand",
    tag = "stores",
    operation_id = "stores.rebrand_store",
    summary = "Rebrand a store",
    params(("id" = String, Path, description = "The id")),
    request_body(content = RebrandStoreRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn rebrand_store(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<RebrandStoreRequest>,
) -> Result<EmptyResponse> {
    stores.rebrand_store(&id, &body.name).await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 8. `POST /api/stores/{storeId}/products`
#[utoipa::path(
    post,
    path = "/api/stores/{id}/products",
    tag = "stores",
    operation_id = "stores.add_product",
    summary = "Add a product",
    params(("id" = String, Path, description = "The id")),
    request_body(content = AddProductRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = IdResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn add_product(
    State(stores): State<Arc<Stores>>,
    PathId(store_id): PathId,
    ApiJson(body): ApiJson<AddProductRequest>,
) -> Result<IdResponse> {
    let new = NewProduct {
        name: body.name,
        description: body.description,
        sku: body.sku,
        price: body.price,
    };
    let id = stores.add_product(&store_id, &new).await?;
    Ok(ApiJson(IdResponse { id }))
}

/// 9. `GET /api/stores/{storeId}/products`
#[utoipa::path(
    get,
    path = "/api/stores/{id}/products",
    tag = "stores",
    operation_id = "stores.get_catalog",
    summary = "List a store's products",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = ProductsResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_catalog(
    State(stores): State<Arc<Stores>>,
    PathId(store_id): PathId,
) -> Result<ProductsResponse> {
    let rows = stores.catalog(&store_id).await?;
    Ok(ApiJson(ProductsResponse {
        products: rows.into_iter().map(ProductDto::from).collect(),
    }))
}

/// 10. `GET /api/stores/products/{id}`
#[utoipa::path(
    get,
    path = "/api/stores/products/{id}",
    tag = "stores",
    operation_id = "stores.get_product",
    summary = "Get a product",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = ProductResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_product(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
) -> Result<ProductResponse> {
    let row = stores
        .find_product(&id)
        .await?
        .ok_or_else(AppError::product_not_found)?;
    Ok(ApiJson(ProductResponse {
        product: row.into(),
    }))
}

/// 11. `PUT /api/stores/products/{id}/rebrand`
#[utoipa::path(
    put,
    path = "/api/stores/products/{id}/rebrand",
    tag = "stores",
    operation_id = "stores.rebrand_product",
    summary = "Rebrand a product",
    params(("id" = String, Path, description = "The id")),
    request_body(content = RebrandProductRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn rebrand_product(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<RebrandProductRequest>,
) -> Result<EmptyResponse> {
    stores
        .rebrand_product(&id, &body.name, &body.description)
        .await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 12. `PUT /api/stores/products/{id}/increasePrice`
#[utoipa::path(
    put,
    path = "/api/stores/products/{id}/increasePrice",
    tag = "stores",
    operation_id = "stores.increase_product_price",
    summary = "Increase a price",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ChangePriceRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn increase_product_price(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ChangePriceRequest>,
) -> Result<EmptyResponse> {
    stores.increase_price(&id, body.price).await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 13. `PUT /api/stores/products/{id}/decreasePrice`
#[utoipa::path(
    put,
    path = "/api/stores/products/{id}/decreasePrice",
    tag = "stores",
    operation_id = "stores.decrease_product_price",
    summary = "Decrease a price",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ChangePriceRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn decrease_product_price(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ChangePriceRequest>,
) -> Result<EmptyResponse> {
    stores.decrease_price(&id, body.price).await?;
    Ok(ApiJson(EmptyResponse {}))
}

/// 14. `DELETE /api/stores/products/{id}`
#[utoipa::path(
    delete,
    path = "/api/stores/products/{id}",
    tag = "stores",
    operation_id = "stores.remove_product",
    summary = "Remove a product",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn remove_product(
    State(stores): State<Arc<Stores>>,
    PathId(id): PathId,
) -> Result<EmptyResponse> {
    stores.remove_product(&id).await?;
    Ok(ApiJson(EmptyResponse {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(price: f64) -> String {
        serde_json::to_string(&ProductDto {
            id: "p".into(),
            store_id: "s".into(),
            name: "n".into(),
            description: String::new(),
            sku: String::new(),
            price,
        })
        .unwrap()
    }

    #[test]
    fn products_render_camel_case_with_protojson_doubles() {
        assert_eq!(
            product(9.99),
            r#"{"id":"p","storeId":"s","name":"n","description":"","sku":"","price":9.99}"#
        );
        assert!(product(10.0).ends_with(r#""price":10}"#));
        assert!(product(0.0).ends_with(r#""price":0}"#));
        assert!(product(-0.0).ends_with(r#""price":0}"#));
        assert!(product(150_000.0).ends_with(r#""price":150000}"#));
        let huge = product(1e300);
        assert!(huge.ends_with(r#""price":1e+300}"#), "{huge}");
    }
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_store,
    get_stores,
    get_participating_stores,
    get_store,
    enable_participation,
    disable_participation,
    rebrand_store,
    add_product,
    get_catalog,
    get_product,
    rebrand_product,
    increase_product_price,
    decrease_product_price,
    remove_product
))]
pub struct ApiDoc;
