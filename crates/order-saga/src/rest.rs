//! `GET /api/cosec/sagas/{id}`: one create-order saga as JSON (status, step, data, why it
//! turned back or is stuck, and every command it sent), for end-to-end tests, operators and
//! admin tooling. The id is the order id. Read-only: the saga only moves on messages.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use platform::ApiError;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::create_order::CreateOrderData;
use crate::engine::{CommandRow, Orchestrator, SagaView, Status};

/// The routes under `/api/cosec`.
pub fn router(saga: Orchestrator<CreateOrderData>) -> Router {
    Router::new()
        .route("/api/cosec/sagas/{id}", get(get_saga))
        .with_state(saga)
}

/// A saga. Every field is present; absent texts and times are `""`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = cosec::SagaResponse)]
#[serde(rename_all = "camelCase")]
pub struct SagaResponse {
    /// The saga (= order) id.
    pub id: String,
    /// `cosec.CreateOrder`.
    pub saga_type: String,
    /// `running`, `compensating`, `completed`, `compensated` or `stuck`.
    #[schema(value_type = String)]
    pub status: Status,
    /// Index of the current (or last) step; -1 before the first.
    pub step: i32,
    /// Its name.
    pub step_name: String,
    /// Going backwards through compensations.
    pub compensating: bool,
    /// Finished (forwards or after compensating).
    pub done: bool,
    /// Why the saga needs a human.
    pub stuck_reason: String,
    /// Why the saga turned back (the step that failed or timed out).
    pub failure: String,
    /// The command whose reply the saga waits for (`""` if none).
    pub pending_command_id: String,
    /// Its message name.
    pub pending_command: String,
    /// When the outstanding step times out.
    pub deadline: String,
    /// Optimistic-concurrency version (bumped by every change).
    pub version: i64,
    /// The order as the saga knows it.
    #[schema(value_type = Object)]
    pub data: CreateOrderData,
    /// Every command sent, oldest first.
    pub commands: Vec<CommandResponse>,
}

/// One command the saga sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = cosec::CommandResponse)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponse {
    /// Envelope id (the reply's `Causation-Id`).
    pub id: String,
    /// Message name.
    pub name: String,
    /// The step that sent it.
    pub step: i32,
    /// Sent as a compensation.
    pub compensating: bool,
    /// When it was sent.
    pub issued_at: String,
    /// `success`, `failure`, `timed_out`, or `""` while outstanding.
    pub outcome: String,
    /// When the outcome was recorded.
    pub settled_at: String,
}

#[utoipa::path(
    get,
    path = "/api/cosec/sagas/{id}",
    tag = "cosec",
    operation_id = "cosec.get_saga",
    summary = "Get a create-order saga",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "Success", body = SagaResponse), (status = "default", description = "An error: `{code, message, details}` (spec/api.md §1.5)", body = platform::ApiErrorBody))
)]
async fn get_saga(
    State(saga): State<Orchestrator<CreateOrderData>>,
    Path(id): Path<String>,
) -> Result<axum::Json<SagaResponse>, ApiError> {
    let view = saga
        .view(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("saga not found"))?;
    let step_name = saga
        .definition()
        .step_at(view.saga.step)
        .map(|s| s.name().to_owned())
        .unwrap_or_default();
    Ok(axum::Json(response(view, step_name)))
}

fn response(view: SagaView<CreateOrderData>, step_name: String) -> SagaResponse {
    let SagaView { saga, commands } = view;
    let status = Status::of(&saga);
    let record = saga.data;
    let (pending_command_id, pending_command) = record
        .pending
        .map(|p| (p.command_id.to_string(), p.command))
        .unwrap_or_default();
    SagaResponse {
        id: saga.id,
        saga_type: saga.saga_type,
        status,
        step: saga.step,
        step_name,
        compensating: saga.compensating,
        done: saga.done,
        stuck_reason: saga.stuck_reason.unwrap_or_default(),
        failure: record.failure.unwrap_or_default(),
        pending_command_id,
        pending_command,
        deadline: timestamp(saga.deadline),
        version: saga.version,
        data: record.data,
        commands: commands.into_iter().map(command).collect(),
    }
}

fn command(row: CommandRow) -> CommandResponse {
    CommandResponse {
        id: row.command_id.to_string(),
        name: row.name,
        step: row.step,
        compensating: row.compensating,
        issued_at: timestamp(Some(row.issued_at)),
        outcome: row.outcome.unwrap_or_default(),
        settled_at: timestamp(row.settled_at),
    }
}

fn timestamp(at: Option<OffsetDateTime>) -> String {
    at.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// The OpenAPI paths of these routes (merged into the host's `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_saga))]
pub struct ApiDoc;
