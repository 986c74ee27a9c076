//! The orchestrator: runs the decision core against PostgreSQL and the bus. Each trigger,
//! reply or expired deadline is one transaction holding the inbox row (for messages), the
//! versioned saga row, the command log row and the outbox row of the next command, so a saga
//! never sends a command it did not record, nor records a step whose command is lost.
//!
//! Concurrency: saga rows are updated optimistically (the version loaded must still be the
//! stored one). A conflict means another reply or a sweeper got there first; the unit of work
//! is run again on the new state, where the late message is usually stale and ignored. The
//! sweeper locks the overdue rows it handles and skips rows locked by others, so several
//! instances can sweep at once.

use std::sync::Arc;
use std::time::Duration;

use messaging::{CancellationToken, Envelope, HandlerError, MessageContext};
use persistence::{Saga, inbox, outbox, saga};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::decision::{self, Context, Decision, Effect, Record};
use super::definition::SagaDefinition;
use super::postgres::{self, CommandRow};

/// How often the running-saga gauges are refreshed (by the sweeper).
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// What a saga's data must be: stored as JSON, cloned per retry, shared across tasks.
pub trait SagaData: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T> SagaData for T where T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

/// Timing and batching of the orchestrator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a step may wait for its reply before it counts as failed.
    pub step_timeout: Duration,
    /// How often the sweeper looks for sagas past their deadline.
    pub sweep_interval: Duration,
    /// Overdue sagas handled per sweeper transaction.
    pub sweep_batch: i64,
    /// Immediate re-runs of a unit of work after a version conflict, before the message is
    /// handed back to the consumer for a delayed retry.
    pub conflict_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            step_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 100,
            conflict_retries: 3,
        }
    }
}

/// Why a unit of work failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database or the saga store refused (conflicts included).
    #[error(transparent)]
    Store(#[from] persistence::Error),
    /// The stored state contradicts itself (a logged command whose saga row is gone).
    #[error("inconsistent saga state: {0}")]
    Inconsistent(String),
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> Self {
        EngineError::Store(persistence::Error::Database(e))
    }
}

impl EngineError {
    /// Whether running the unit of work again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_retryable(),
            EngineError::Inconsistent(_) => false,
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(
            self,
            EngineError::Store(persistence::Error::SagaConflict { .. })
        )
    }

    fn into_handler_error(self) -> HandlerError {
        if self.is_retryable() {
            HandlerError::retryable(self)
        } else {
            HandlerError::permanent(self)
        }
    }
}

/// A saga as the read endpoint shows it: its row and its command log.
#[derive(Debug, Clone)]
pub struct SagaView<D> {
    /// The row.
    pub saga: Saga<Record<D>>,
    /// Every command it sent, oldest first.
    pub commands: Vec<CommandRow>,
}

/// Runs one saga definition. Cheap to clone.
pub struct Orchestrator<D> {
    inner: Arc<Inner<D>>,
}

struct Inner<D> {
    definition: SagaDefinition<D>,
    pool: PgPool,
    bus: messaging::Bus,
    settings: Settings,
}

impl<D> Clone for Orchestrator<D> {
    fn clone(&self) -> Self {
        Orchestrator {
            inner: self.inner.clone(),
        }
    }
}

impl<D> std::fmt::Debug for Orchestrator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("saga", &self.inner.definition.name())
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl<D: SagaData> Orchestrator<D> {
    /// An orchestrator of `definition` on `pool` (whose schema holds the `sagas`,
    /// `saga_commands`, `inbox` and `outbox` tables), building commands with `bus`.
    pub fn new(
        definition: SagaDefinition<D>,
        pool: PgPool,
        bus: messaging::Bus,
        settings: Settings,
    ) -> Self {
        Orchestrator {
            inner: Arc::new(Inner {
                definition,
                pool,
                bus,
                settings,
            }),
        }
    }

    /// The definition it runs.
    pub fn definition(&self) -> &SagaDefinition<D> {
        &self.inner.definition
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Starts saga `id` with `data` for the trigger message in `ctx`. A saga with this id
    /// that already exists is left alone (the trigger was sent again: weaknesses C3).
    pub async fn start(&self, ctx: &MessageContext, id: &str, data: D) -> Result<(), HandlerError> {
        let span = tracing::info_span!(
            "saga step",
            saga = self.inner.definition.name(),
            saga_id = id,
            event = "start"
        );
        self.start_traced(ctx, id, data).instrument(span).await
    }

    async fn start_traced(
        &self,
        ctx: &MessageContext,
        id: &str,
        data: D,
    ) -> Result<(), HandlerError> {
        let mut conflicts = 0;
        loop {
            match self.start_once(ctx, id, data.clone()).await {
                Err(e) if e.is_conflict() && conflicts < self.inner.settings.conflict_retries => {
                    conflicts += 1;
                }
                other => return other.map_err(EngineError::into_handler_error),
            }
        }
    }

    async fn start_once(&self, ctx: &MessageContext, id: &str, data: D) -> Result<(), EngineError> {
        let definition = &self.inner.definition;
        let mut tx = self.inner.pool.begin().await?;
        if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer).await? {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let mut decision = decision::start(definition, id, data, &ctx.envelope, &self.context(now));
        match saga::insert(&mut tx, &mut decision.saga).await {
            Ok(()) => {}
            Err(persistence::Error::SagaConflict { expected: 0, .. }) => {
                tx.commit().await?;
                tracing::info!(
                    saga = definition.name(),
                    saga_id = id,
                    trigger = %ctx.envelope.id,
                    "saga already started; trigger ignored"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        self.write_effects(&mut tx, &decision).await?;
        tx.commit().await?;
        metrics::counter!("saga_started_total", "saga" => definition.name()).increment(1);
        self.report(&decision);
        Ok(())
    }

    /// Handles a reply from the saga's reply channel. A reply that does not answer a command
    /// some saga of this definition is waiting for is acked and ignored (logged).
    pub async fn handle_reply(&self, ctx: &MessageContext) -> Result<(), HandlerError> {
        let span = tracing::info_span!(
            "saga step",
            saga = self.inner.definition.name(),
            event = "reply",
            reply = %ctx.envelope.name,
        );
        self.handle_reply_traced(ctx).instrument(span).await
    }

    async fn handle_reply_traced(&self, ctx: &MessageContext) -> Result<(), HandlerError> {
        let mut conflicts = 0;
        loop {
            match self.reply_once(ctx).await {
                Err(e) if e.is_conflict() && conflicts < self.inner.settings.conflict_retries => {
                    conflicts += 1;
                }
                other => return other.map_err(EngineError::into_handler_error),
            }
        }
    }

    async fn reply_once(&self, ctx: &MessageContext) -> Result<(), EngineError> {
        let definition = &self.inner.definition;
        let reply: &Envelope = &ctx.envelope;
        let mut tx = self.inner.pool.begin().await?;
        if !inbox::record(&mut tx, reply, &ctx.consumer).await? {
            return Ok(());
        }
        let command_id = reply
            .causation_id()
            .and_then(|id| uuid::Uuid::parse_str(id).ok());
        let found = match command_id {
            Some(command_id) => {
                postgres::saga_of_command::<Record<D>>(&mut tx, definition.name(), command_id)
                    .await?
            }
            None => None,
        };
        let Some(saga) = found else {
            // Rare: a reply to no command of ours, or to one whose saga is gone.
            let owner = match command_id {
                Some(command_id) => {
                    postgres::saga_of(&mut tx, definition.name(), command_id).await?
                }
                None => None,
            };
            if let Some(saga_id) = owner {
                return Err(EngineError::Inconsistent(format!(
                    "command {} belongs to saga {saga_id}, which does not exist",
                    reply.causation_id().unwrap_or("")
                )));
            }
            tx.commit().await?;
            tracing::warn!(
                saga = definition.name(),
                reply = %reply.id,
                name = %reply.name,
                causation = reply.causation_id().unwrap_or(""),
                "reply answers no command of this saga; ignored"
            );
            return Ok(());
        };
        let saga_id = saga.id.clone();
        let now = OffsetDateTime::now_utc();
        let mut decision = decision::on_reply(definition, saga, reply, &self.context(now));
        if let Effect::Ignored { reason } = &decision.effect {
            tx.commit().await?;
            tracing::info!(
                saga = definition.name(),
                saga_id = %saga_id,
                reply = %reply.id,
                name = %reply.name,
                reason = %reason,
                "stale reply ignored"
            );
            self.report(&decision);
            return Ok(());
        }
        saga::update(&mut tx, &mut decision.saga).await?;
        self.write_effects(&mut tx, &decision).await?;
        tx.commit().await?;
        self.report(&decision);
        Ok(())
    }

    /// One sweep: every overdue saga (up to the batch size) is timed out, each in its own
    /// savepoint so one bad row does not hold back the rest. Returns how many it changed.
    pub async fn sweep(&self) -> Result<usize, EngineError> {
        let definition = &self.inner.definition;
        let mut tx = self.inner.pool.begin().await?;
        let due =
            saga::overdue(&mut tx, definition.name(), self.inner.settings.sweep_batch).await?;
        let mut decisions = Vec::with_capacity(due.len());
        let mut parked = 0;
        for row in &due {
            let mut savepoint = Connection::begin(&mut *tx).await?;
            match self.expire(&mut savepoint, &row.id, row.version).await {
                Ok(Some(decision)) => {
                    savepoint.commit().await?;
                    decisions.push(decision);
                }
                Ok(None) => savepoint.commit().await?,
                Err(e) => {
                    savepoint.rollback().await?;
                    tracing::warn!(
                        saga = definition.name(),
                        saga_id = %row.id,
                        error = %e,
                        "timing out an overdue saga failed"
                    );
                    if !e.is_retryable() {
                        // Unreadable data: it would fail on every tick. Park it for a human.
                        let mut savepoint = Connection::begin(&mut *tx).await?;
                        mark_unreadable(&mut savepoint, definition.name(), &row.id, &e).await?;
                        savepoint.commit().await?;
                        parked += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        for decision in &decisions {
            self.report(decision);
        }
        Ok(decisions.len() + parked)
    }

    /// Times out saga `id`, locked by the sweeper's query at `version`.
    async fn expire(
        &self,
        conn: &mut PgConnection,
        id: &str,
        version: i64,
    ) -> Result<Option<Decision<D>>, EngineError> {
        let definition = &self.inner.definition;
        let Some(saga) = saga::load::<Record<D>>(conn, definition.name(), id).await? else {
            return Ok(None);
        };
        if saga.version != version {
            return Ok(None);
        }
        let now = OffsetDateTime::now_utc();
        let mut decision = decision::on_timeout(definition, saga, &self.context(now));
        if let Effect::Ignored { reason } = &decision.effect {
            tracing::debug!(saga = definition.name(), saga_id = id, reason = %reason, "not timed out");
            return Ok(None);
        }
        saga::update(conn, &mut decision.saga).await?;
        self.write_effects(conn, &decision).await?;
        Ok(Some(decision))
    }

    /// Sweeps every `sweep_interval` until `shutdown`; a sweep that changed a full batch is
    /// followed by another at once (rows it left alone wait for the next tick, so they cannot
    /// make it spin). Errors are logged and the next tick tries again.
    pub async fn run_sweeper(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_gauges = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if tokio::time::Instant::now() >= next_gauges {
                next_gauges = tokio::time::Instant::now() + GAUGE_INTERVAL;
                self.update_gauges().await;
            }
            loop {
                match self.sweep().await {
                    Ok(due)
                        if i64::try_from(due).unwrap_or(i64::MAX)
                            >= self.inner.settings.sweep_batch => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(saga = self.inner.definition.name(), error = %e, "saga sweep failed");
                        break;
                    }
                }
                if shutdown.is_cancelled() {
                    return;
                }
            }
        }
    }

    /// Sets `saga_running{saga}` (sagas neither done nor stuck) and
    /// `saga_oldest_running_age_seconds{saga}` (age of the oldest of them, 0 when none).
    pub async fn update_gauges(&self) {
        let name = self.inner.definition.name();
        let row: Result<(i64, Option<f64>), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8
             FROM sagas WHERE saga_type = $1 AND NOT done AND stuck_reason IS NULL",
        )
        .bind(name)
        .fetch_one(&self.inner.pool)
        .await;
        match row {
            Ok((running, oldest)) => {
                metrics::gauge!("saga_running", "saga" => name).set(running as f64);
                metrics::gauge!("saga_oldest_running_age_seconds", "saga" => name)
                    .set(oldest.unwrap_or(0.0).max(0.0));
            }
            Err(e) => tracing::debug!(saga = name, error = %e, "saga gauges unavailable"),
        }
    }

    /// Saga `id` and its command log, if it exists.
    pub async fn view(&self, id: &str) -> Result<Option<SagaView<D>>, EngineError> {
        let definition = &self.inner.definition;
        let mut conn = self.inner.pool.acquire().await?;
        let Some(saga) = saga::load::<Record<D>>(&mut conn, definition.name(), id).await? else {
            return Ok(None);
        };
        let commands = postgres::history(&mut conn, definition.name(), id).await?;
        Ok(Some(SagaView { saga, commands }))
    }

    /// The command log row, the settled command and the outbox row of a decision whose saga
    /// row was just written.
    async fn write_effects(
        &self,
        conn: &mut PgConnection,
        decision: &Decision<D>,
    ) -> Result<(), EngineError> {
        let saga = &decision.saga;
        match (decision.settled, &decision.command) {
            (Some(settled), Some(issued)) => {
                postgres::settle_and_record(conn, settled, &saga.saga_type, &saga.id, issued)
                    .await?;
            }
            (Some((command_id, settlement)), None) => {
                postgres::settle(conn, command_id, settlement).await?;
            }
            (None, Some(issued)) => {
                postgres::record(conn, &saga.saga_type, &saga.id, issued).await?;
            }
            (None, None) => {}
        }
        if let Some(issued) = &decision.command {
            outbox::enqueue(conn, std::slice::from_ref(&issued.envelope)).await?;
        }
        Ok(())
    }

    fn context(&self, now: OffsetDateTime) -> Context<'_> {
        Context {
            bus: &self.inner.bus,
            now,
            step_timeout: self.inner.settings.step_timeout,
        }
    }

    /// Logs and counts a committed decision.
    fn report(&self, decision: &Decision<D>) {
        let definition = &self.inner.definition;
        let saga = &decision.saga;
        metrics::counter!(
            "saga_transitions_total",
            "saga" => definition.name(),
            "effect" => decision.effect.as_str()
        )
        .increment(1);
        match &decision.effect {
            Effect::Ignored { .. } => {}
            Effect::Issued => {
                if let Some(issued) = &decision.command {
                    tracing::info!(
                        saga = definition.name(),
                        saga_id = %saga.id,
                        step = issued.step,
                        mode = issued.mode.as_str(),
                        command = %issued.envelope.name,
                        command_id = %issued.envelope.id,
                        "saga command issued"
                    );
                }
            }
            Effect::Completed => {
                metrics::counter!("saga_completed_total", "saga" => definition.name()).increment(1);
                tracing::info!(saga = definition.name(), saga_id = %saga.id, "saga completed");
            }
            Effect::Compensated => {
                metrics::counter!("saga_compensated_total", "saga" => definition.name())
                    .increment(1);
                tracing::info!(
                    saga = definition.name(),
                    saga_id = %saga.id,
                    failure = saga.data.failure.as_deref().unwrap_or(""),
                    "saga compensated"
                );
            }
            Effect::Stuck { reason } => {
                metrics::counter!("saga_stuck_total", "saga" => definition.name()).increment(1);
                tracing::error!(
                    saga = definition.name(),
                    saga_id = %saga.id,
                    reason = %reason,
                    "saga stuck: it needs a human"
                );
            }
        }
    }
}

/// Parks a saga whose stored data this code cannot read: stuck with the reason, no deadline.
/// Loaded as plain JSON so the write does not depend on the data type that failed.
async fn mark_unreadable(
    conn: &mut PgConnection,
    saga_type: &str,
    id: &str,
    error: &EngineError,
) -> Result<(), EngineError> {
    let Some(mut raw) = saga::load::<serde_json::Value>(conn, saga_type, id).await? else {
        return Ok(());
    };
    raw.stuck_reason = Some(format!("cannot be handled: {error}"));
    raw.deadline = None;
    saga::update(conn, &mut raw).await?;
    metrics::counter!("saga_stuck_total", "saga" => saga_type.to_owned()).increment(1);
    tracing::error!(saga = saga_type, saga_id = id, error = %error, "saga stuck: it needs a human");
    Ok(())
}
