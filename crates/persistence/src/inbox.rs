//! The inbox: a consumer records each message id in the same transaction as the message's
//! effects. If the id is already there the message was handled before (a broker redelivery, or
//! an outbox row republished after a relay crash): ack it and do nothing. Because the record
//! commits or rolls back with the effects, a failed handler leaves no record behind, so its
//! retry is not mistaken for a duplicate (the original's notifications module lost messages
//! that way).

use std::time::Duration;

use messaging::{CancellationToken, Envelope};
use sqlx::{PgConnection, PgPool};

use crate::error::Result;

/// Default retention. It must outlast every way a copy can still arrive: broker redeliveries
/// (minutes of back-off), and an outbox row republished after a crash, which can happen as
/// late as the producer's database or broker outage lasts. A week covers both with margin.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Records that `consumer` handles `envelope`, inside the handler's transaction. Returns `true`
/// the first time, `false` for a duplicate, which the caller acks and skips.
///
/// ```ignore
/// let mut tx = pool.begin().await?;
/// if inbox::record(&mut tx, &ctx.envelope, &ctx.consumer).await? {
///     apply_effects(&mut tx, message).await?;
///     outbox::enqueue(&mut tx, &follow_ups).await?;
/// }
/// tx.commit().await?;
/// ```
pub async fn record(conn: &mut PgConnection, envelope: &Envelope, consumer: &str) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id, name) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(envelope.id)
    .bind(&envelope.name)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Deletes records older than `retention`, in chunks; returns how many went.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64> {
    crate::delete_in_chunks(
        pool,
        "DELETE FROM inbox WHERE (consumer, message_id) IN (
             SELECT consumer, message_id FROM inbox
             WHERE received_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        retention,
    )
    .await
}

/// Prunes every `interval` until `shutdown`; failures are logged and tried again next time.
pub async fn run_pruner(
    pool: PgPool,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match prune(&pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "inbox pruned"),
            Err(e) => tracing::warn!(error = %e, "inbox pruning failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
