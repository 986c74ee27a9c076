//! One `LISTEN` connection for every outbox relay of a process.
//!
//! PostgreSQL (15) signals every backend that listens in a database whenever a transaction
//! there commits a `NOTIFY`, whatever channel it listens on; each of them wakes up, reads the
//! queue and throws away what is not its own. The monolith's nine relays, each with its own
//! listening connection, made every outbox commit wake nine backends where one had use for it
//! (measured with `pgbench`: at 2,530 notifying commits/s, nine idle listeners cost 41 % of a
//! core, one costs 9 %; each wake-up reads the queue in a transaction of its own, which put
//! the monolith's load test at 94–109 commits per checkout instead of 68).
//! Sharing one connection, and so one backend, per process makes it one wake-up per commit,
//! and gives each relay's pool back the connection its listener held.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

/// Notifications kept for a relay that is busy; beyond this they are dropped for a claim.
const MAX_NOTIFIED: usize = 10_000;

/// Where a relay's notifications go: their payloads, in arrival (= commit) order, and a wake-up
/// (a stored permit coalesces a burst of commits into one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sink {
    pub(crate) wake: Arc<Notify>,
    pub(crate) notified: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    /// Queues `payload` (the committed row ids; empty = "claim from the table") and wakes the
    /// relay.
    fn push(&self, payload: &str) {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        if notified.len() >= MAX_NOTIFIED {
            // The relay is far behind: forget the ids, an empty payload makes it claim.
            notified.clear();
            notified.push(String::new());
        } else {
            notified.push(payload.to_owned());
        }
        drop(notified);
        self.wake.notify_one();
    }
}

/// A process's shared `LISTEN` connection: clone it to every relay on the same database
/// ([`crate::OutboxRelay::with_listener`]). It connects when the first relay registers and
/// disconnects when the last one stops. Reconnects after failures; every (re)connection and
/// every new channel wakes its relays once with a "claim", since notifications sent while
/// nobody listened are gone.
#[derive(Debug, Clone)]
pub struct OutboxListener {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where to connect (a bad URL is reported by the task, and the relays poll).
    options: Result<PgConnectOptions, String>,
    state: Mutex<State>,
    /// A relay registered or left: the task re-reads the channels.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Registered relays by channel, each with its registration number.
    channels: HashMap<String, Vec<(u64, Sink)>>,
    next_id: u64,
    /// The generation of the connection task that serves the channels, if one does. A task
    /// clears it when it stops (also when its runtime drops it), but only if it is still its
    /// own: a task that retired has been replaced by the next registration.
    task: Option<u64>,
    next_task: u64,
}

impl State {
    fn sinks(&self, channel: &str) -> impl Iterator<Item = &Sink> {
        self.channels
            .get(channel)
            .into_iter()
            .flatten()
            .map(|(_, s)| s)
    }

    fn all_sinks(&self) -> impl Iterator<Item = &Sink> {
        self.channels.values().flatten().map(|(_, s)| s)
    }

    /// Task `generation` stops if no relay is left: says whether it must. Checked and cleared
    /// under one lock, so a relay registering meanwhile starts a new task.
    fn retire_if_idle(&mut self, generation: u64) -> bool {
        if !self.channels.is_empty() {
            return false;
        }
        if self.task == Some(generation) {
            self.task = None;
        }
        true
    }
}

/// A relay's place on the listener; dropping it stops its notifications.
#[derive(Debug)]
pub(crate) struct Registration {
    inner: Arc<Inner>,
    channel: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(sinks) = state.channels.get_mut(&self.channel) {
            sinks.retain(|(id, _)| *id != self.id);
            if sinks.is_empty() {
                state.channels.remove(&self.channel);
            }
        }
        drop(state);
        self.inner.changed.notify_one();
    }
}

/// Clears the task's generation however the task ends (returning, or dropped with its
/// runtime), so the next registration starts a new one.
struct Running {
    inner: Arc<Inner>,
    generation: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if state.task == Some(self.generation) {
            state.task = None;
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutboxListener {
    /// A listener on the database of `url` (PostgreSQL URL; the schema does not matter, the
    /// channels name it).
    pub fn new(url: &str) -> Self {
        Self::with_options(url.parse().map_err(|e: sqlx::Error| e.to_string()))
    }

    /// A listener connecting with `options`.
    pub fn from_options(options: PgConnectOptions) -> Self {
        Self::with_options(Ok(options))
    }

    fn with_options(options: Result<PgConnectOptions, String>) -> Self {
        OutboxListener {
            inner: Arc::new(Inner {
                options,
                state: Mutex::default(),
                changed: Notify::new(),
            }),
        }
    }

    /// Forwards `channel`'s notifications to `sink` until the registration is dropped. Must be
    /// called inside a Tokio runtime (it may start the connection task).
    pub(crate) fn register(&self, channel: String, sink: Sink) -> Registration {
        let mut state = self.inner.lock();
        let id = state.next_id;
        state.next_id += 1;
        state
            .channels
            .entry(channel.clone())
            .or_default()
            .push((id, sink));
        let start = state.task.is_none().then(|| {
            let generation = state.next_task;
            state.next_task += 1;
            state.task = Some(generation);
            generation
        });
        drop(state);
        if let Some(generation) = start {
            // The guard goes into the future: also a task dropped before its first poll
            // clears its generation.
            tokio::spawn(run(Running {
                inner: self.inner.clone(),
                generation,
            }));
        } else {
            self.inner.changed.notify_one();
        }
        Registration {
            inner: self.inner.clone(),
            channel,
            id,
        }
    }
}

/// The connection task: listens on every registered channel and forwards each notification
/// to the relays of its channel; returns once no relay is registered.
async fn run(running: Running) {
    let (inner, generation) = (running.inner.clone(), running.generation);
    let options = match &inner.options {
        Ok(options) => options.clone(),
        Err(e) => {
            tracing::error!(error = %e, "outbox LISTEN: bad database URL; relays poll instead");
            return;
        }
    };
    // Its own one-connection pool: the listener holds the connection for as long as it runs.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let mut delay = Duration::from_millis(100);
    loop {
        let failure = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                delay = Duration::from_millis(100);
                match forward(&inner, generation, &mut listener).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        // Nothing is heard until the connection is back: the relays claim, then poll.
        for sink in inner.lock().all_sinks() {
            sink.push("");
        }
        tracing::warn!(error = %failure, ?delay, "outbox LISTEN failed; polling until it is back");
        tokio::select! {
            _ = inner.changed.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        if inner.lock().retire_if_idle(generation) {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Keeps `listener` on the registered channels and forwards what it hears. Returns `Ok` once
/// no relay is left, an error when the connection fails.
async fn forward(
    inner: &Inner,
    generation: u64,
    listener: &mut PgListener,
) -> Result<(), sqlx::Error> {
    let mut listening: HashSet<String> = HashSet::new();
    loop {
        let wanted: Vec<String> = {
            let mut state = inner.lock();
            if state.retire_if_idle(generation) {
                return Ok(());
            }
            state.channels.keys().cloned().collect()
        };
        for channel in &wanted {
            if !listening.contains(channel) {
                listener.listen(channel).await?;
                listening.insert(channel.clone());
                // Commits before this LISTEN sent nothing we heard: claim.
                for sink in inner.lock().sinks(channel) {
                    sink.push("");
                }
            }
        }
        let gone: Vec<String> = listening
            .iter()
            .filter(|c| !wanted.contains(c))
            .cloned()
            .collect();
        for channel in gone {
            listener.unlisten(&channel).await?;
            listening.remove(&channel);
        }
        // Both branches are cancel-safe: `try_recv` keeps a partly read message buffered.
        let next = tokio::select! {
            _ = inner.changed.notified() => continue,
            next = listener.try_recv() => next?,
        };
        let state = inner.lock();
        match next {
            Some(notification) => {
                for sink in state.sinks(notification.channel()) {
                    sink.push(notification.payload());
                }
            }
            // The connection was lost and is back (PgListener listens again on its channels):
            // whatever was committed meanwhile is unheard.
            None => {
                for sink in state.all_sinks() {
                    sink.push("");
                }
            }
        }
    }
}
