//! What a service subscribes to: one durable consumer per (service, subject), the typed handlers
//! it runs per message name, and its failure policy.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::envelope::{Envelope, Outcome, header};
use crate::error::{Error, Result};
use crate::message::{Message, Reply};

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (database down, a dependency timed out): NAK with back-off.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Trying again cannot help (validation failed, data missing for good): dead-letter at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn retryable(reason: impl std::fmt::Display) -> Self {
        HandlerError::Retryable(reason.to_string())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        HandlerError::Permanent(reason.to_string())
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            HandlerError::Retryable(r) | HandlerError::Permanent(r) => r,
        }
    }
}

/// What a handler sees besides the typed message: the envelope (headers, ids) and the attempt.
#[derive(Debug, Clone)]
pub struct MessageContext {
    /// The received envelope (payload included).
    pub envelope: Arc<Envelope>,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// The durable consumer handling it.
    pub consumer: Arc<str>,
}

impl MessageContext {
    /// The message id (the inbox de-duplication key).
    pub fn message_id(&self) -> uuid::Uuid {
        self.envelope.id
    }

    /// Builds the reply to the command being handled, addressed to its `Reply-To` channel and
    /// correlated with it. The caller decides how it leaves: an outbox in the same transaction
    /// as the command's effects, or a direct publish.
    ///
    /// A command without a reply channel is malformed: the error is permanent (dead letter),
    /// where the original crashed the process.
    pub fn reply<R: Reply>(&self, outcome: Outcome, reply: &R) -> Result<Envelope, HandlerError> {
        let to = self.envelope.header(header::REPLY_TO).ok_or_else(|| {
            HandlerError::permanent(format!(
                "command {} ({}) has no {} header",
                self.envelope.name,
                self.envelope.id,
                header::REPLY_TO
            ))
        })?;
        let mut env = Envelope::new(to, reply).caused_by(&self.envelope);
        env.set_header(header::REPLY_OUTCOME, outcome.as_str());
        if let Some(key) = self.envelope.key() {
            env.set_header(header::KEY, key);
        }
        Ok(env)
    }
}

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// A handler with its message type erased: decodes the payload, then runs.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call(&self, ctx: MessageContext) -> Result<HandlerFuture, Error>;
}

struct Typed<M, F> {
    f: F,
    _m: std::marker::PhantomData<fn(M)>,
}

impl<M, F, Fut> ErasedHandler for Typed<M, F>
where
    M: Message,
    F: Fn(M, MessageContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn call(&self, ctx: MessageContext) -> Result<HandlerFuture, Error> {
        let msg = M::decode(ctx.envelope.payload.as_ref()).map_err(|e| {
            Error::Malformed(format!(
                "payload of {} does not decode: {e}",
                ctx.envelope.name
            ))
        })?;
        Ok(Box::pin((self.f)(msg, ctx)))
    }
}

/// A handler and its metric handles, registered once so the hot path neither allocates label
/// strings nor looks metrics up per message.
pub(crate) struct Route {
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) metrics: HandlerMetrics,
}

/// `messaging_received_total{consumer,message,outcome}` and
/// `messaging_handler_duration_seconds{consumer,message}` for one (consumer, message name).
#[derive(Clone)]
pub(crate) struct HandlerMetrics {
    pub(crate) acked: metrics::Counter,
    pub(crate) retried: metrics::Counter,
    pub(crate) dead_lettered: metrics::Counter,
    pub(crate) duration: metrics::Histogram,
}

impl HandlerMetrics {
    pub(crate) fn new(consumer: &str, message: &str) -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "messaging_received_total",
                "consumer" => consumer.to_owned(),
                "message" => message.to_owned(),
                "outcome" => outcome,
            )
        };
        HandlerMetrics {
            acked: counter("acked"),
            retried: counter("retried"),
            dead_lettered: counter("dead_lettered"),
            duration: metrics::histogram!(
                "messaging_handler_duration_seconds",
                "consumer" => consumer.to_owned(),
                "message" => message.to_owned(),
            ),
        }
    }
}

/// Adapts a handler that takes shared service state first — `handler(state, message, ctx)` — to
/// the closure a [`Subscription`] takes, cloning the state for each message.
pub fn with_state<S, M, F, Fut>(
    state: &S,
    handler: F,
) -> impl Fn(M, MessageContext) -> Fut + Send + Sync + 'static
where
    S: Clone + Send + Sync + 'static,
    M: Send + 'static,
    F: Fn(S, M, MessageContext) -> Fut + Send + Sync + 'static,
    Fut: Send + 'static,
{
    let state = state.clone();
    move |message, ctx| handler(state.clone(), message, ctx)
}

/// Failure handling and concurrency of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumerPolicy {
    /// Delay before attempt n+1 after attempt n failed (the last entry repeats).
    pub backoff: Vec<Duration>,
    /// Total attempts before a message is dead-lettered.
    pub max_deliveries: u32,
    /// A handler running longer fails with a retryable timeout.
    pub handler_timeout: Duration,
    /// Parallel workers in one process; messages with the same key go to the same worker.
    pub workers: usize,
    /// Keep per-key order even across failures: a failed message is retried in place (its worker
    /// waits out the back-off) instead of being NAKed and overtaken by later messages of its key.
    pub ordered: bool,
    /// How long the broker waits for an ack before redelivering (must exceed the handler timeout).
    pub ack_wait: Duration,
}

impl Default for ConsumerPolicy {
    fn default() -> Self {
        ConsumerPolicy {
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(5),
            ],
            max_deliveries: 5,
            handler_timeout: Duration::from_secs(10),
            workers: 4,
            ordered: true,
            ack_wait: Duration::from_secs(30),
        }
    }
}

impl ConsumerPolicy {
    /// The delay after the given failed attempt (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let idx = (attempt.max(1) - 1) as usize;
        self.backoff
            .get(idx)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// One durable consumer: its name, the subject it filters on, its handlers and policy.
pub struct Subscription {
    pub(crate) durable: Arc<str>,
    pub(crate) subject: String,
    pub(crate) handlers: HashMap<String, Route>,
    pub(crate) ignored: HashSet<String>,
    pub(crate) policy: ConsumerPolicy,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("durable", &self.durable)
            .field("subject", &self.subject)
            .field("handles", &self.handlers.keys().collect::<Vec<_>>())
            .field("ignores", &self.ignored)
            .finish()
    }
}

impl Subscription {
    /// A consumer named `durable` (e.g. `baskets-products`) on `subject` below the prefix
    /// (e.g. `stores.events.Product`).
    pub fn new(durable: impl Into<String>, subject: impl Into<String>) -> Self {
        Subscription {
            durable: Arc::from(durable.into()),
            subject: subject.into(),
            handlers: HashMap::new(),
            ignored: HashSet::new(),
            policy: ConsumerPolicy::default(),
        }
    }

    /// Runs `handler` for every message of type `M`.
    pub fn on<M, F, Fut>(mut self, handler: F) -> Self
    where
        M: Message,
        F: Fn(M, MessageContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let typed = Typed {
            f: handler,
            _m: std::marker::PhantomData,
        };
        let name = M::message_name();
        let metrics = HandlerMetrics::new(&self.durable, &name);
        self.handlers.insert(
            name,
            Route {
                handler: Arc::new(typed),
                metrics,
            },
        );
        self
    }

    /// Names this consumer knows but does not need: acked and skipped. Any other name without a
    /// handler is unknown and dead-lettered.
    pub fn ignore<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ignored.extend(names.into_iter().map(Into::into));
        self
    }

    /// Replaces the failure policy.
    pub fn policy(mut self, policy: ConsumerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The durable name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    /// The subject below the prefix.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The policy.
    pub fn consumer_policy(&self) -> &ConsumerPolicy {
        &self.policy
    }
}
