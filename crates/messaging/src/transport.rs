//! The transport seam: JetStream in production and integration tests, memory in unit tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::subscription::Subscription;

/// Answers one query envelope with a response envelope, or an error text for the caller.
pub type ResponderFn = Arc<
    dyn Fn(Envelope) -> Pin<Box<dyn Future<Output = Result<Envelope, String>> + Send>>
        + Send
        + Sync,
>;

/// Moves envelopes: publish with broker confirmation, request/reply, durable consumers.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The deployment prefix every subject starts with.
    fn prefix(&self) -> &str;

    /// Publishes one envelope and returns once the broker has stored it.
    async fn publish(&self, envelope: &Envelope) -> Result<()>;

    /// Publishes many envelopes with their confirmations pipelined; one result per envelope,
    /// in order. An `Err` means that envelope may not be stored and must be retried.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            out.push(self.publish(env).await);
        }
        out
    }

    /// Sends a query and waits for the answer.
    async fn request(&self, envelope: Envelope, timeout: Duration) -> Result<Envelope>;

    /// Starts a durable consumer; it runs (and is recreated after failures) until `shutdown`.
    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<ConsumerHandle>;

    /// Answers queries on `subject` (full subject) as a member of the queue `group`.
    async fn serve(
        &self,
        subject: String,
        group: String,
        responder: ResponderFn,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>>;

    /// Whether the broker connection is up.
    fn is_connected(&self) -> bool;
}

/// Live state of one consumer, for readiness checks and metrics.
#[derive(Debug)]
pub struct ConsumerStatus {
    /// Durable name.
    pub durable: String,
    running: AtomicBool,
    handled: AtomicU64,
    repulls: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ConsumerStatus {
    pub(crate) fn new(durable: &str) -> Arc<Self> {
        Arc::new(ConsumerStatus {
            durable: durable.to_owned(),
            running: AtomicBool::new(false),
            handled: AtomicU64::new(0),
            repulls: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub(crate) fn set_running(&self) {
        self.running.store(true, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn set_failed(&self, error: String) {
        self.running.store(false, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    pub(crate) fn set_stopped(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    pub(crate) fn count_settled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_repull(&self) {
        self.repulls.fetch_add(1, Ordering::Relaxed);
    }

    /// How often a pull had to be asked anew because the server went silent (no message and no
    /// heartbeat for two heartbeat intervals) while the consumer kept running.
    pub fn repulls(&self) -> u64 {
        self.repulls.load(Ordering::Relaxed)
    }

    /// Whether the consumer is fetching right now.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Messages settled (acked, skipped or dead-lettered) so far.
    pub fn settled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// The error that last stopped it, if it is not running.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running consumer: its status and the task to await after shutdown.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// Live status.
    pub status: Arc<ConsumerStatus>,
    /// Ends after shutdown, once in-flight messages are settled.
    pub task: JoinHandle<()>,
}
