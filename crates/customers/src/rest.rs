//! The REST API under `/api/customers` (spec api.md §2.4, endpoints 21–25): request and
//! response shapes, and the mapping of use-case errors to the spec's status codes and texts.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use platform::{ApiError, ApiJson, de_string_lenient};
use serde::{Deserialize, Serialize};

use crate::application::{AppError, Customers};
use crate::domain::{Customer, CustomerError};

/// The message for an unknown customer: the original's text (its raw driver error), kept so
/// clients matching on it keep working, now with 404 / code 5 instead of 500 / code 2.
pub const NOT_FOUND_MESSAGE: &str = "sql: no rows in result set";

/// The routes, with the service as their state.
pub fn router(customers: Customers) -> Router {
    Router::new()
        .route("/api/customers", post(register))
        .route("/api/customers/{id}", get(get_customer))
        .route("/api/customers/{id}/change-sms", put(change_sms_number))
        .route("/api/customers/{id}/enable", put(enable))
        .route("/api/customers/{id}/disable", put(disable))
        .with_state(customers)
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(_) => ApiError::not_found(NOT_FOUND_MESSAGE),
            AppError::Domain(CustomerError::NotAuthorized) => {
                ApiError::unauthorized(CustomerError::NotAuthorized.to_string())
            }
            AppError::Domain(e) => ApiError::bad_request(e.to_string()),
            e @ (AppError::Database(_) | AppError::Persistence(_)) => ApiError::internal(e),
        }
    }
}

/// `POST /api/customers` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = customers::RegisterRequest)]
struct RegisterRequest {
    #[serde(default, deserialize_with = "de_string_lenient")]
    name: String,
    #[serde(
        default,
        rename = "smsNumber",
        alias = "sms_number",
        deserialize_with = "de_string_lenient"
    )]
    sms_number: String,
}

/// `PUT /api/customers/{id}/change-sms` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = customers::ChangeSmsRequest)]
struct ChangeSmsRequest {
    #[serde(
        default,
        rename = "smsNumber",
        alias = "sms_number",
        deserialize_with = "de_string_lenient"
    )]
    sms_number: String,
}

/// A body the endpoint ignores; parsed anyway so malformed JSON is a 400, as in the original.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = customers::Ignored)]
struct Ignored {}

/// `{}`: the success body of every command without an answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = customers::Done)]
struct Done {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = customers::IdResponse)]
struct IdResponse {
    id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = customers::CustomerDto)]
#[serde(rename_all = "camelCase")]
struct CustomerDto {
    id: String,
    name: String,
    sms_number: String,
    enabled: bool,
}

impl From<Customer> for CustomerDto {
    fn from(c: Customer) -> Self {
        CustomerDto {
            id: c.id,
            name: c.name,
            sms_number: c.sms_number,
            enabled: c.enabled,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = customers::CustomerResponse)]
struct CustomerResponse {
    customer: CustomerDto,
}

#[utoipa::path(
    post,
    path = "/api/customers",
    tag = "customers",
    operation_id = "customers.register",
    summary = "Register a customer",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = IdResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn register(
    State(customers): State<Customers>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<ApiJson<IdResponse>, ApiError> {
    let id = customers.register(body.name, body.sms_number).await?;
    Ok(ApiJson(IdResponse { id }))
}

#[utoipa::path(
    get,
    path = "/api/customers/{id}",
    tag = "customers",
    operation_id = "customers.get_customer",
    summary = "Get a customer",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = CustomerResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_customer(
    State(customers): State<Customers>,
    Path(id): Path<String>,
) -> Result<ApiJson<CustomerResponse>, ApiError> {
    let customer = customers.get(&id).await?;
    Ok(ApiJson(CustomerResponse {
        customer: customer.into(),
    }))
}

#[utoipa::path(
    put,
    path = "/api/customers/{id}/change-sms",
    tag = "customers",
    operation_id = "customers.change_sms_number",
    summary = "Change the SMS number",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ChangeSmsRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn change_sms_number(
    State(customers): State<Customers>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeSmsRequest>,
) -> Result<ApiJson<Done>, ApiError> {
    customers.change_sms_number(&id, body.sms_number).await?;
    Ok(ApiJson(Done {}))
}

#[utoipa::path(
    put,
    path = "/api/customers/{id}/enable",
    tag = "customers",
    operation_id = "customers.enable",
    summary = "Enable a customer",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn enable(
    State(customers): State<Customers>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<Ignored>,
) -> Result<ApiJson<Done>, ApiError> {
    customers.enable(&id).await?;
    Ok(ApiJson(Done {}))
}

#[utoipa::path(
    put,
    path = "/api/customers/{id}/disable",
    tag = "customers",
    operation_id = "customers.disable",
    summary = "Disable a customer",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn disable(
    State(customers): State<Customers>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<Ignored>,
) -> Result<ApiJson<Done>, ApiError> {
    customers.disable(&id).await?;
    Ok(ApiJson(Done {}))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, get_customer, change_sms_number, enable, disable))]
pub struct ApiDoc;
