//! The decision core shared by every transport: given a received envelope and its attempt number,
//! run the right handler (decode, timeout, panic isolation) and say what to do with the message.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::envelope::{Envelope, header};
use crate::subscription::{HandlerError, MessageContext, Route, Subscription};

/// What to do with a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handled (or deliberately skipped): acknowledge.
    Ack,
    /// Failed in a way worth retrying: redeliver after `delay`.
    Retry { delay: Duration, reason: String },
    /// Give up: copy to the dead-letter subject with the reason, then terminate.
    DeadLetter { reason: String },
}

/// Runs one attempt through `route`, the handler registered for the envelope's name (if any).
pub(crate) async fn attempt(
    sub: &Subscription,
    route: Option<&Route>,
    env: Arc<Envelope>,
    attempt: u32,
) -> Verdict {
    let policy = &sub.policy;
    if attempt > policy.max_deliveries {
        return Verdict::DeadLetter {
            reason: format!("gave up after {} deliveries", policy.max_deliveries),
        };
    }
    let Some(route) = route else {
        if sub.ignored.contains(&env.name) {
            return Verdict::Ack;
        }
        return Verdict::DeadLetter {
            reason: format!(
                "unknown message name {:?} for consumer {}",
                env.name, sub.durable
            ),
        };
    };
    let span = tracing::info_span!(
        "handle message",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation = "process",
        messaging.message.id = %env.id,
        messaging.message.name = %env.name,
        messaging.destination.name = %env.subject,
        messaging.consumer.group.name = %sub.durable,
        attempt,
        trace_id = tracing::field::Empty,
    );
    // Parsed once, and only for a span something listens to (logs or traces).
    if !span.is_disabled() {
        let parent = env.trace_parent();
        if let Some(parent) = &parent {
            span.record("trace_id", tracing::field::display(parent.trace_id_hex()));
        }
        crate::tracecontext::adopt(&span, || parent);
    }
    let ctx = MessageContext {
        envelope: env.clone(),
        attempt,
        consumer: sub.durable.clone(),
    };
    let fut = match route.handler.call(ctx) {
        Ok(fut) => fut,
        Err(e) => {
            return Verdict::DeadLetter {
                reason: e.to_string(),
            };
        }
    };
    // The handler runs inline (no task spawn per message: that hop cost ~30 % of throughput);
    // a panic is caught at this boundary and a timeout drops (cancels) the future, so a timed-out
    // handler never keeps running beside its own retry.
    let started = tokio::time::Instant::now();
    let guarded = std::panic::AssertUnwindSafe(fut.instrument(span.clone())).catch_unwind();
    let deadline = started + policy.handler_timeout;
    let result = match tokio::time::timeout_at(deadline, guarded).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(HandlerError::Retryable(format!(
            "handler panicked: {}",
            panic_text(panic)
        ))),
        Err(_) => Err(HandlerError::Retryable(format!(
            "handler timed out after {:?}",
            policy.handler_timeout
        ))),
    };
    let _enter = span.enter();
    route
        .metrics
        .duration
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => Verdict::Ack,
        Err(HandlerError::Permanent(reason)) => {
            tracing::warn!(%reason, "permanent handler failure");
            Verdict::DeadLetter { reason }
        }
        Err(HandlerError::Retryable(reason)) if attempt >= policy.max_deliveries => {
            tracing::warn!(%reason, "handler failed on the last allowed delivery");
            Verdict::DeadLetter {
                reason: format!("{reason} (after {attempt} deliveries)"),
            }
        }
        Err(HandlerError::Retryable(reason)) => {
            let delay = policy.delay_after(attempt);
            tracing::info!(%reason, ?delay, "handler failed, will retry");
            Verdict::Retry { delay, reason }
        }
    }
}

/// Runs attempts until the verdict is final. In ordered mode a retry happens in place (after
/// `wait` for the back-off, which also keeps the broker from redelivering meanwhile), so later
/// messages of the same key cannot overtake it; otherwise the first verdict is returned and the
/// broker does the redelivery.
pub(crate) async fn settle<W, Fut>(
    sub: &Subscription,
    env: Arc<Envelope>,
    first_attempt: u32,
    mut wait: W,
) -> (Verdict, u32)
where
    W: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let route = sub.handlers.get(&env.name);
    let mut n = first_attempt;
    loop {
        let verdict = attempt(sub, route, env.clone(), n).await;
        count(sub, route, &env, &verdict);
        match verdict {
            Verdict::Retry { delay, .. } if sub.policy.ordered => {
                wait(delay).await;
                n += 1;
            }
            other => return (other, n),
        }
    }
}

/// Counts each attempt's outcome per consumer and message name (`messaging_received_total`):
/// through the handler's registered handles, or by name for messages without a handler (skipped
/// or dead-lettered unknown names, rare by nature).
fn count(sub: &Subscription, route: Option<&Route>, env: &Envelope, verdict: &Verdict) {
    let outcome = match verdict {
        Verdict::Ack => "acked",
        Verdict::Retry { .. } => "retried",
        Verdict::DeadLetter { .. } => "dead_lettered",
    };
    match route {
        Some(route) => match verdict {
            Verdict::Ack => route.metrics.acked.increment(1),
            Verdict::Retry { .. } => route.metrics.retried.increment(1),
            Verdict::DeadLetter { .. } => route.metrics.dead_lettered.increment(1),
        },
        None => metrics::counter!(
            "messaging_received_total",
            "consumer" => sub.durable.to_string(),
            "message" => env.name.clone(),
            "outcome" => outcome,
        )
        .increment(1),
    }
}

/// The dead-letter copy: original payload and headers, plus why, how often, who and when.
pub(crate) fn dead_letter(
    prefix: &str,
    sub: &Subscription,
    env: &Envelope,
    reason: &str,
    attempts: u32,
) -> Envelope {
    let mut copy = env.clone();
    // A dead letter is a new message (the broker would drop it as a duplicate of the original
    // inside the de-duplication window), but a deterministic one: a redelivery that is
    // dead-lettered again by the same consumer de-duplicates to the same dead letter.
    copy.id = dead_letter_id(env.id, &sub.durable);
    copy.set_header(header::DEAD_LETTER_ORIGINAL_ID, env.id.to_string());
    copy.subject = dead_letter_subject(prefix, &sub.durable);
    copy.set_header(header::DEAD_LETTER_REASON, reason);
    copy.set_header(header::DEAD_LETTER_ATTEMPTS, attempts.to_string());
    copy.set_header(header::DEAD_LETTER_CONSUMER, sub.durable.to_string());
    copy.set_header(header::DEAD_LETTER_SUBJECT, env.subject.clone());
    copy.set_header(
        header::DEAD_LETTER_AT,
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    copy
}

/// The id of the dead letter of message `id` given up by consumer `durable`.
fn dead_letter_id(id: uuid::Uuid, durable: &str) -> uuid::Uuid {
    let fnv = |seed: u64| {
        let mut h = seed;
        for b in id.as_bytes().iter().chain(durable.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv(0xcbf29ce484222325).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv(0x84222325cbf29ce4).to_be_bytes());
    uuid::Uuid::new_v8(bytes)
}

/// Where a consumer's dead letters go: `<prefix>.deadletter.<durable>` (inside the stream, so
/// they are kept, listed and replayed like any other message).
pub fn dead_letter_subject(prefix: &str, durable: &str) -> String {
    format!("{prefix}.deadletter.{durable}")
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

/// Shard index for a key: same key, same worker, so per-key order holds with parallel workers.
pub(crate) fn shard_of(key: &str, shards: usize) -> usize {
    // FNV-1a: stable across processes and runs (std's hasher is randomly seeded).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % shards.max(1) as u64) as usize
}
