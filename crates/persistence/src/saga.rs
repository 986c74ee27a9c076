//! The saga store: one row per saga instance with its step, direction, completion, data and
//! step deadline. Updates are optimistic: each carries the version it loaded and fails with
//! [`Error::SagaConflict`] if another writer got there first, so two replies racing for the same
//! step cannot both advance it (the loser's message is retried and sees the new state).
//! Data is JSON so operators can read a stuck saga with plain SQL.

use std::sync::LazyLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// A saga instance. `version` is 0 until [`insert`]ed; every [`update`] bumps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Saga<D> {
    /// The saga definition, e.g. `cosec.CreateOrder`.
    pub saga_type: String,
    /// The instance id (the business key, e.g. the order id, so a re-sent trigger cannot start
    /// a second instance).
    pub id: String,
    /// Optimistic concurrency version.
    pub version: i64,
    /// Index of the step whose command is outstanding (-1 before the first).
    pub step: i32,
    /// Running backwards through compensations.
    pub compensating: bool,
    /// Finished (forwards or after compensating).
    pub done: bool,
    /// The saga's own data.
    pub data: D,
    /// When the outstanding step times out, if it can.
    pub deadline: Option<OffsetDateTime>,
    /// Why the saga cannot go on by itself (a failed compensation...), for alerts and humans.
    pub stuck_reason: Option<String>,
}

impl<D> Saga<D> {
    /// A new instance before its first step.
    pub fn new(saga_type: impl Into<String>, id: impl Into<String>, data: D) -> Self {
        Saga {
            saga_type: saga_type.into(),
            id: id.into(),
            version: 0,
            step: -1,
            compensating: false,
            done: false,
            data,
            deadline: None,
            stuck_reason: None,
        }
    }

    fn name(&self) -> String {
        saga_name(&self.saga_type, &self.id)
    }
}

/// A saga past its deadline, as the timeout sweeper sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Overdue {
    /// Its id.
    pub id: String,
    /// The step that timed out.
    pub step: i32,
    /// Whether it was compensating.
    pub compensating: bool,
    /// The deadline that passed.
    pub deadline: OffsetDateTime,
    /// Its version, for a following update.
    pub version: i64,
}

/// Inserts a new instance (version 0) and sets its version to 1. An instance with the same type
/// and id already existing is a [`Error::SagaConflict`] with `expected` 0: the trigger was seen
/// before.
pub async fn insert<D: Serialize>(conn: &mut PgConnection, saga: &mut Saga<D>) -> Result<()> {
    let data = to_json(saga)?;
    let inserted = sqlx::query(
        "INSERT INTO sagas
             (saga_type, id, version, step, compensating, done, data, deadline, stuck_reason)
         VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (saga_type, id) DO NOTHING",
    )
    .bind(&saga.saga_type)
    .bind(&saga.id)
    .bind(saga.step)
    .bind(saga.compensating)
    .bind(saga.done)
    .bind(data)
    .bind(saga.deadline)
    .bind(&saga.stuck_reason)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(conflict(conn, saga, 0).await);
    }
    saga.version = 1;
    Ok(())
}

/// Loads an instance; `None` if there is none.
pub async fn load<D: DeserializeOwned>(
    conn: &mut PgConnection,
    saga_type: &str,
    id: &str,
) -> Result<Option<Saga<D>>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_type = $1 AND id = $2")
    });
    let row: Option<SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(saga_type)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|row| decode(saga_type, row)).transpose()
}

/// The columns of `sagas` that [`decode`] reads, in its order, for callers that find an
/// instance through a join of their own (one statement instead of a look-up and a load).
pub const SAGA_COLUMNS: &str =
    "id, version, step, compensating, done, data, deadline, stuck_reason";

/// One row of [`SAGA_COLUMNS`].
pub type SagaRow = (
    String,
    i64,
    i32,
    bool,
    bool,
    Json<serde_json::Value>,
    Option<OffsetDateTime>,
    Option<String>,
);

/// The instance of type `saga_type` a [`SAGA_COLUMNS`] row holds.
pub fn decode<D: DeserializeOwned>(saga_type: &str, row: SagaRow) -> Result<Saga<D>> {
    let (id, version, step, compensating, done, Json(data), deadline, stuck_reason) = row;
    let data = serde_json::from_value(data).map_err(|e| Error::SagaData {
        saga: saga_name(saga_type, &id),
        reason: e.to_string(),
    })?;
    Ok(Saga {
        saga_type: saga_type.to_owned(),
        id,
        version,
        step,
        compensating,
        done,
        data,
        deadline,
        stuck_reason,
    })
}

/// Writes the instance if its stored version is still `saga.version`, then bumps the version.
/// Otherwise nothing is written and the error is [`Error::SagaConflict`].
pub async fn update<D: Serialize>(conn: &mut PgConnection, saga: &mut Saga<D>) -> Result<()> {
    let data = to_json(saga)?;
    let updated = sqlx::query(
        "UPDATE sagas SET version = version + 1, step = $4, compensating = $5, done = $6,
             data = $7, deadline = $8, stuck_reason = $9, updated_at = now()
         WHERE saga_type = $1 AND id = $2 AND version = $3",
    )
    .bind(&saga.saga_type)
    .bind(&saga.id)
    .bind(saga.version)
    .bind(saga.step)
    .bind(saga.compensating)
    .bind(saga.done)
    .bind(data)
    .bind(saga.deadline)
    .bind(&saga.stuck_reason)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(conflict(conn, saga, saga.version).await);
    }
    saga.version += 1;
    Ok(())
}

/// Running, not stuck instances of `saga_type` whose deadline has passed, oldest deadline
/// first, at most `limit`. Inside a transaction the rows are locked and rows locked by another
/// sweeper are skipped, so several instances can sweep at once without doing the same work.
pub async fn overdue(conn: &mut PgConnection, saga_type: &str, limit: i64) -> Result<Vec<Overdue>> {
    let rows = sqlx::query_as(
        "SELECT id, step, compensating, deadline, version FROM sagas
         WHERE saga_type = $1 AND NOT done AND stuck_reason IS NULL AND deadline <= now()
         ORDER BY deadline
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(saga_type)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

fn to_json<D: Serialize>(saga: &Saga<D>) -> Result<Json<serde_json::Value>> {
    serde_json::to_value(&saga.data)
        .map(Json)
        .map_err(|e| Error::SagaData {
            saga: saga.name(),
            reason: e.to_string(),
        })
}

/// The conflict error, with the version actually stored (if the lookup itself fails, the
/// database error is what the caller needs to see).
async fn conflict<D>(conn: &mut PgConnection, saga: &Saga<D>, expected: i64) -> Error {
    let actual = sqlx::query_scalar("SELECT version FROM sagas WHERE saga_type = $1 AND id = $2")
        .bind(&saga.saga_type)
        .bind(&saga.id)
        .fetch_optional(conn)
        .await;
    match actual {
        Ok(actual) => Error::SagaConflict {
            saga: saga.name(),
            expected,
            actual,
        },
        Err(e) => Error::Database(e),
    }
}

fn saga_name(saga_type: &str, id: &str) -> String {
    format!("{saga_type}/{id}")
}
