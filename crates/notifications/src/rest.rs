//! The REST API, an addition to the original (which had none for notifications): the recorded
//! texts, so users and end-to-end tests can see what was sent.
//!
//! - `GET /api/notifications?orderId=<id>&customerId=<id>` — both filters optional (snake_case
//!   accepted too), oldest first, at most the newest [`LIST_LIMIT`](crate::postgres::LIST_LIMIT);
//! - `GET /api/notifications/orders/{id}` — the texts about one order.
//!
//! Both answer `{"notifications": [{"id", "orderId", "customerId", "smsNumber", "kind", "text",
//! "sentAt"}]}` with `sentAt` in RFC 3339.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use platform::{ApiError, ApiJson};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;

use crate::postgres::{self, NotificationRow};

/// The routes under `/api/notifications`.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/api/notifications", get(list))
        .route("/api/notifications/orders/{id}", get(by_order))
        .with_state(pool)
}

/// Query string of the listing.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = notifications::ListParams)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(default, alias = "order_id")]
    order_id: Option<String>,
    #[serde(default, alias = "customer_id")]
    customer_id: Option<String>,
}

/// One recorded text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = notifications::NotificationDto)]
#[serde(rename_all = "camelCase")]
struct NotificationDto {
    id: String,
    order_id: String,
    customer_id: String,
    sms_number: String,
    kind: String,
    text: String,
    sent_at: String,
}

impl From<NotificationRow> for NotificationDto {
    fn from(row: NotificationRow) -> Self {
        NotificationDto {
            id: row.id.to_string(),
            order_id: row.order_id,
            customer_id: row.customer_id,
            sms_number: row.sms_number,
            kind: row.kind,
            text: row.text,
            sent_at: row.sent_at.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = notifications::ListResponse)]
struct ListResponse {
    notifications: Vec<NotificationDto>,
}

/// An empty parameter means "no filter", as a missing one.
fn filter(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "notifications",
    operation_id = "notifications.list",
    summary = "List sent notifications",
    params(("orderId" = Option<String>, Query, description = "Only this order's"), ("customerId" = Option<String>, Query, description = "Only this customer's")),
    responses((status = 200, description = "Success", body = ListResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn list(
    State(pool): State<PgPool>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ApiJson<ListResponse>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))?;
    respond(&pool, filter(&params.order_id), filter(&params.customer_id)).await
}

#[utoipa::path(
    get,
    path = "/api/notifications/orders/{id}",
    tag = "notifications",
    operation_id = "notifications.by_order",
    summary = "Notifications of an order",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = ListResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn by_order(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
) -> Result<ApiJson<ListResponse>, ApiError> {
    respond(&pool, Some(id.as_str()), None).await
}

async fn respond(
    pool: &PgPool,
    order_id: Option<&str>,
    customer_id: Option<&str>,
) -> Result<ApiJson<ListResponse>, ApiError> {
    let rows = postgres::list_notifications(pool, order_id, customer_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(ApiJson(ListResponse {
        notifications: rows.into_iter().map(NotificationDto::from).collect(),
    }))
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, by_order))]
pub struct ApiDoc;
