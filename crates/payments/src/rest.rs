//! The REST API under `/api/payments` (spec api.md §2.7, endpoints 33–34): request and
//! response shapes, and the mapping of use-case errors to the spec's status codes and texts.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{post, put};
use platform::{ApiError, ApiJson, de_f64_lenient, de_string_lenient};
use serde::{Deserialize, Serialize};

use crate::application::{AppError, Payments};

/// The message for an unknown invoice: the original's text, kept so clients matching on it keep
/// working, now with 404 / code 5 instead of 500 / code 13.
pub const INVOICE_NOT_FOUND_MESSAGE: &str = "scanning invoice: sql: no rows in result set";

/// The routes, with the service as their state.
pub fn router(payments: Payments) -> Router {
    Router::new()
        .route("/api/payments", post(authorize_payment))
        .route("/api/payments/invoices/{id}/pay", put(pay_invoice))
        .with_state(payments)
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::InvoiceNotFound(_) => ApiError::not_found(INVOICE_NOT_FOUND_MESSAGE),
            AppError::Payment(e) => ApiError::bad_request(e.to_string()),
            AppError::Invoice(e) => ApiError::bad_request(e.to_string()),
            e @ (AppError::Database(_) | AppError::Persistence(_)) => ApiError::internal(e),
        }
    }
}

/// `POST /api/payments` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = payments::AuthorizePaymentRequest)]
struct AuthorizePaymentRequest {
    #[serde(
        default,
        rename = "customerId",
        alias = "customer_id",
        deserialize_with = "de_string_lenient"
    )]
    customer_id: String,
    #[serde(default, deserialize_with = "de_f64_lenient")]
    amount: f64,
}

/// A body the endpoint ignores; parsed anyway so malformed JSON is a 400, as in the original.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = payments::Ignored)]
struct Ignored {}

/// `{}`: the success body of a command without an answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = payments::Done)]
struct Done {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = payments::IdResponse)]
struct IdResponse {
    id: String,
}

#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    operation_id = "payments.authorize_payment",
    summary = "Authorize a payment",
    request_body(content = AuthorizePaymentRequest, content_type = "application/json"),
    responses((status = 200, description = "Success", body = IdResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn authorize_payment(
    State(payments): State<Payments>,
    ApiJson(body): ApiJson<AuthorizePaymentRequest>,
) -> Result<ApiJson<IdResponse>, ApiError> {
    let id = payments
        .authorize_payment(body.customer_id, body.amount)
        .await?;
    Ok(ApiJson(IdResponse { id }))
}

#[utoipa::path(
    put,
    path = "/api/payments/invoices/{id}/pay",
    tag = "payments",
    operation_id = "payments.pay_invoice",
    summary = "Pay an invoice",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = platform::EmptyBody), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn pay_invoice(
    State(payments): State<Payments>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<Ignored>,
) -> Result<ApiJson<Done>, ApiError> {
    payments.pay_invoice(&id).await?;
    Ok(ApiJson(Done {}))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(authorize_payment, pay_invoice))]
pub struct ApiDoc;
