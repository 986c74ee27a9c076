//! The outbox relay: publishes committed outbox rows and marks them sent once the broker has
//! confirmed them.
//!
//! - Woken by the `NOTIFY` an enqueuing commit fires (heard on a [`OutboxListener`], which the
//!   relays of a process share); polling (`poll_interval`) is only the fallback for a lost
//!   notification or a dropped `LISTEN` connection.
//! - Fast path: the notification names the committed rows, and rows this process enqueued are
//!   still in memory (`outbox::take_pending`), so the relay publishes them at once, in commit
//!   order (PostgreSQL delivers notifications in commit order), and then marks them sent —
//!   no claim query on the hop's critical path. Marks wait up to `mark_delay` so that one
//!   statement marks the rows of many commits; a claim marks what is waiting first. The fast
//!   path runs only while the last claim left nothing behind (no row blocked, none waiting for
//!   a retry) and no publish has failed since; otherwise (and for rows another instance
//!   enqueued, after giving that instance's relay a moment) the claim below does the work.
//!   Relays of one schema in one process take turns (a shared lock), so per-key order holds in
//!   the process; across instances it is as good as the broker's consumers give anyway (best
//!   effort).
//! - Claims the oldest unsent rows with `FOR UPDATE SKIP LOCKED` inside a transaction that
//!   lives until the rows are marked, so relays of several instances never publish one row at
//!   the same time, and a crashed relay's claim ends with its connection. It always selects
//!   unsent rows (no "last seen" cursor), so a row committed late by a slow transaction is
//!   still found.
//! - Publishes with pipelined PubAcks (`max_in_flight` at a time), `Nats-Msg-Id` = row id, and
//!   marks a row sent only after its PubAck. A crash between the two republishes the row: the
//!   broker's de-duplication window or the consumer's inbox removes the copy. Nothing is lost.
//! - Keeps per-key order (the `Message-Key` header): a row is held back while an older row of
//!   its key is unsent and not in its claim (claimed by another relay, or waiting for a retry);
//!   within a batch a key's next row is sent only after its previous one was confirmed, and the
//!   batch stops at the first failed window.
//! - A failed row is retried with exponential back-off per row (attempts and the last error are
//!   kept on the row), never dropped; one poison message holds back only its own key.
//! - Commits its marks without waiting for the WAL flush (`synchronous_commit = off` for that
//!   transaction only): a mark lost in a database crash means a duplicate, never a loss.
//! - Never exits on an error: database and broker failures are logged, counted and retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use messaging::{CancellationToken, Envelope, Transport};
use sqlx::PgPool;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::listener::{OutboxListener, Sink};
use crate::outbox::{self, Row};

/// How the relay batches, retries and cleans up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per transaction.
    pub batch_size: usize,
    /// Publishes awaiting their PubAck at once (the rest of a batch waits for the window).
    pub max_in_flight: usize,
    /// Fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// First retry delay of a failed row; doubles per attempt up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// A publish window without every PubAck by then counts as failed (the transport has its
    /// own ack timeout; this also bounds a publish stuck behind a full client buffer).
    pub publish_timeout: Duration,
    /// How often clean-up deletes sent rows created more than `retention` ago.
    pub cleanup_interval: Duration,
    /// How long rows stay after their creation (for inspection) before clean-up deletes them,
    /// once sent.
    pub retention: Duration,
    /// On shutdown, how long to keep publishing what is ready before giving up (the rows stay
    /// and the next start publishes them).
    pub shutdown_grace: Duration,
    /// How long rows published from memory may wait to be marked sent, so that the marks of
    /// several commits go in one statement (and before any claim, which would see them unsent).
    /// Zero marks after every publish.
    pub mark_delay: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            max_in_flight: 256,
            poll_interval: Duration::from_secs(1),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(10),
            cleanup_interval: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
            mark_delay: Duration::from_millis(20),
        }
    }
}

/// Counters for metrics and readiness (read with [`RelayStats::snapshot`]).
#[derive(Debug, Default)]
pub struct RelayStats {
    batches: AtomicU64,
    published: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Claim transactions that found rows.
    pub batches: u64,
    /// Rows published and marked sent.
    pub published: u64,
    /// Failed publish attempts (each will be retried).
    pub failed: u64,
    /// The latest publish or database error, cleared by the next clean batch.
    pub last_error: Option<String>,
}

impl RelayStats {
    /// The current values.
    pub fn snapshot(&self) -> RelayCounters {
        RelayCounters {
            batches: self.batches.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// What one claim transaction did.
#[derive(Debug, Default)]
struct Batch {
    claimed: usize,
    /// Claimed rows held back behind an older row of their key.
    blocked: usize,
    published: usize,
    failed: usize,
    /// The first publish error, if any row failed.
    error: Option<messaging::Error>,
}

/// What a run of batches did.
#[derive(Debug, Default)]
struct Drained {
    published: usize,
    /// The last batch held rows back behind another relay's or a retrying row.
    blocked: bool,
    error: Option<messaging::Error>,
}

/// Publishes one schema's outbox. Run one per service instance; several may run at once.
pub struct OutboxRelay {
    pool: PgPool,
    transport: Arc<dyn Transport>,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    /// The pending notifications and the relay's wake-up.
    sink: Sink,
    /// The `LISTEN` connection, this relay's own unless shared ([`OutboxRelay::with_listener`]).
    listener: OutboxListener,
}

/// After a notification naming rows another process enqueued: how long its relay gets to
/// publish them before this one claims whatever is left.
const FOREIGN_GRACE: Duration = Duration::from_millis(250);

/// One lock per schema for the relays of this process: the fast path and the claim take turns,
/// so a key's rows leave the process in commit order even with several relays on one outbox.
/// It holds the rows the fast path published and has not marked sent yet: a claim marks them
/// first, whichever relay of the schema published them, so it never publishes them again.
static SCHEMA_LOCKS: LazyLock<Mutex<HashMap<String, Arc<Turn>>>> = LazyLock::new(Mutex::default);

/// A schema's turn, and the ids published but not yet marked sent.
type Turn = tokio::sync::Mutex<Vec<uuid::Uuid>>;

fn schema_lock(schema: &str) -> Arc<Turn> {
    SCHEMA_LOCKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(schema.to_owned())
        .or_default()
        .clone()
}

/// What handling the pending notifications left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Every notified row was published from memory.
    Done,
    /// Claim now: a wake-up without row ids (poll, reconnect, overflow), or a failure.
    Claim,
    /// Rows another process enqueued: claim after [`FOREIGN_GRACE`] if still unsent.
    ClaimSoon,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The claim: the oldest unsent rows that are due, locked (skipping rows another relay holds),
/// each flagged `blocked` if an older unsent row of its key is outside this claim (locked by
/// another relay, or waiting for its retry): publishing past it would break the key's order.
///
/// The check runs once per key, not per row (`MATERIALIZED`, whatever the estimates say): find
/// the key's oldest unsent row outside the claim and block the claimed rows after it.
const CLAIM: &str = "
    WITH claimed AS (
        SELECT seq, id, name, subject, payload, headers, key FROM outbox
        WHERE sent_at IS NULL AND (retry_at IS NULL OR retry_at <= now())
        ORDER BY seq
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ),
    outside AS MATERIALIZED (
        SELECT k.key,
               (SELECT o.seq FROM outbox o
                WHERE o.sent_at IS NULL AND o.key = k.key
                  AND o.seq NOT IN (SELECT seq FROM claimed)
                ORDER BY o.seq LIMIT 1) AS first_seq
        FROM (SELECT DISTINCT key FROM claimed WHERE key IS NOT NULL) k
    )
    SELECT c.seq, c.id, c.name, c.subject, c.payload, c.headers, c.key,
           coalesce(c.seq > x.first_seq, false) AS blocked
    FROM claimed c LEFT JOIN outside x ON x.key = c.key";

/// The claim transaction's settings, sent with its `BEGIN` (no extra round trip):
/// - `synchronous_commit off`: the marks need not wait for the WAL flush. A mark lost in a
///   database crash only republishes rows that the broker or the inboxes de-duplicate, and the
///   relay's commits stop queueing behind the producers' flushes.
/// - `enable_seqscan off`, `enable_sort off`: always walk the indexes. A queue table's
///   statistics are usually wrong: analysed while nearly empty, then a backlog builds up (a
///   broker outage). Trusting them, the planner scans and sorts the whole table on every batch
///   (claim and mark), which makes draining a large backlog quadratic.
const BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit TO off; \
                     SET LOCAL enable_seqscan TO off; SET LOCAL enable_sort TO off";

impl OutboxRelay {
    /// A relay for the outbox of `pool`'s schema (its `search_path`), publishing through
    /// `transport`.
    pub fn new(pool: PgPool, transport: Arc<dyn Transport>, config: RelayConfig) -> Self {
        let listener = OutboxListener::from_options(pool.connect_options().as_ref().clone());
        OutboxRelay {
            pool,
            transport,
            config,
            stats: Arc::default(),
            sink: Sink::default(),
            listener,
        }
    }

    /// Hears the outbox's notifications on `listener`, shared with the process's other relays
    /// on the same database, instead of on a connection of its own.
    pub fn with_listener(mut self, listener: OutboxListener) -> Self {
        self.listener = listener;
        self
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Publishes until `shutdown`, then keeps publishing what is ready for up to
    /// `shutdown_grace`. Never returns early: failures are logged and retried.
    pub async fn run(&self, shutdown: CancellationToken) {
        let metrics = tokio::spawn(outbox::report_metrics(
            self.pool.clone(),
            outbox::METRICS_INTERVAL,
            shutdown.clone(),
        ));
        self.relay(shutdown).await;
        let _ = metrics.await;
    }

    async fn relay(&self, shutdown: CancellationToken) {
        let _presence = outbox::RelayPresence::new();
        let schema = loop {
            match self.schema().await {
                Ok(schema) => break schema,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: database failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(self.config.retry_initial) => {}
                    }
                }
            }
        };
        let turn = schema_lock(&schema);
        let listening = self
            .listener
            .register(format!("outbox.{schema}"), self.sink.clone());
        let mut backoff = self.config.retry_initial;
        let mut broker_down = false;
        // The fast path is safe only once a claim has found the outbox empty: before that, an
        // older row of a notified key may still be waiting in the table.
        let mut fast = false;
        let mut claim_at: Option<Instant> = Some(Instant::now());
        // When the rows the fast path published last are due to be marked sent.
        let mut mark_at: Option<Instant> = None;
        let mut next_cleanup = Instant::now() + self.config.cleanup_interval;
        loop {
            let next = self.publish_notified(&turn, &mut fast).await;
            if mark_at.is_none() && !turn.lock().await.is_empty() {
                mark_at = Some(Instant::now() + self.config.mark_delay);
            }
            match next {
                Next::Done => {}
                Next::Claim => claim_at = Some(Instant::now()),
                Next::ClaimSoon => {
                    let soon = Instant::now() + FOREIGN_GRACE;
                    claim_at = Some(claim_at.map_or(soon, |at| at.min(soon)));
                }
            }
            let due = claim_at.is_some_and(|at| at <= Instant::now());
            let wait = if !due {
                claim_at.map_or(self.config.poll_interval, |at| {
                    at.saturating_duration_since(Instant::now())
                })
            } else {
                claim_at = None;
                let mut unmarked = turn.lock().await;
                let drained = self.drain(&mut unmarked).await;
                drop(unmarked);
                mark_at = None;
                match drained {
                    Ok(drained) => {
                        fast = drained.error.is_none()
                            && !drained.blocked
                            && !self.rows_wait_for_retry().await;
                        if broker_down && drained.published > 0 {
                            // The broker is back: retry the rows that failed while it was away
                            // now rather than when their back-off ends.
                            broker_down = false;
                            self.retry_now().await;
                        }
                        if drained.error.is_some() {
                            broker_down |= drained.published == 0;
                            self.next_backoff(&mut backoff)
                        } else if drained.blocked {
                            // Held back behind a row another relay is publishing (its commit
                            // sends no notification) or one waiting for its retry: look again
                            // soon.
                            backoff = self.config.retry_initial;
                            self.config.retry_initial.min(self.config.poll_interval)
                        } else {
                            backoff = self.config.retry_initial;
                            self.config.poll_interval
                        }
                    }
                    Err(e) => {
                        fast = false;
                        tracing::warn!(error = %e, "outbox relay: database failed; retrying");
                        self.stats.set_error(Some(e.to_string()));
                        self.next_backoff(&mut backoff)
                    }
                }
            };
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + self.config.cleanup_interval;
                match outbox::delete_sent(&self.pool, self.config.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "outbox clean-up"),
                    Err(e) => tracing::warn!(error = %e, "outbox clean-up failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.sink.wake.notified() => {}
                _ = tokio::time::sleep_until(mark_at.unwrap_or_else(Instant::now)),
                    if mark_at.is_some() =>
                {
                    mark_at = None;
                    let mut unmarked = turn.lock().await;
                    if let Err(e) = mark_sent(&self.pool, &mut unmarked).await {
                        tracing::warn!(error = %e, "outbox relay: marking sent rows failed");
                        fast = false;
                        claim_at = Some(Instant::now());
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    // Nothing woke us: poll (a lost notification, a row another relay left).
                    claim_at.get_or_insert_with(Instant::now);
                }
            }
        }
        drop(listening);
        match tokio::time::timeout(self.config.shutdown_grace, self.flush_turn(&turn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "outbox relay stopped with rows unsent"),
            Err(_) => tracing::warn!("outbox relay stopped before its backlog was published"),
        }
    }

    /// Publishes every row that is ready now; returns how many were published. Stops at the
    /// first batch with a failed publish and returns that error (the rows stay for a retry).
    pub async fn flush(&self) -> Result<usize> {
        let turn = schema_lock(&self.schema().await?);
        self.flush_turn(&turn).await
    }

    /// [`OutboxRelay::flush`] with the schema's turn already known.
    async fn flush_turn(&self, turn: &Turn) -> Result<usize> {
        let drained = self.drain(&mut *turn.lock().await).await?;
        match drained.error {
            None => Ok(drained.published),
            Some(error) => Err(Error::Publish(error)),
        }
    }

    /// The schema the pool's `search_path` resolves to (empty if none does): names the
    /// relay's channel and its turn.
    async fn schema(&self) -> sqlx::Result<String> {
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&self.pool)
            .await?;
        Ok(schema.unwrap_or_default())
    }

    /// Marks what the fast path published (`unmarked`, under the schema's turn), then runs
    /// batches while they come back full and clean.
    async fn drain(&self, unmarked: &mut Vec<uuid::Uuid>) -> Result<Drained> {
        mark_sent(&self.pool, unmarked).await?;
        let mut drained = Drained::default();
        loop {
            let batch = self.batch().await?;
            drained.published += batch.published;
            drained.blocked = batch.blocked > 0;
            if batch.error.is_some() {
                drained.error = batch.error;
                return Ok(drained);
            }
            // A full batch that published nothing holds only rows waiting for another relay.
            if batch.claimed < self.config.batch_size || batch.published == 0 {
                return Ok(drained);
            }
        }
    }

    /// One claim transaction: claim, publish, mark.
    async fn batch(&self) -> Result<Batch> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let mut rows: Vec<Row> = sqlx::query_as(CLAIM)
            .bind(self.config.batch_size as i64)
            .fetch_all(&mut *tx)
            .await?;
        rows.sort_unstable_by_key(|r| r.seq);
        let mut batch = Batch {
            claimed: rows.len(),
            ..Batch::default()
        };
        if rows.is_empty() {
            return Ok(batch);
        }
        // A span only for batches with work: an idle relay's polls would flood the traces.
        let span = tracing::debug_span!(
            "outbox.batch",
            claimed = rows.len(),
            published = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        async {
            let ready: Vec<&Row> = rows.iter().filter(|r| !r.blocked).collect();
            batch.blocked = rows.len() - ready.len();
            let (sent, failed) = self
                .publish(&ready, row_key, Row::envelope, &mut batch.error)
                .await;
            let sent_ids: Vec<uuid::Uuid> = sent.iter().map(|r| r.id).collect();
            outbox::forget_pending(&sent_ids);
            let sent: Vec<i64> = sent.iter().map(|r| r.seq).collect();
            let failed: Vec<i64> = failed.iter().map(|r| r.seq).collect();
            if !sent.is_empty() {
                sqlx::query("UPDATE outbox SET sent_at = now() WHERE seq = ANY($1)")
                    .bind(&sent)
                    .execute(&mut *tx)
                    .await?;
            }
            if !failed.is_empty() {
                let reason = batch.error.as_ref().map(ToString::to_string).unwrap_or_default();
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                         retry_at = now() + make_interval(secs =>
                             least($3 * power(2, least(attempts, 30)), $4))
                     WHERE seq = ANY($1)",
                )
                .bind(&failed)
                .bind(&reason)
                .bind(self.config.retry_initial.as_secs_f64())
                .bind(self.config.retry_max.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;

            batch.published = sent.len();
            batch.failed = failed.len();
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.published.fetch_add(sent.len() as u64, Ordering::Relaxed);
            self.stats.failed.fetch_add(failed.len() as u64, Ordering::Relaxed);
            let span = tracing::Span::current();
            span.record("published", batch.published);
            span.record("failed", batch.failed);
            match &batch.error {
                None => self.stats.set_error(None),
                Some(e) => {
                    tracing::warn!(error = %e, failed = batch.failed, "outbox publish failed; will retry");
                    self.stats.set_error(Some(e.to_string()));
                }
            }
            Ok(batch)
        }
        .instrument(span)
        .await
    }

    /// Publishes `items` window by window (see [`windows`]); returns those to mark sent and
    /// those that failed (the first error goes to `error`). After a window with a failure no
    /// further window is sent.
    async fn publish<'a, T>(
        &self,
        items: &[&'a T],
        key: fn(&T) -> Option<&str>,
        envelope: fn(&T) -> Envelope,
        error: &mut Option<messaging::Error>,
    ) -> (Vec<&'a T>, Vec<&'a T>) {
        let mut sent = Vec::with_capacity(items.len());
        let mut failed = Vec::new();
        for window in windows(items, key, self.config.max_in_flight) {
            let envelopes: Vec<Envelope> = window.iter().map(|item| envelope(item)).collect();
            let results = match tokio::time::timeout(
                self.config.publish_timeout,
                self.transport.publish_batch(&envelopes),
            )
            .await
            {
                Ok(results) => results,
                Err(_) => envelopes
                    .iter()
                    .map(|env| {
                        Err(messaging::Error::Publish {
                            subject: env.subject.clone(),
                            reason: format!("no PubAck within {:?}", self.config.publish_timeout),
                        })
                    })
                    .collect(),
            };
            // A transport returning fewer results than envelopes leaves the rest unmarked
            // (retried), which is safe.
            for (item, result) in window.iter().zip(results) {
                match result {
                    Ok(()) => sent.push(*item),
                    Err(e) => {
                        failed.push(*item);
                        error.get_or_insert(e);
                    }
                }
            }
            if !failed.is_empty() {
                break;
            }
        }
        (sent, failed)
    }

    /// The fast path: publishes the rows the pending notifications name that this process
    /// enqueued (from memory, in commit order) and leaves their ids in the turn to be marked
    /// sent (at once if `mark_delay` is zero or a batch is full). Says what is left to do.
    async fn publish_notified(&self, turn: &Turn, fast: &mut bool) -> Next {
        let payloads =
            std::mem::take(&mut *self.sink.notified.lock().unwrap_or_else(|e| e.into_inner()));
        if payloads.is_empty() {
            return Next::Done;
        }
        if !*fast {
            return Next::Claim;
        }
        let mut next = Next::Done;
        let mut ids = Vec::new();
        for payload in &payloads {
            if payload.is_empty() {
                next = Next::Claim;
            }
            for id in payload.split(',').filter(|id| !id.is_empty()) {
                match uuid::Uuid::parse_str(id) {
                    Ok(id) => ids.push(id),
                    Err(_) => next = Next::Claim,
                }
            }
        }
        if ids.is_empty() {
            return next;
        }
        let mut unmarked = turn.lock().await;
        let envelopes = outbox::take_pending(&ids);
        if envelopes.len() < ids.len() && next == Next::Done {
            next = Next::ClaimSoon;
        }
        if envelopes.is_empty() {
            return next;
        }
        let span = tracing::debug_span!(
            "outbox.fast",
            notified = ids.len(),
            published = tracing::field::Empty,
        );
        async {
            let refs: Vec<&Envelope> = envelopes.iter().collect();
            let mut error = None;
            let (sent, failed) = self
                .publish(&refs, Envelope::key, Envelope::clone, &mut error)
                .await;
            tracing::Span::current().record("published", sent.len());
            self.stats.published.fetch_add(sent.len() as u64, Ordering::Relaxed);
            if let Some(e) = &error {
                // The failed rows (and those after them) stay unsent: the claim retries them
                // with back-off, and the fast path waits until it has drained them.
                tracing::warn!(error = %e, failed = failed.len(), "outbox publish failed; will retry");
                self.stats.failed.fetch_add(failed.len() as u64, Ordering::Relaxed);
                self.stats.set_error(Some(e.to_string()));
                *fast = false;
                next = Next::Claim;
            }
            unmarked.extend(sent.iter().map(|env| env.id));
            if (self.config.mark_delay.is_zero() || unmarked.len() >= self.config.batch_size)
                && let Err(e) = mark_sent(&self.pool, &mut unmarked).await
            {
                tracing::warn!(error = %e, "outbox relay: marking sent rows failed");
                *fast = false;
                next = Next::Claim;
            }
            next
        }
        .instrument(span)
        .await
    }

    /// Whether a failed row waits for its retry: the claim skips it until then, so the fast
    /// path must wait too (it would publish a newer row of its key first). On a database error
    /// the answer is yes, which keeps the fast path off.
    async fn rows_wait_for_retry(&self) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL AND retry_at IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap_or(true)
    }

    /// Makes every row waiting for a retry due at once.
    async fn retry_now(&self) {
        let reset = sqlx::query(
            "UPDATE outbox SET retry_at = NULL WHERE sent_at IS NULL AND retry_at IS NOT NULL",
        )
        .execute(&self.pool)
        .await;
        match reset {
            Ok(done) if done.rows_affected() > 0 => self.sink.wake.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox: resetting retry delays failed"),
        }
    }

    fn next_backoff(&self, backoff: &mut Duration) -> Duration {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(self.config.retry_max);
        wait
    }
}

/// Splits claimed rows into publish windows of at most `max_in_flight` rows, where window r
/// holds the r-th row of every key (keyless rows go first). A key's next row is therefore sent
/// only after the broker confirmed the previous one: if a publish fails, no later row of its key
/// can already be stored ahead of it. Different keys still share a window, so a batch over many
/// aggregates costs a round trip or two; a burst on one key costs one round trip per row.
fn windows<'a, T>(
    items: &[&'a T],
    key: fn(&T) -> Option<&str>,
    max_in_flight: usize,
) -> Vec<Vec<&'a T>> {
    let mut next_rank: HashMap<&str, usize> = HashMap::new();
    let mut ranks: Vec<Vec<&'a T>> = Vec::new();
    for &item in items {
        let rank = match key(item) {
            Some(key) => {
                let next = next_rank.entry(key).or_insert(0);
                *next += 1;
                *next - 1
            }
            None => 0,
        };
        if ranks.len() <= rank {
            ranks.resize_with(rank + 1, Vec::new);
        }
        ranks[rank].push(item);
    }
    ranks
        .into_iter()
        .flat_map(|rank| {
            rank.chunks(max_in_flight.max(1))
                .map(<[&T]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn row_key(row: &Row) -> Option<&str> {
    row.key.as_deref()
}

/// Marks the rows of `unmarked` sent in one round trip and empties it, without waiting for the
/// WAL flush (a mark lost in a crash only republishes rows the broker de-duplicates). The ids
/// are UUIDs this process formatted, so the statement is built as text (a simple query needs no
/// prepare). On failure the ids are dropped all the same: the rows stay unsent, a claim
/// publishes them again and the broker drops the copies (same Nats-Msg-Id).
async fn mark_sent(
    pool: &PgPool,
    unmarked: &mut Vec<uuid::Uuid>,
) -> std::result::Result<(), sqlx::Error> {
    let sent = std::mem::take(unmarked);
    if sent.is_empty() {
        return Ok(());
    }
    let mut sql = String::with_capacity(160 + sent.len() * 40);
    sql.push_str(
        "BEGIN; SET LOCAL synchronous_commit TO off; \
         UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL AND id IN (",
    );
    for (i, id) in sent.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('\'');
        sql.push_str(&id.hyphenated().to_string());
        sql.push('\'');
    }
    sql.push_str("); COMMIT");
    // Audited: only UUIDs this process formatted are spliced in.
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, key: Option<&str>) -> Row {
        Row {
            seq,
            id: uuid::Uuid::now_v7(),
            name: "n".into(),
            subject: "s".into(),
            payload: Vec::new(),
            headers: sqlx::types::Json(Default::default()),
            key: key.map(str::to_owned),
            blocked: false,
        }
    }

    fn seqs(windows: &[Vec<&Row>]) -> Vec<Vec<i64>> {
        windows
            .iter()
            .map(|w| w.iter().map(|r| r.seq).collect())
            .collect()
    }

    #[test]
    fn a_window_holds_at_most_one_row_per_key_in_order() {
        let rows = [
            row(1, Some("a")),
            row(2, Some("b")),
            row(3, Some("a")),
            row(4, None),
            row(5, Some("a")),
            row(6, Some("c")),
            row(7, None),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        assert_eq!(
            seqs(&windows(&refs, row_key, 10)),
            vec![vec![1, 2, 4, 6, 7], vec![3], vec![5]]
        );
        assert_eq!(
            seqs(&windows(&refs, row_key, 2)),
            vec![vec![1, 2], vec![4, 6], vec![7], vec![3], vec![5]]
        );
        assert!(windows(&[], row_key, 10).is_empty());
    }
}
