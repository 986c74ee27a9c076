//! The transactional outbox: a service writes the integration messages of a state change into
//! the `outbox` table in the same transaction as the change itself, so either both happen or
//! neither. Nothing is sent here; the [relay](crate::relay) publishes after commit. A commit
//! fires `NOTIFY` (a trigger on the table) so the relay wakes at once instead of polling.
//!
//! While a relay runs in the process, [`enqueue`] also keeps a copy of each envelope in memory
//! (`take_pending`): the commit's notification names the rows it committed, and the relay
//! publishes them from memory straight away instead of claiming them back from the table (the
//! "fast path"; the table stays the source of truth and the claim the fallback).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use messaging::Envelope;
use sqlx::{PgConnection, PgPool};

use crate::error::Result;

/// Writes `envelopes` into the outbox of the connection's schema, in order, inside the caller's
/// transaction (`outbox::enqueue(&mut tx, &[env])`). An id that is already there is ignored,
/// so retrying a unit of work with the same envelopes cannot publish twice.
///
/// Messages with the same ordering key (the `Message-Key` header) are published in the order
/// they were enqueued, provided writers of one aggregate are serialised (the event store's
/// version check or a row lock does that): enqueue after the state change, not before.
pub async fn enqueue(conn: &mut PgConnection, envelopes: &[Envelope]) -> Result<()> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(envelopes.len());
    let mut names = Vec::with_capacity(envelopes.len());
    let mut subjects = Vec::with_capacity(envelopes.len());
    let mut payloads = Vec::with_capacity(envelopes.len());
    let mut headers = Vec::with_capacity(envelopes.len());
    let mut keys = Vec::with_capacity(envelopes.len());
    for env in envelopes {
        ids.push(env.id);
        names.push(env.name.as_str());
        subjects.push(env.subject.as_str());
        payloads.push(env.payload.as_ref());
        headers.push(serde_json::to_string(&env.headers).unwrap_or_else(|_| "{}".to_owned()));
        keys.push(env.key());
    }
    remember(envelopes);
    // ORDER BY the array position so `seq` follows the caller's order.
    sqlx::query(
        "INSERT INTO outbox (id, name, subject, payload, headers, key)
         SELECT id, name, subject, payload, headers::jsonb, key
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[])
              WITH ORDINALITY AS m(id, name, subject, payload, headers, key, n)
         ORDER BY n
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&subjects)
    .bind(&payloads)
    .bind(&headers)
    .bind(&keys)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Envelopes enqueued by this process whose transaction may have committed, by id. Kept only
/// while a relay runs here ([`RelayPresence`]); entries of rolled-back transactions are never
/// taken and expire after [`PENDING_TTL`].
static PENDING: LazyLock<Mutex<HashMap<uuid::Uuid, (Envelope, Instant)>>> =
    LazyLock::new(Mutex::default);

/// Relays running in this process: without one, nobody would take what [`enqueue`] remembers.
static RELAYS: AtomicUsize = AtomicUsize::new(0);

/// How long an envelope waits in memory for its commit's notification. A transaction open
/// longer than this is published by the relay's claim instead.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(30);

/// Entries above which [`remember`] first drops expired ones.
const PENDING_SOFT_LIMIT: usize = 10_000;

/// Marks a running relay; dropping it ends the mark (the last one clears the memory).
#[derive(Debug)]
pub(crate) struct RelayPresence(());

impl RelayPresence {
    pub(crate) fn new() -> Self {
        RELAYS.fetch_add(1, Ordering::SeqCst);
        RelayPresence(())
    }
}

impl Drop for RelayPresence {
    fn drop(&mut self) {
        if RELAYS.fetch_sub(1, Ordering::SeqCst) == 1 {
            pending().clear();
        }
    }
}

fn pending() -> std::sync::MutexGuard<'static, HashMap<uuid::Uuid, (Envelope, Instant)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn remember(envelopes: &[Envelope]) {
    if RELAYS.load(Ordering::Relaxed) == 0 {
        return;
    }
    let now = Instant::now();
    let mut pending = pending();
    if pending.len() >= PENDING_SOFT_LIMIT {
        pending.retain(|_, (_, at)| now.duration_since(*at) < PENDING_TTL);
    }
    for env in envelopes {
        pending.insert(env.id, (env.clone(), now));
    }
}

/// Takes the remembered envelopes of `ids` (in that order); ids this process did not enqueue,
/// or no longer holds, are left out.
pub(crate) fn take_pending(ids: &[uuid::Uuid]) -> Vec<Envelope> {
    let mut pending = pending();
    let taken = ids
        .iter()
        .filter_map(|id| pending.remove(id).map(|(env, _)| env))
        .collect();
    expire(&mut pending);
    taken
}

/// Drops entries older than [`PENDING_TTL`] (rolled-back transactions) once there are enough
/// of them to be worth the scan.
fn expire(pending: &mut HashMap<uuid::Uuid, (Envelope, Instant)>) {
    if pending.len() >= PENDING_SOFT_LIMIT / 10 {
        let now = Instant::now();
        pending.retain(|_, (_, at)| now.duration_since(*at) < PENDING_TTL);
    }
}

/// Forgets `ids` (published by a claim) and every expired entry.
pub(crate) fn forget_pending(ids: &[uuid::Uuid]) {
    let mut pending = pending();
    for id in ids {
        pending.remove(id);
    }
    expire(&mut pending);
}

/// What is waiting to be published, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Unsent rows.
    pub count: i64,
    /// Age of the oldest unsent row (`None` when there is none).
    pub oldest_age: Option<Duration>,
}

/// The unsent rows of the pool's schema: how many, and how old the oldest is.
pub async fn backlog(pool: &PgPool) -> Result<Backlog> {
    let (count, age): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    let oldest_age = age.map(|secs| Duration::from_secs_f64(secs.max(0.0)));
    Ok(Backlog { count, oldest_age })
}

/// How often [`report_metrics`] refreshes the outbox gauges.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// Refreshes, every `interval` until `shutdown`, the gauges of the pool's outbox, labelled with
/// its schema (the module: `stores`, `cosec`, ...):
/// - `outbox_backlog{module}`: rows not yet published;
/// - `outbox_lag_seconds{module}`: age of the oldest unsent row (0 when there is none);
/// - `outbox_pending_in_memory`: envelopes this process enqueued that wait for their commit's
///   notification (the relay's fast path); it stays small unless transactions roll back.
///
/// The relay runs this beside itself, so every module with an outbox reports it.
pub async fn report_metrics(
    pool: PgPool,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let module = loop {
        match sqlx::query_scalar::<_, String>("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await
        {
            Ok(schema) => break schema,
            Err(e) => {
                tracing::debug!(error = %e, "outbox metrics: schema unknown yet");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Process-wide (every module's relay reports the same value).
        metrics::gauge!("outbox_pending_in_memory").set(pending().len() as f64);
        match backlog(&pool).await {
            Ok(b) => {
                metrics::gauge!("outbox_backlog", "module" => module.clone()).set(b.count as f64);
                metrics::gauge!("outbox_lag_seconds", "module" => module.clone())
                    .set(b.oldest_age.map_or(0.0, |age| age.as_secs_f64()));
            }
            Err(e) => tracing::debug!(module = %module, error = %e, "outbox metrics unavailable"),
        }
    }
}

/// Deletes sent rows created more than `retention` ago, in chunks so no statement holds many
/// locks; returns how many went. Unsent rows stay whatever their age. Rows being deleted by
/// another instance are skipped, not waited for.
pub async fn delete_sent(pool: &PgPool, retention: Duration) -> Result<u64> {
    crate::delete_in_chunks(
        pool,
        "DELETE FROM outbox WHERE seq IN (
             SELECT seq FROM outbox
             WHERE created_at < now() - make_interval(secs => $1) AND sent_at IS NOT NULL
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        retention,
    )
    .await
}

/// One unsent row, as the relay claims it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub name: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: sqlx::types::Json<BTreeMap<String, String>>,
    pub key: Option<String>,
    /// An older row of the same key is unsent and not ours to publish yet.
    pub blocked: bool,
}

impl Row {
    pub(crate) fn envelope(&self) -> Envelope {
        Envelope {
            id: self.id,
            name: self.name.clone(),
            subject: self.subject.clone(),
            payload: self.payload.clone().into(),
            headers: self.headers.0.clone(),
        }
    }
}
