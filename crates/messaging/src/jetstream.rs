//! The JetStream transport: one stream per deployment prefix (`<prefix>.>`), publishes that wait
//! for the PubAck with `Nats-Msg-Id` = envelope id, durable pull consumers with bounded in-flight
//! work and per-key worker shards, supervision that recreates a consumer after any failure, and
//! queries over core NATS request/reply with queue groups.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, HeaderName, client::RequestErrorKind};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::dispatch::{self, Verdict};
use crate::envelope::{Envelope, header};
use crate::error::{Error, Result};
use crate::subscription::Subscription;
use crate::transport::{ConsumerHandle, ConsumerStatus, ResponderFn, Transport};

/// How to reach NATS and which stream to use.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Server URL(s), comma separated (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// Subject prefix; the stream captures `<prefix>.>`.
    pub prefix: String,
    /// Stream name (default: the prefix with unsafe characters replaced).
    pub stream: Option<String>,
    /// Window in which the broker drops a publish whose `Nats-Msg-Id` it has already stored.
    pub duplicate_window: Duration,
    /// Stream replicas (3 on a three-node cluster).
    pub replicas: usize,
    /// Connection name shown by the server's monitoring.
    pub connection_name: String,
    /// Optional user and password.
    pub user_password: Option<(String, String)>,
    /// Optional credentials file (nkey + JWT).
    pub credentials_file: Option<std::path::PathBuf>,
    /// Optional PEM file of the root certificate(s) the server's certificate must chain to
    /// (besides the system's); setting it makes TLS required.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Optional client certificate and private key (PEM files), for servers that verify
    /// clients; setting them makes TLS required.
    pub tls_client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// How long a publish waits for its PubAck.
    pub ack_timeout: Duration,
}

impl JetStreamConfig {
    /// Defaults for `url` and `prefix`.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        JetStreamConfig {
            url: url.into(),
            prefix: prefix.into(),
            stream: None,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            connection_name: "mallbots".to_owned(),
            user_password: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_client_cert: None,
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// The stream this configuration uses: `stream`, else the prefix with every character a
    /// stream name cannot hold replaced by `_` (public so tools that grant access to the stream,
    /// such as the NATS permissions generator, name the same one).
    pub fn stream_name(&self) -> String {
        self.stream.clone().unwrap_or_else(|| {
            self.prefix
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    }
}

/// The JetStream transport. Cheap to clone.
#[derive(Clone)]
pub struct JetStream {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: Arc<str>,
    stream: Arc<str>,
    config: Arc<JetStreamConfig>,
    published: Arc<PublishCounters>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .finish()
    }
}

impl JetStream {
    /// Connects (reconnecting forever afterwards) and makes sure the stream exists.
    pub async fn connect(config: JetStreamConfig) -> Result<Self> {
        let mut options = async_nats::ConnectOptions::new()
            .name(&config.connection_name)
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            });
        if let Some((user, password)) = &config.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &config.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| Error::Connect {
                    url: config.url.clone(),
                    reason: format!("credentials file {}: {e}", path.display()),
                })?;
        }
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.tls_client_cert {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let urls: Vec<String> = config.url.split(',').map(|u| u.trim().to_owned()).collect();
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Connect {
                url: config.url.clone(),
                reason: format!("{e}"),
            })?;
        let client = options.connect(addrs).await.map_err(|e| Error::Connect {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.ack_timeout);
        let this = JetStream {
            client,
            js,
            prefix: Arc::from(config.prefix.as_str()),
            stream: Arc::from(config.stream_name().as_str()),
            config: Arc::new(config),
            published: Arc::default(),
        };
        this.ensure_stream().await?;
        Ok(this)
    }

    /// Creates the stream if missing (idempotent; every process calls it at start).
    pub async fn ensure_stream(&self) -> Result<()> {
        let config = jetstream::stream::Config {
            name: self.stream.to_string(),
            subjects: vec![format!("{}.>", self.prefix)],
            duplicate_window: self.config.duplicate_window,
            num_replicas: self.config.replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        // Stream creation can fail transiently (a cluster electing a leader, a server tidying
        // its store directory): try a few times before reporting.
        let mut last = String::new();
        for attempt in 1..=5u32 {
            match self.js.get_or_create_stream(config.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(stream = %self.stream, attempt, error = %last, "stream provisioning failed");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
        Err(Error::Provision {
            what: format!("stream {}", self.stream),
            reason: last,
        })
    }

    /// Deletes the stream (test clean-up).
    pub async fn delete_stream(&self) -> Result<()> {
        self.js
            .delete_stream(self.stream.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| Error::Provision {
                what: format!("delete stream {}", self.stream),
                reason: e.to_string(),
            })
    }

    /// The underlying NATS client (for raw benchmarks and tooling).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// The stream name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// Messages a durable consumer has not yet had acknowledged (pending + ack-pending), for lag
    /// metrics and tooling.
    pub async fn consumer_lag(&self, durable: &str) -> Result<(u64, u64)> {
        let stream = self
            .js
            .get_stream(self.stream.as_ref())
            .await
            .map_err(|e| Error::Provision {
                what: format!("stream {}", self.stream),
                reason: e.to_string(),
            })?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(durable)
            .await
            .map_err(|e| Error::Provision {
                what: format!("consumer {durable}"),
                reason: e.to_string(),
            })?;
        let info = consumer.info().await.map_err(|e| Error::Provision {
            what: format!("consumer {durable}"),
            reason: e.to_string(),
        })?;
        Ok((info.num_pending, info.num_ack_pending as u64))
    }

    /// Dead letters stored in the stream, per consumer (`<prefix>.deadletter.<durable>` →
    /// durable): the depth of each dead-letter queue, for metrics and tooling. Consumers without
    /// dead letters are absent.
    pub async fn dead_letter_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let provision = |e: &dyn std::fmt::Display| Error::Provision {
            what: format!("stream {}", self.stream),
            reason: e.to_string(),
        };
        let stream = self
            .js
            .get_stream(self.stream.as_ref())
            .await
            .map_err(|e| provision(&e))?;
        let prefix = dispatch::dead_letter_subject(&self.prefix, "");
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| provision(&e))?;
        let mut counts = std::collections::BTreeMap::new();
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.map_err(|e| provision(&e))?;
            if let Some(durable) = subject.strip_prefix(&prefix) {
                *counts.entry(durable.to_owned()).or_default() += count as u64;
            }
        }
        Ok(counts)
    }

    fn consumer_config(&self, sub: &Subscription) -> jetstream::consumer::pull::Config {
        let policy = &sub.policy;
        jetstream::consumer::pull::Config {
            durable_name: Some(sub.durable.to_string()),
            filter_subject: format!("{}.{}", self.prefix, sub.subject),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: policy.ack_wait,
            // We count deliveries ourselves so the last one can be dead-lettered with a reason.
            max_deliver: -1,
            max_ack_pending: (policy.workers.max(1) * 8) as i64,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        }
    }

    async fn consumer(
        &self,
        sub: &Subscription,
        shutdown: &CancellationToken,
    ) -> Result<jetstream::consumer::PullConsumer> {
        let provision = |e: String| Error::Provision {
            what: format!("consumer {}", sub.durable),
            reason: e,
        };
        let stream = match self.js.get_stream(self.stream.as_ref()).await {
            Ok(stream) => stream,
            Err(e) if shutdown.is_cancelled() => {
                // Shutting down: the stream may have been deleted on purpose (tests, tooling);
                // bringing it back now would leave it behind.
                return Err(provision(e.to_string()));
            }
            Err(_) => {
                // The server lost the stream (a fresh server, a wiped store): recreate it.
                self.ensure_stream().await?;
                self.js
                    .get_stream(self.stream.as_ref())
                    .await
                    .map_err(|e| provision(e.to_string()))?
            }
        };
        stream
            .get_or_create_consumer(&sub.durable, self.consumer_config(sub))
            .await
            .map_err(|e| provision(e.to_string()))
    }

    /// Fetches until shutdown (`Ok`) or a failure (`Err`, the supervisor recreates everything).
    ///
    /// Messages are spread over `workers` shards by key; each shard handles one message at a
    /// time, in arrival order, so one key's messages never run concurrently or out of order.
    /// All shards are driven from this one task: handing a message to another task cost a
    /// cross-thread wake-up per message, the largest overhead over raw async-nats. The broker's
    /// `max_ack_pending` bounds how many messages can wait in the shards' queues. Whatever ends
    /// the loop, the messages already received are finished and acknowledged first.
    async fn pump(
        &self,
        sub: &Subscription,
        status: &ConsumerStatus,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), String> {
        let consumer = self
            .consumer(sub, shutdown)
            .await
            .map_err(|e| e.to_string())?;
        let shards = sub.policy.workers.max(1);
        let batch = (shards * 2).min(256);
        let pull = || async {
            consumer
                .stream()
                .max_messages_per_batch(batch)
                .heartbeat(PULL_HEARTBEAT)
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(|e| e.to_string())
        };
        let mut messages = pull().await?;
        // When the last pull asked anew was sent (see the missed-heartbeat arm below).
        let mut repulled: Option<tokio::time::Instant> = None;
        status.set_running();
        let mut queues: Vec<VecDeque<jetstream::Message>> =
            (0..shards).map(|_| VecDeque::new()).collect();
        let mut busy = vec![false; shards];
        let mut running = FuturesUnordered::new();
        // One waiter for the whole loop: a fresh `cancelled()` per message registered and
        // removed a waiter under the token's lock each time.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(shard) = running.next(), if !running.is_empty() => {
                    busy[shard] = self.start_queued(sub, status, &mut queues[shard], shard, &mut running).await;
                }
                _ = &mut cancelled => break Ok(()),
                next = messages.next() => match next {
                    Some(Ok(msg)) => {
                        let shard = shard_for(&msg, shards);
                        if busy[shard] {
                            queues[shard].push_back(msg);
                        } else {
                            busy[shard] = self.start(sub, status, msg, shard, &mut running).await;
                        }
                    }
                    Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat
                        && repulled.is_none_or(|at| at.elapsed() > PULL_HEARTBEAT * 5 / 2) =>
                    {
                        // Neither a message nor a heartbeat for two heartbeat intervals: the
                        // server holds no pull request of ours while the client still counts
                        // messages as requested, so it would never ask again (seen about once
                        // per million messages in bench-messaging with nats-server 2.9; it
                        // stalled the consumer until the supervisor recreated it). Ask afresh, in
                        // place. A miss on the fresh pull itself (two heartbeat intervals after it,
                        // with nothing in between) goes to the supervisor: then the server is
                        // likely gone or has lost the consumer.
                        tracing::warn!(consumer = %sub.durable, "no message or heartbeat from the server; pulling anew");
                        metrics::counter!("messaging_consumer_repulls_total", "consumer" => sub.durable.to_string()).increment(1);
                        status.count_repull();
                        match pull().await {
                            Ok(fresh) => messages = fresh,
                            Err(e) => break Err(e),
                        }
                        repulled = Some(tokio::time::Instant::now());
                    }
                    Some(Err(e)) => break Err(format!("consumer {} failed: {e}", sub.durable)),
                    None => break Err(format!("consumer {} message stream ended", sub.durable)),
                },
            }
        };
        // Stop fetching; finish (and acknowledge) what was already handed to us.
        drop(messages);
        while let Some(shard) = running.next().await {
            self.start_queued(sub, status, &mut queues[shard], shard, &mut running)
                .await;
        }
        outcome
    }

    /// Starts handling `msg` on its (idle) shard. A message whose handling never has to wait
    /// (a handler that answers from memory, an ack that fits the connection's buffer) is
    /// settled right here, without the task node and wake-up of `running`; one that waits is
    /// handed to `running`. Returns whether the shard is now busy.
    async fn start<'a>(
        &'a self,
        sub: &'a Subscription,
        status: &'a ConsumerStatus,
        msg: jetstream::Message,
        shard: usize,
        running: &mut FuturesUnordered<BoxFuture<'a, usize>>,
    ) -> bool {
        let mut settling = self.settle_one(sub, status, msg, shard).boxed();
        if futures_util::poll!(settling.as_mut()).is_ready() {
            return false;
        }
        running.push(settling);
        true
    }

    /// Starts the queued messages of a shard that just became idle, in order, until one has to
    /// wait. Returns whether the shard is busy again.
    async fn start_queued<'a>(
        &'a self,
        sub: &'a Subscription,
        status: &'a ConsumerStatus,
        queue: &mut VecDeque<jetstream::Message>,
        shard: usize,
        running: &mut FuturesUnordered<BoxFuture<'a, usize>>,
    ) -> bool {
        while let Some(next) = queue.pop_front() {
            if self.start(sub, status, next, shard, running).await {
                return true;
            }
        }
        false
    }

    /// Handles one message to a final verdict and acknowledges it; returns its shard.
    async fn settle_one(
        &self,
        sub: &Subscription,
        status: &ConsumerStatus,
        msg: jetstream::Message,
        shard: usize,
    ) -> usize {
        let attempt = msg.reply.as_deref().and_then(delivery_count).unwrap_or(1);
        let (env, malformed) = envelope_from(&msg.message);
        let env = Arc::new(env);
        let (verdict, attempts) = match malformed {
            Some(reason) => (Verdict::DeadLetter { reason }, attempt),
            None => {
                let ack_wait = sub.policy.ack_wait;
                let wait = |delay: Duration| keep_alive(&msg, delay, ack_wait);
                dispatch::settle(sub, env.clone(), attempt, wait).await
            }
        };
        let acked = match verdict {
            Verdict::Ack => msg.ack().await,
            Verdict::Retry { delay, .. } => msg.ack_with(AckKind::Nak(Some(delay))).await,
            Verdict::DeadLetter { reason } => {
                let dead = dispatch::dead_letter(&self.prefix, sub, &env, &reason, attempts);
                tracing::error!(
                    message.id = %env.id, message.name = %env.name, consumer = %sub.durable,
                    %reason, attempts, dead_letter = %dead.subject, "message dead-lettered"
                );
                match self.publish(&dead).await {
                    Ok(()) => msg.ack_with(AckKind::Term).await,
                    Err(e) => {
                        // Never drop: leave it to be redelivered and dead-lettered again.
                        tracing::error!(error = %e, "dead-letter publish failed; will retry");
                        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await
                    }
                }
            }
        };
        if let Err(e) = acked {
            tracing::warn!(error = %e, consumer = %sub.durable, "acknowledgement failed; the broker will redeliver");
        }
        status.count_settled();
        shard
    }
}

/// The idle heartbeat asked of the server with each pull request; two missed in a row mean the
/// pull is lost (see `pump`), so this bounds how long a lost pull can stall a consumer (~4.5 s
/// measured with 2 s, ~10.5 s with 5 s; the interval did not change how often pulls got lost).
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// How often the broker has delivered a message (1 for the first time), from its ack subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.…` (7 tokens after the prefix), or with a domain and
/// an account hash before the stream (9 or more). Only this one number is parsed; async-nats'
/// `Message::info` parses every token, timestamps included, for each message.
fn delivery_count(reply: &str) -> Option<u32> {
    let mut tokens = reply.strip_prefix("$JS.ACK.")?.split('.');
    let mut head: [&str; 5] = [""; 5];
    let mut n = 0;
    for token in tokens.by_ref().take(5) {
        head[n] = token;
        n += 1;
    }
    let total = n + tokens.count();
    let delivered = match total {
        7 => head[2],
        t if t >= 9 => head[4],
        _ => return None,
    };
    delivered.parse::<u32>().ok().map(|d| d.max(1))
}

/// Header names used on every message, built once: looking a `&str` up in (or inserting it
/// into) a NATS header map allocates a name each time.
static KEY_HEADER: HeaderName = HeaderName::from_static(header::KEY);
static MSG_ID_HEADER: HeaderName = HeaderName::from_static(header::NATS_MSG_ID);
static NAME_HEADER: HeaderName = HeaderName::from_static(header::NAME);
static SENT_AT_HEADER: HeaderName = HeaderName::from_static(header::SENT_AT);
static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(header::TRACEPARENT);
static CORRELATION_HEADER: HeaderName = HeaderName::from_static(header::CORRELATION_ID);
static CAUSATION_HEADER: HeaderName = HeaderName::from_static(header::CAUSATION_ID);

/// The shard of a received message: by its key, else by its id.
fn shard_for(msg: &jetstream::Message, shards: usize) -> usize {
    let key = msg
        .headers
        .as_ref()
        .and_then(|h| {
            h.get(KEY_HEADER.clone())
                .or_else(|| h.get(MSG_ID_HEADER.clone()))
        })
        .map(|v| v.as_str())
        .unwrap_or_default();
    dispatch::shard_of(key, shards)
}

/// Sleeps `delay` while telling the broker the message is still being worked on.
async fn keep_alive(msg: &jetstream::Message, delay: Duration, ack_wait: Duration) {
    let step = (ack_wait / 3).max(Duration::from_millis(100));
    let mut left = delay;
    let _ = msg.ack_with(AckKind::Progress).await;
    while !left.is_zero() {
        let nap = left.min(step);
        tokio::time::sleep(nap).await;
        left -= nap;
        let _ = msg.ack_with(AckKind::Progress).await;
    }
}

/// Rebuilds an envelope from a NATS message; the second value says why it is malformed, if it is.
pub(crate) fn envelope_from(msg: &async_nats::Message) -> (Envelope, Option<String>) {
    let mut headers = std::collections::BTreeMap::new();
    let mut id = None;
    let mut name = None;
    if let Some(map) = &msg.headers {
        for (key, values) in map.iter() {
            let key: &str = key.as_ref();
            let Some(value) = values.first() else {
                continue;
            };
            match key {
                header::NATS_MSG_ID => id = Some(value.as_str()),
                header::NAME => name = Some(value.as_str().to_owned()),
                _ => {
                    headers.insert(key.to_owned(), value.as_str().to_owned());
                }
            }
        }
    }
    let mut problem = None;
    let parsed_id = match id.map(Uuid::parse_str) {
        Some(Ok(id)) => id,
        Some(Err(_)) => {
            problem = Some(format!("header {} is not a UUID", header::NATS_MSG_ID));
            Uuid::now_v7()
        }
        None => {
            problem = Some(format!("missing header {}", header::NATS_MSG_ID));
            Uuid::now_v7()
        }
    };
    if name.is_none() && problem.is_none() {
        problem = Some(format!("missing header {}", header::NAME));
    }
    let env = Envelope {
        id: parsed_id,
        name: name.unwrap_or_default(),
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers,
    };
    (env, problem)
}

/// `messaging_published_total{message, outcome}`: what reached the broker, and what did not.
/// Handles are kept per message name so a publish costs a map look-up, not a registration.
#[derive(Default)]
struct PublishCounters {
    by_name: std::sync::Mutex<std::collections::HashMap<String, [metrics::Counter; 2]>>,
}

impl PublishCounters {
    fn count(&self, env: &Envelope, result: &Result<()>) {
        let mut map = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&env.name) {
            let counter = |outcome: &'static str| metrics::counter!("messaging_published_total", "message" => env.name.clone(), "outcome" => outcome);
            map.insert(env.name.clone(), [counter("acked"), counter("failed")]);
        }
        if let Some([acked, failed]) = map.get(&env.name) {
            if result.is_ok() {
                acked.increment(1)
            } else {
                failed.increment(1)
            }
        }
    }
}

fn headers_of(env: &Envelope) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    map.insert(
        MSG_ID_HEADER.clone(),
        &*env.id.as_hyphenated().encode_lower(&mut id),
    );
    map.insert(NAME_HEADER.clone(), env.name.as_str());
    for (k, v) in &env.headers {
        match k.as_str() {
            header::SENT_AT => map.insert(SENT_AT_HEADER.clone(), v.as_str()),
            header::KEY => map.insert(KEY_HEADER.clone(), v.as_str()),
            header::TRACEPARENT => map.insert(TRACEPARENT_HEADER.clone(), v.as_str()),
            header::CORRELATION_ID => map.insert(CORRELATION_HEADER.clone(), v.as_str()),
            header::CAUSATION_ID => map.insert(CAUSATION_HEADER.clone(), v.as_str()),
            other => map.insert(other, v.as_str()),
        }
    }
    map
}

/// The span of one publish, in the trace the envelope carries (`traceparent`).
fn publish_span(envelope: &Envelope) -> tracing::Span {
    let span = tracing::debug_span!(
        "publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation = "publish",
        messaging.message.id = %envelope.id,
        messaging.message.name = %envelope.name,
        messaging.destination.name = %envelope.subject,
    );
    crate::tracecontext::adopt(&span, || envelope.trace_parent());
    span
}

#[async_trait]
impl Transport for JetStream {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let span = publish_span(envelope);
        let result = async {
            let fail = |reason: String| Error::Publish {
                subject: envelope.subject.clone(),
                reason,
            };
            let ack = self
                .js
                .publish_with_headers(
                    envelope.subject.clone(),
                    headers_of(envelope),
                    envelope.payload.clone(),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            ack.await.map(|_| ()).map_err(|e| fail(e.to_string()))
        }
        .instrument(span)
        .await;
        self.published.count(envelope, &result);
        result
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<()>> {
        // Send a window of publishes, then collect their acks: one round trip per window
        // instead of one per message.
        const WINDOW: usize = 256;
        let mut results = Vec::with_capacity(envelopes.len());
        for window in envelopes.chunks(WINDOW) {
            let mut pending = Vec::with_capacity(window.len());
            for env in window {
                // Open from the send to the PubAck (closed when dropped below).
                let span = publish_span(env);
                let sent = self
                    .js
                    .publish_with_headers(env.subject.clone(), headers_of(env), env.payload.clone())
                    .instrument(span.clone())
                    .await;
                pending.push((sent, span));
            }
            for (env, (sent, _span)) in window.iter().zip(pending) {
                let fail = |reason: String| Error::Publish {
                    subject: env.subject.clone(),
                    reason,
                };
                let result = match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| fail(e.to_string())),
                    Err(e) => Err(fail(e.to_string())),
                };
                self.published.count(env, &result);
                results.push(result);
            }
        }
        results
    }

    async fn request(&self, envelope: Envelope, timeout: Duration) -> Result<Envelope> {
        let subject = envelope.subject.clone();
        let request = async_nats::Request::new()
            .payload(envelope.payload.clone())
            .headers(headers_of(&envelope))
            .timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(msg) => {
                let (env, malformed) = envelope_from(&msg);
                match malformed {
                    None => Ok(env),
                    Some(reason) => Err(Error::Malformed(format!("answer to {subject}: {reason}"))),
                }
            }
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => Error::NoResponders { subject },
                RequestErrorKind::TimedOut => Error::Timeout { subject, timeout },
                _ => Error::Publish {
                    subject,
                    reason: e.to_string(),
                },
            }),
        }
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<ConsumerHandle> {
        // Provision once here so a bad configuration fails the caller, not a background task.
        self.consumer(&subscription, &shutdown).await?;
        let status = ConsumerStatus::new(&subscription.durable);
        let sub = Arc::new(subscription);
        let this = self.clone();
        let st = status.clone();
        let task = tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match this.pump(&sub, &st, &shutdown).await {
                    Ok(()) => break,
                    Err(reason) => {
                        tracing::warn!(consumer = %sub.durable, %reason, ?delay, "consumer stopped; recreating");
                        st.set_failed(reason);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            st.set_stopped();
        });
        Ok(ConsumerHandle { status, task })
    }

    async fn serve(
        &self,
        subject: String,
        group: String,
        responder: ResponderFn,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>> {
        let mut subscriber = self
            .client
            .queue_subscribe(subject.clone(), group.clone())
            .await
            .map_err(|e| Error::Provision {
                what: format!("responder {subject}"),
                reason: e.to_string(),
            })?;
        let client = self.client.clone();
        Ok(tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = subscriber.next() => match next { Some(m) => m, None => break },
                };
                let Some(reply_to) = msg.reply.clone() else {
                    continue;
                };
                let client = client.clone();
                let responder = responder.clone();
                tokio::spawn(async move {
                    let (request, malformed) = envelope_from(&msg);
                    let answer = match malformed {
                        Some(reason) => Err(reason),
                        None => responder(request.clone()).await,
                    };
                    let answer = answer.unwrap_or_else(|error| {
                        crate::bus::response_envelope(&request, &crate::message::Empty {})
                            .with_header(header::QUERY_ERROR, error)
                    });
                    if let Err(e) = client
                        .publish_with_headers(reply_to, headers_of(&answer), answer.payload.clone())
                        .await
                    {
                        tracing::warn!(error = %e, "query answer could not be sent");
                    }
                });
            }
            let _ = subscriber.unsubscribe().await;
        }))
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::delivery_count;

    #[test]
    fn delivery_count_reads_both_ack_subject_formats() {
        // <stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>
        assert_eq!(
            delivery_count("$JS.ACK.mallbots.orders-events.3.120.77.1764201600000000000.0"),
            Some(3)
        );
        // <domain>.<account hash>.<stream>.<consumer>.<delivered>.… and a trailing random token
        assert_eq!(
            delivery_count(
                "$JS.ACK.hub.ACC1.mallbots.orders-events.2.120.77.1764201600000000000.5.xyz"
            ),
            Some(2)
        );
        assert_eq!(
            delivery_count("$JS.ACK._.ACC1.mallbots.orders-events.1.1.1.1764201600000000000.0"),
            Some(1)
        );
        for bad in [
            "_INBOX.abc",
            "$JS.ACK.too.few.1",
            "$JS.ACK.s.c.x.1.1.1.0",
            "$JS.ACK.s.c.1.1.1.1.0.extra",
        ] {
            assert_eq!(delivery_count(bad), None, "{bad}");
        }
    }
}
