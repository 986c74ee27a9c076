//! Saga instances of the order-saga engine (schema `cosec` by default): rows of `sagas`
//! (persistence crate: versioned, `data` = the engine's record `{data, pending, correlationId,
//! traceParent, failure}`) and the engine's command log `saga_commands`.
//!
//! The engine has no public operation to re-send a step or to abort, so `retry` and `abort` are
//! done here with SQL in one transaction each, in the engine's row format, with the same
//! optimistic version check the engine uses; `retry` sends through the schema's outbox (the
//! module's relay publishes it), exactly as the engine sends its commands.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use messaging::{Envelope, TraceParent, header};
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::config::Settings;
use crate::output::{Table, clip, or_dash, parse_duration, print_json};

/// Which sagas a command addresses.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The schema holding the saga tables.
    #[arg(long, default_value = "cosec")]
    pub schema: String,
    /// The saga type (e.g. `cosec.CreateOrder`); needed only when an id exists for several.
    #[arg(long = "type")]
    pub saga_type: Option<String>,
}

/// A status to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Going forwards, a command outstanding.
    Running,
    /// Going backwards, a compensation outstanding.
    Compensating,
    /// Finished forwards.
    Completed,
    /// Finished after compensating.
    Compensated,
    /// Waiting for a human.
    Stuck,
    /// Ended by an operator (`saga abort`).
    Aborted,
}

impl StatusFilter {
    fn sql(self) -> &'static str {
        match self {
            StatusFilter::Running => "stuck_reason IS NULL AND NOT done AND NOT compensating",
            StatusFilter::Compensating => "stuck_reason IS NULL AND NOT done AND compensating",
            StatusFilter::Completed => {
                "stuck_reason IS NULL AND done AND NOT compensating AND data->'aborted' IS NULL"
            }
            StatusFilter::Compensated => {
                "stuck_reason IS NULL AND done AND compensating AND data->'aborted' IS NULL"
            }
            StatusFilter::Stuck => "stuck_reason IS NOT NULL",
            StatusFilter::Aborted => "done AND data->'aborted' IS NOT NULL",
        }
    }
}

/// `saga` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SagaCommand {
    /// Sagas, most recently changed first.
    List {
        /// Only sagas with this status.
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        target: Target,
    },
    /// One saga: its row and every command it sent.
    Show {
        /// The saga id (for the create-order saga: the order id).
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Re-sends the command of the step a stuck saga is waiting on (the failed or unanswered
    /// command, with a new id) and makes that the outstanding command again.
    Retry {
        /// The saga id.
        id: String,
        /// How long the re-sent command may wait for its reply before the engine's sweeper
        /// handles it as the engine would (`SAGA_STEP_TIMEOUT`).
        #[arg(long, env = "SAGA_STEP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
        step_timeout: Duration,
        #[command(flatten)]
        target: Target,
    },
    /// Ends a saga for good (done, marked aborted with the reason); later replies are ignored.
    Abort {
        /// The saga id.
        id: String,
        /// Why (shown by `saga show` and kept in the row).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
}

/// A `sagas` row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    saga_type: String,
    id: String,
    version: i64,
    step: i32,
    compensating: bool,
    done: bool,
    data: Json<Value>,
    deadline: Option<OffsetDateTime>,
    stuck_reason: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

const COLUMNS: &str = "saga_type, id, version, step, compensating, done, data, deadline, \
                       stuck_reason, created_at, updated_at";

impl Row {
    fn status(&self) -> &'static str {
        status_of(
            self.done,
            self.compensating,
            self.stuck_reason.is_some(),
            &self.data.0,
        )
    }

    fn pending(&self) -> Option<(Uuid, String)> {
        let pending = self.data.0.get("pending")?;
        let id = pending.get("commandId")?.as_str()?.parse().ok()?;
        let name = pending
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some((id, name))
    }

    fn failure(&self) -> Option<&str> {
        self.data.0.get("failure").and_then(Value::as_str)
    }

    fn summary(&self) -> Value {
        let pending = self.pending();
        json!({
            "sagaType": self.saga_type,
            "id": self.id,
            "status": self.status(),
            "step": self.step,
            "stepName": step_name(&self.saga_type, self.step),
            "compensating": self.compensating,
            "done": self.done,
            "version": self.version,
            "stuckReason": self.stuck_reason,
            "failure": self.failure(),
            "pendingCommandId": pending.as_ref().map(|p| p.0.to_string()),
            "pendingCommand": pending.map(|p| p.1),
            "deadline": self.deadline.map(rfc3339),
            "aborted": self.data.0.get("aborted"),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        })
    }
}

/// The engine's statuses (`Status::of`), plus `aborted` for sagas this tool ended.
fn status_of(done: bool, compensating: bool, stuck: bool, data: &Value) -> &'static str {
    if done && data.get("aborted").is_some() {
        return "aborted";
    }
    match (stuck, done, compensating) {
        (true, _, _) => "stuck",
        (false, true, false) => "completed",
        (false, true, true) => "compensated",
        (false, false, false) => "running",
        (false, false, true) => "compensating",
    }
}

/// Step names of the sagas this deployment runs (order-saga's `create_order::definition`).
fn step_name(saga_type: &str, step: i32) -> Option<&'static str> {
    const CREATE_ORDER: &[&str] = &[
        "reject order",
        "authorize customer",
        "create shopping list",
        "confirm payment",
        "initiate shopping",
        "approve order",
    ];
    match saga_type {
        "cosec.CreateOrder" => usize::try_from(step)
            .ok()
            .and_then(|i| CREATE_ORDER.get(i))
            .copied(),
        _ => None,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// One `saga_commands` row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct CommandRow {
    command_id: Uuid,
    step: i32,
    compensating: bool,
    name: String,
    issued_at: OffsetDateTime,
    outcome: Option<String>,
    settled_at: Option<OffsetDateTime>,
}

impl CommandRow {
    fn json(&self) -> Value {
        json!({
            "id": self.command_id.to_string(),
            "name": self.name,
            "step": self.step,
            "compensating": self.compensating,
            "issuedAt": rfc3339(self.issued_at),
            "outcome": self.outcome,
            "settledAt": self.settled_at.map(rfc3339),
        })
    }
}

async fn has_table(conn: &mut PgConnection, table: &str) -> anyhow::Result<bool> {
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(conn)
        .await?;
    Ok(found.is_some())
}

/// The type of saga `id`: the one given, or the only one that has such an id.
async fn resolve_type(
    conn: &mut PgConnection,
    target: &Target,
    id: &str,
) -> anyhow::Result<String> {
    if let Some(t) = &target.saga_type {
        return Ok(t.clone());
    }
    let types: Vec<String> =
        sqlx::query_scalar("SELECT saga_type FROM sagas WHERE id = $1 ORDER BY saga_type")
            .bind(id)
            .fetch_all(conn)
            .await?;
    match types.as_slice() {
        [] => bail!("no saga {id} in schema {}", target.schema),
        [one] => Ok(one.clone()),
        many => bail!(
            "saga id {id} exists for several types ({}); pass --type",
            many.join(", ")
        ),
    }
}

async fn load(
    conn: &mut PgConnection,
    saga_type: &str,
    id: &str,
    lock: bool,
) -> anyhow::Result<Row> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sagas WHERE saga_type = $1 AND id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(saga_type)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .with_context(|| format!("no saga {saga_type}/{id}"))
}

async fn commands(
    conn: &mut PgConnection,
    saga_type: &str,
    id: &str,
) -> anyhow::Result<Option<Vec<CommandRow>>> {
    if !has_table(conn, "saga_commands").await? {
        return Ok(None);
    }
    let rows = sqlx::query_as(
        "SELECT command_id, step, compensating, name, issued_at, outcome, settled_at
         FROM saga_commands WHERE saga_type = $1 AND saga_id = $2
         ORDER BY issued_at, command_id",
    )
    .bind(saga_type)
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(rows))
}

/// Runs a `saga` subcommand.
pub async fn run(settings: &Settings, command: SagaCommand) -> anyhow::Result<()> {
    let schema = match &command {
        SagaCommand::List { target, .. }
        | SagaCommand::Show { target, .. }
        | SagaCommand::Retry { target, .. }
        | SagaCommand::Abort { target, .. } => target.schema.clone(),
    };
    let pool = settings.pool(&schema).await?;
    {
        let mut conn = pool.acquire().await?;
        if !has_table(&mut conn, "sagas").await? {
            bail!(
                "schema {schema} has no sagas table (database {})",
                settings.database_for(&schema)
            );
        }
    }
    let result = match command {
        SagaCommand::List {
            status,
            limit,
            target,
        } => list(settings, &pool, status, limit, &target).await,
        SagaCommand::Show { id, target } => show(settings, &pool, &id, &target).await,
        SagaCommand::Retry {
            id,
            step_timeout,
            target,
        } => retry(settings, &pool, &id, step_timeout, &target).await,
        SagaCommand::Abort { id, reason, target } => {
            abort(settings, &pool, &id, &reason, &target).await
        }
    };
    pool.close().await;
    result
}

async fn list(
    settings: &Settings,
    pool: &PgPool,
    status: Option<StatusFilter>,
    limit: i64,
    target: &Target,
) -> anyhow::Result<()> {
    let mut sql = format!("SELECT {COLUMNS} FROM sagas WHERE ($1::text IS NULL OR saga_type = $1)");
    if let Some(status) = status {
        sql.push_str(" AND ");
        sql.push_str(status.sql());
    }
    sql.push_str(" ORDER BY updated_at DESC, id LIMIT $2");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(target.saga_type.as_deref())
        .bind(limit.max(0))
        .fetch_all(pool)
        .await
        .context("listing sagas")?;
    if settings.json {
        print_json(&Value::Array(rows.iter().map(Row::summary).collect()));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no sagas");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "TYPE", "STATUS", "STEP", "UPDATED", "REASON"]);
    for r in &rows {
        let reason = r
            .stuck_reason
            .as_deref()
            .or(r.failure())
            .unwrap_or_default();
        table.row(vec![
            r.id.clone(),
            r.saga_type.clone(),
            r.status().to_owned(),
            match step_name(&r.saga_type, r.step) {
                Some(name) => format!("{} ({name})", r.step),
                None => r.step.to_string(),
            },
            rfc3339(r.updated_at),
            clip(reason, 70),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn show(settings: &Settings, pool: &PgPool, id: &str, target: &Target) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let saga_type = resolve_type(&mut conn, target, id).await?;
    let row = load(&mut conn, &saga_type, id, false).await?;
    let commands = commands(&mut conn, &saga_type, id).await?;
    let mut value = row.summary();
    value["data"] = row.data.0.clone();
    value["commands"] = match &commands {
        Some(rows) => Value::Array(rows.iter().map(CommandRow::json).collect()),
        None => Value::Null,
    };
    if settings.json {
        print_json(&value);
        return Ok(());
    }
    print_saga(&value);
    match &commands {
        None => println!("\n(no saga_commands table in this schema)"),
        Some(rows) if rows.is_empty() => println!("\ncommands: none"),
        Some(rows) => {
            println!("\ncommands:");
            let mut table =
                Table::new(&["ISSUED", "STEP", "MODE", "NAME", "ID", "OUTCOME", "SETTLED"]);
            for c in rows {
                table.row(vec![
                    rfc3339(c.issued_at),
                    c.step.to_string(),
                    if c.compensating {
                        "compensation"
                    } else {
                        "action"
                    }
                    .to_owned(),
                    c.name.clone(),
                    c.command_id.to_string(),
                    or_dash(c.outcome.as_deref().or(Some("outstanding"))),
                    or_dash(c.settled_at.map(rfc3339).as_deref()),
                ]);
            }
            print!("{}", table.render());
        }
    }
    println!(
        "\ndata:\n{}",
        serde_json::to_string_pretty(&row.data.0).unwrap_or_default()
    );
    Ok(())
}

/// The `key  value` lines of a saga summary.
fn print_saga(value: &Value) {
    let text = |key: &str| match &value[key] {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let step = match value["stepName"].as_str() {
        Some(name) => format!("{} ({name})", text("step")),
        None => text("step"),
    };
    let lines = [
        ("saga", format!("{} {}", text("sagaType"), text("id"))),
        ("status", text("status")),
        ("step", step),
        ("compensating", text("compensating")),
        ("done", text("done")),
        ("version", text("version")),
        ("stuck reason", text("stuckReason")),
        ("failure", text("failure")),
        (
            "pending",
            format!("{} {}", text("pendingCommand"), text("pendingCommandId")),
        ),
        ("deadline", text("deadline")),
        ("created", text("createdAt")),
        ("updated", text("updatedAt")),
    ];
    for (k, v) in lines {
        println!("{k:<13} {v}");
    }
    if let Some(aborted) = value.get("aborted").filter(|a| !a.is_null()) {
        println!(
            "{:<13} {} (at {}, by {})",
            "aborted",
            aborted["reason"].as_str().unwrap_or_default(),
            aborted["at"].as_str().unwrap_or_default(),
            aborted["by"].as_str().unwrap_or_default()
        );
    }
}

/// A sent outbox row, as the engine enqueued it.
#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    name: String,
    subject: String,
    payload: Vec<u8>,
    headers: Json<BTreeMap<String, String>>,
}

async fn retry(
    settings: &Settings,
    pool: &PgPool,
    id: &str,
    step_timeout: Duration,
    target: &Target,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let saga_type = resolve_type(&mut tx, target, id).await?;
    let row = load(&mut tx, &saga_type, id, true).await?;
    if row.status() != "stuck" {
        bail!(
            "saga {saga_type}/{id} is {}; only a stuck saga can be retried",
            row.status()
        );
    }
    if !has_table(&mut tx, "saga_commands").await? {
        bail!("schema {} has no saga_commands table", target.schema);
    }
    // The command to send again: the outstanding one (a compensation that timed out), else
    // the last one sent for the saga's current step in its current direction (it failed).
    let previous: Option<(Uuid, String)> = match row.pending() {
        Some(p) => Some(p),
        None => {
            sqlx::query_as(
                "SELECT command_id, name FROM saga_commands
             WHERE saga_type = $1 AND saga_id = $2 AND step = $3 AND compensating = $4
             ORDER BY issued_at DESC, command_id DESC LIMIT 1",
            )
            .bind(&saga_type)
            .bind(id)
            .bind(row.step)
            .bind(row.compensating)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let Some((previous_id, previous_name)) = previous else {
        bail!(
            "saga {saga_type}/{id} sent no command for step {} (it is stuck because: {}); \
             there is nothing to re-send",
            row.step,
            row.stuck_reason.as_deref().unwrap_or("?")
        );
    };
    let original: OutboxRow = sqlx::query_as(
        "SELECT name, subject, payload, headers FROM outbox WHERE id = $1",
    )
    .bind(previous_id)
    .fetch_optional(&mut *tx)
    .await?
    .with_context(|| {
        format!(
            "command {previous_id} ({previous_name}) is no longer in the outbox of schema {} \
             (sent rows are deleted after the relay's retention); it cannot be re-sent",
            target.schema
        )
    })?;

    let mut headers = original.headers.0;
    headers.insert(
        header::SENT_AT.to_owned(),
        rfc3339_millis(OffsetDateTime::now_utc()),
    );
    if let Some(trace) = headers
        .get(header::TRACEPARENT)
        .and_then(|t| TraceParent::parse(t))
    {
        headers.insert(header::TRACEPARENT.to_owned(), trace.child().to_string());
    }
    let envelope = Envelope {
        id: Uuid::now_v7(),
        name: original.name,
        subject: original.subject,
        payload: original.payload.into(),
        headers,
    };
    persistence::outbox::enqueue(&mut tx, std::slice::from_ref(&envelope))
        .await
        .context("enqueueing the re-sent command")?;
    sqlx::query(
        "INSERT INTO saga_commands (command_id, saga_type, saga_id, step, compensating, name)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(envelope.id)
    .bind(&saga_type)
    .bind(id)
    .bind(row.step)
    .bind(row.compensating)
    .bind(&envelope.name)
    .execute(&mut *tx)
    .await
    .context("logging the re-sent command")?;
    // The command it replaces, if still unanswered, will not move the saga any more (a late
    // reply to it is ignored): say so in the log instead of leaving it "outstanding".
    sqlx::query(
        "UPDATE saga_commands SET outcome = 'superseded', settled_at = now()
         WHERE command_id = $1 AND outcome IS NULL",
    )
    .bind(previous_id)
    .execute(&mut *tx)
    .await?;

    let mut data = row.data.0.clone();
    if let Some(record) = data.as_object_mut() {
        record.insert(
            "pending".to_owned(),
            json!({"commandId": envelope.id, "command": envelope.name}),
        );
    } else {
        bail!("saga {saga_type}/{id}: data is not a JSON object; not the engine's row format");
    }
    let updated = sqlx::query(
        "UPDATE sagas SET version = version + 1, data = $3, stuck_reason = NULL,
             deadline = now() + make_interval(secs => $4), updated_at = now()
         WHERE saga_type = $1 AND id = $2 AND version = $5",
    )
    .bind(&saga_type)
    .bind(id)
    .bind(Json(&data))
    .bind(step_timeout.as_secs_f64())
    .bind(row.version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        bail!("saga {saga_type}/{id} changed meanwhile; nothing done, try again");
    }
    tx.commit().await?;

    let mut conn = pool.acquire().await?;
    let after = load(&mut conn, &saga_type, id, false).await?;
    let result = json!({
        "sagaType": saga_type,
        "id": id,
        "status": after.status(),
        "step": after.step,
        "resent": {
            "previousCommandId": previous_id.to_string(),
            "commandId": envelope.id.to_string(),
            "command": envelope.name,
            "subject": envelope.subject,
        },
        "deadline": after.deadline.map(rfc3339),
        "version": after.version,
    });
    if settings.json {
        print_json(&result);
    } else {
        println!(
            "saga {saga_type}/{id}: re-sent {} as {} (replacing {previous_id}) through the {} outbox; \
             now {} at step {}, deadline {}",
            envelope.name,
            envelope.id,
            target.schema,
            after.status(),
            after.step,
            or_dash(after.deadline.map(rfc3339).as_deref()),
        );
    }
    Ok(())
}

fn rfc3339_millis(now: OffsetDateTime) -> String {
    let millis = now.nanosecond() / 1_000_000 * 1_000_000;
    rfc3339(now.replace_nanosecond(millis).unwrap_or(now))
}

async fn abort(
    settings: &Settings,
    pool: &PgPool,
    id: &str,
    reason: &str,
    target: &Target,
) -> anyhow::Result<()> {
    let reason = reason.trim();
    if reason.is_empty() {
        bail!("--reason must say why the saga is aborted");
    }
    let mut tx = pool.begin().await?;
    let saga_type = resolve_type(&mut tx, target, id).await?;
    let row = load(&mut tx, &saga_type, id, true).await?;
    if row.done {
        bail!(
            "saga {saga_type}/{id} is already {}; nothing to abort",
            row.status()
        );
    }
    let previous_status = row.status();
    let now = OffsetDateTime::now_utc();
    let by = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "mallbots-admin".to_owned());
    let mut data = row.data.0.clone();
    let Some(record) = data.as_object_mut() else {
        bail!("saga {saga_type}/{id}: data is not a JSON object; not the engine's row format");
    };
    let aborted = json!({
        "reason": reason,
        "at": rfc3339(now),
        "by": by,
        "previousStatus": previous_status,
        "previousStep": row.step,
        "previousStuckReason": row.stuck_reason,
        "previousFailure": row.failure(),
        "pendingCommandId": row.pending().map(|p| p.0.to_string()),
    });
    record.insert("aborted".to_owned(), aborted);
    record.insert(
        "failure".to_owned(),
        json!(format!("aborted by operator: {reason}")),
    );
    record.insert("pending".to_owned(), Value::Null);
    // done + compensating: to the engine (and its REST view) an ended, unsuccessful saga that
    // no reply, timeout or sweep touches again; `data.aborted` says what really happened.
    let updated = sqlx::query(
        "UPDATE sagas SET version = version + 1, done = true, compensating = true,
             stuck_reason = NULL, deadline = NULL, data = $3, updated_at = now()
         WHERE saga_type = $1 AND id = $2 AND version = $4",
    )
    .bind(&saga_type)
    .bind(id)
    .bind(Json(&data))
    .bind(row.version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        bail!("saga {saga_type}/{id} changed meanwhile; nothing done, try again");
    }
    let mut settled = 0;
    if has_table(&mut tx, "saga_commands").await? {
        settled = sqlx::query(
            "UPDATE saga_commands SET outcome = 'aborted', settled_at = now()
             WHERE saga_type = $1 AND saga_id = $2 AND outcome IS NULL",
        )
        .bind(&saga_type)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    let result = json!({
        "sagaType": saga_type,
        "id": id,
        "status": "aborted",
        "previousStatus": previous_status,
        "reason": reason,
        "outstandingCommandsClosed": settled,
    });
    if settings.json {
        print_json(&result);
    } else {
        println!(
            "saga {saga_type}/{id}: aborted (was {previous_status}): {reason}; \
             {settled} outstanding command(s) marked aborted"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_engine_and_add_aborted() {
        let plain = json!({"data": {}});
        assert_eq!(status_of(false, false, false, &plain), "running");
        assert_eq!(status_of(false, true, false, &plain), "compensating");
        assert_eq!(status_of(true, false, false, &plain), "completed");
        assert_eq!(status_of(true, true, false, &plain), "compensated");
        assert_eq!(status_of(false, true, true, &plain), "stuck");
        let aborted = json!({"aborted": {"reason": "x"}});
        assert_eq!(status_of(true, true, false, &aborted), "aborted");
        assert_eq!(
            step_name("cosec.CreateOrder", 2),
            Some("create shopping list")
        );
        assert_eq!(step_name("cosec.CreateOrder", -1), None);
    }
}
