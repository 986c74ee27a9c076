//! The engine's own table, `saga_commands`: one row per command sent, written in the same
//! transaction as the saga row and the outbox row. Replies are matched through it (their
//! `Causation-Id` is a command id), and it is the saga's visible history.

use std::sync::LazyLock;

use persistence::saga::{self, Saga};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use super::decision::{Issued, Settlement};
use super::definition::Mode;

/// One logged command.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommandRow {
    /// The command's envelope id.
    pub command_id: Uuid,
    /// The step that sent it.
    pub step: i32,
    /// Sent as a compensation.
    pub compensating: bool,
    /// The command's message name.
    pub name: String,
    /// When it was enqueued.
    pub issued_at: OffsetDateTime,
    /// `success`, `failure`, `timed_out`, or `None` while outstanding.
    pub outcome: Option<String>,
    /// When the outcome was recorded.
    pub settled_at: Option<OffsetDateTime>,
}

/// Logs a command `saga_id` sends.
pub async fn record(
    conn: &mut PgConnection,
    saga_type: &str,
    saga_id: &str,
    issued: &Issued,
) -> sqlx::Result<()> {
    let insert = sqlx::query(
        "INSERT INTO saga_commands (command_id, saga_type, saga_id, step, compensating, name)
         VALUES ($1, $2, $3, $4, $5, $6)",
    );
    bind_command(insert, saga_type, saga_id, issued)
        .execute(conn)
        .await?;
    Ok(())
}

/// Binds the columns of a logged command — command_id, saga_type, saga_id, step,
/// compensating, name, in that order — after what `query` has bound already.
fn bind_command<'q>(
    query: Query<'q, Postgres, PgArguments>,
    saga_type: &'q str,
    saga_id: &'q str,
    issued: &'q Issued,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(issued.envelope.id)
        .bind(saga_type)
        .bind(saga_id)
        .bind(issued.step)
        .bind(issued.mode == Mode::Compensation)
        .bind(&issued.envelope.name)
}

/// The saga that sent `command_id`, if one of `saga_type` did.
pub async fn saga_of(
    conn: &mut PgConnection,
    saga_type: &str,
    command_id: Uuid,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT saga_id FROM saga_commands WHERE command_id = $1 AND saga_type = $2")
        .bind(command_id)
        .bind(saga_type)
        .fetch_optional(conn)
        .await
}

/// The instance of `saga_type` that sent `command_id`, found and loaded in one statement (a
/// reply's hot path). `None` when there is no such command or its saga is missing; [`saga_of`]
/// tells the two apart.
pub async fn saga_of_command<D: DeserializeOwned>(
    conn: &mut PgConnection,
    saga_type: &str,
    command_id: Uuid,
) -> persistence::Result<Option<Saga<D>>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM sagas WHERE saga_type = $2 AND id = (
                 SELECT saga_id FROM saga_commands WHERE command_id = $1 AND saga_type = $2)",
            saga::SAGA_COLUMNS
        )
    });
    let row: Option<saga::SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(command_id)
        .bind(saga_type)
        .fetch_optional(conn)
        .await?;
    row.map(|row| saga::decode(saga_type, row)).transpose()
}

/// Records how `command_id` was answered (a late reply after a timeout overwrites
/// `timed_out`: the log shows what finally happened).
pub async fn settle(
    conn: &mut PgConnection,
    command_id: Uuid,
    settlement: Settlement,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE saga_commands SET outcome = $2, settled_at = now() WHERE command_id = $1")
        .bind(command_id)
        .bind(settlement.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// [`settle`] then [`record`] in one statement (one round trip on every reply that moves the
/// saga on to its next command).
pub async fn settle_and_record(
    conn: &mut PgConnection,
    (command_id, settlement): (Uuid, Settlement),
    saga_type: &str,
    saga_id: &str,
    issued: &Issued,
) -> sqlx::Result<()> {
    let statement = sqlx::query(
        "WITH settled AS (
             UPDATE saga_commands SET outcome = $2, settled_at = now() WHERE command_id = $1
         )
         INSERT INTO saga_commands (command_id, saga_type, saga_id, step, compensating, name)
         VALUES ($3, $4, $5, $6, $7, $8)",
    )
    .bind(command_id)
    .bind(settlement.as_str());
    bind_command(statement, saga_type, saga_id, issued)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every command `saga_id` sent, oldest first.
pub async fn history(
    conn: &mut PgConnection,
    saga_type: &str,
    saga_id: &str,
) -> sqlx::Result<Vec<CommandRow>> {
    sqlx::query_as(
        "SELECT command_id, step, compensating, name, issued_at, outcome, settled_at
         FROM saga_commands WHERE saga_type = $1 AND saga_id = $2
         ORDER BY issued_at, command_id",
    )
    .bind(saga_type)
    .bind(saga_id)
    .fetch_all(conn)
    .await
}
