//! Integration tests of the persistence crate against the real PostgreSQL (a fresh database per
//! test) and NATS JetStream (a unique prefix and stream per test, deleted at the end, or a
//! private `nats-server` the test stops and restarts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::memory::Memory;
use messaging::{
    Bus, CancellationToken, ConsumerHandle, ConsumerPolicy, Envelope, Event, HandlerError,
    ResponderFn, Subscription, Transport, header,
};
use persistence::event_store::RecordedEvent;
use persistence::migrate::{self, Migration};
use persistence::saga::{self, Saga};
use persistence::{
    Aggregate, DomainEvent, Error, EventData, EventStore, OutboxListener, OutboxRelay, RelayConfig,
    SnapshotPolicy, inbox, outbox,
};
use prost::Message as _;
use sqlx::{Connection, PgPool};
use testkit::{NatsServer, TestDatabase, eventually};
use tokio::sync::Notify;
use uuid::Uuid;

const SCHEMA: &str = "svc";

// ---------------------------------------------------------------------------------------------
// Harness

/// A fresh database with the common tables in schema `svc`, and a pool on that schema.
struct Db {
    pool: PgPool,
    database: TestDatabase,
}

impl Db {
    async fn new(label: &str) -> Self {
        let db = TestDatabase::create(label).await;
        let pool = persistence::connect(db.url(), SCHEMA)
            .await
            .expect("connect");
        migrate::migrate_common(&pool, SCHEMA)
            .await
            .expect("migrate");
        Db { pool, database: db }
    }

    fn url(&self) -> &str {
        self.database.url()
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// One test's stream on a JetStream server, deleted when dropped.
struct Broker {
    js: JetStream,
    url: String,
    prefix: String,
}

impl Broker {
    async fn shared(label: &str) -> Self {
        Self::on(&testkit::nats_url(), label, |c| c).await
    }

    async fn on(
        url: &str,
        label: &str,
        tune: impl FnOnce(JetStreamConfig) -> JetStreamConfig,
    ) -> Self {
        let prefix = testkit::unique_prefix(label);
        let js = JetStream::connect(tune(JetStreamConfig::new(url, &prefix)))
            .await
            .expect("connect to NATS");
        Broker {
            js,
            url: url.to_owned(),
            prefix,
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.js.clone())
    }

    /// Every message in the stream, in stream order, read by an ordered consumer.
    async fn stored(&self) -> Vec<Received> {
        let mut stream = self
            .js
            .context()
            .get_stream(self.js.stream_name())
            .await
            .unwrap();
        let total = stream.info().await.unwrap().state.messages as usize;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("stream read stalled")
                .expect("stream ended")
                .expect("stream read failed");
            let headers = msg.headers.clone().unwrap_or_default();
            let id = headers
                .get(header::NATS_MSG_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap();
            let key = headers
                .get(header::KEY)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let ping = Ping::decode(msg.payload.as_ref()).unwrap();
            out.push(Received {
                id: Uuid::parse_str(&id).unwrap(),
                key,
                seq: ping.seq,
            });
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let url = self.url.clone();
        let stream = self.js.stream_name().to_owned();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(stream)
                        .await;
                }
            });
        })
        .join();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    id: Uuid,
    key: String,
    seq: u64,
}

/// The test's integration event.
#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(uint64, tag = "2")]
    seq: u64,
}

impl prost::Name for Ping {
    const NAME: &'static str = "Ping";
    const PACKAGE: &'static str = "test.v1";
}

impl Event for Ping {
    const SUBJECT: &'static str = "test.events.Ping";
    fn key(&self) -> String {
        self.key.clone()
    }
}

fn ping(prefix: &str, key: &str, seq: u64) -> Envelope {
    let message = Ping {
        key: key.to_owned(),
        seq,
    };
    Envelope::new(format!("{prefix}.{}", Ping::SUBJECT), &message).with_header(header::KEY, key)
}

/// Enqueues `envelopes` in one committed transaction.
async fn commit(pool: &PgPool, envelopes: &[Envelope]) {
    let mut tx = pool.begin().await.unwrap();
    outbox::enqueue(&mut tx, envelopes).await.unwrap();
    tx.commit().await.unwrap();
}

fn quick() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(200),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

/// [`quick`] without a poll inside a test's time: only a notification (or a start-up or
/// reconnect claim) publishes a row.
fn notified_only() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_secs(60),
        ..quick()
    }
}

/// Waits (5 s at most) until `memory` holds `n` published messages.
async fn published(memory: &Memory, n: usize, what: &str) {
    eventually(Duration::from_secs(5), what, || async {
        (memory.published().len() == n).then_some(())
    })
    .await
}

/// The backends of the test's database that listen (their last statement a `LISTEN` or
/// `UNLISTEN`), by pid.
async fn listening_backends(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND query ~* '^(UN)?LISTEN'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn spawn_relay(
    relay: Arc<OutboxRelay>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let shutdown = shutdown.clone();
    tokio::spawn(async move { relay.run(shutdown).await })
}

async fn wait_until_sent(pool: &PgPool, timeout: Duration) {
    eventually(timeout, "outbox backlog drained", || async {
        let backlog = outbox::backlog(pool).await.unwrap();
        (backlog.count == 0).then_some(())
    })
    .await;
}

/// Asserts every (key, seq) of `expected` arrived exactly once and each key's seqs ascend.
fn assert_exactly_once_in_order(received: &[Received], expected: usize) {
    let ids: HashSet<Uuid> = received.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), expected, "distinct messages");
    assert_eq!(
        received.len(),
        expected,
        "deliveries (duplicates must be removed)"
    );
    let mut last: HashMap<&str, u64> = HashMap::new();
    for r in received {
        if let Some(prev) = last.insert(&r.key, r.seq) {
            assert!(
                r.seq > prev,
                "key {} out of order: {} after {}",
                r.key,
                r.seq,
                prev
            );
        }
    }
}

/// A transport that forwards to another and adds test behaviour before or after it.
struct Wrapped {
    inner: Arc<dyn Transport>,
    behaviour: Behaviour,
}

enum Behaviour {
    /// Counts publishes per id.
    Count(Arc<Mutex<HashMap<Uuid, usize>>>),
    /// Publishes, reports it, then hangs before the relay can mark anything: the relay "dies"
    /// between the PubAck and the update when its task is aborted.
    HangAfterPublish(Arc<Notify>),
    /// The first attempt of every id in the set fails without publishing.
    FailFirst(Mutex<HashSet<Uuid>>),
    /// The first N attempts of each id in the map fail without publishing.
    FailTimes(Mutex<HashMap<Uuid, usize>>),
}

#[async_trait]
impl Transport for Wrapped {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    async fn publish(&self, envelope: &Envelope) -> messaging::Result<()> {
        self.publish_batch(std::slice::from_ref(envelope))
            .await
            .remove(0)
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<messaging::Result<()>> {
        match &self.behaviour {
            Behaviour::Count(counts) => {
                {
                    let mut counts = counts.lock().unwrap();
                    for env in envelopes {
                        *counts.entry(env.id).or_default() += 1;
                    }
                }
                self.inner.publish_batch(envelopes).await
            }
            Behaviour::HangAfterPublish(published) => {
                let results = self.inner.publish_batch(envelopes).await;
                assert!(results.iter().all(Result::is_ok));
                published.notify_one();
                std::future::pending().await
            }
            Behaviour::FailFirst(doomed) => {
                let mut out = Vec::with_capacity(envelopes.len());
                for env in envelopes {
                    if doomed.lock().unwrap().remove(&env.id) {
                        out.push(Err(messaging::Error::Publish {
                            subject: env.subject.clone(),
                            reason: "injected".into(),
                        }));
                    } else {
                        out.push(self.inner.publish(env).await);
                    }
                }
                out
            }
            Behaviour::FailTimes(left) => {
                let mut out = Vec::with_capacity(envelopes.len());
                for env in envelopes {
                    let fail = match left.lock().unwrap().get_mut(&env.id) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    };
                    if fail {
                        out.push(Err(messaging::Error::Publish {
                            subject: env.subject.clone(),
                            reason: "injected".into(),
                        }));
                    } else {
                        out.push(self.inner.publish(env).await);
                    }
                }
                out
            }
        }
    }

    async fn request(&self, envelope: Envelope, timeout: Duration) -> messaging::Result<Envelope> {
        self.inner.request(envelope, timeout).await
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> messaging::Result<ConsumerHandle> {
        self.inner.subscribe(subscription, shutdown).await
    }

    async fn serve(
        &self,
        subject: String,
        group: String,
        responder: ResponderFn,
        shutdown: CancellationToken,
    ) -> messaging::Result<tokio::task::JoinHandle<()>> {
        self.inner.serve(subject, group, responder, shutdown).await
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations and schemas

#[tokio::test]
async fn migrations_apply_once_under_concurrent_starters_and_schemas_stay_apart() {
    let db = TestDatabase::create("migrate").await;
    let alpha = persistence::connect(db.url(), "alpha").await.unwrap();
    let beta = persistence::connect(db.url(), "beta").await.unwrap();

    // Four instances of two modules start at once against one (monolith) database.
    let starters = [
        (&alpha, "alpha"),
        (&beta, "beta"),
        (&alpha, "alpha"),
        (&beta, "beta"),
    ]
    .map(|(pool, schema)| {
        let pool = pool.clone();
        tokio::spawn(async move { migrate::migrate_common(&pool, schema).await })
    });
    for starter in starters {
        starter.await.unwrap().expect("concurrent migration");
    }
    for pool in [&alpha, &beta] {
        let applied: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT component, version, name FROM schema_migrations ORDER BY version",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let expected: Vec<(String, i64, String)> = migrate::COMMON
            .iter()
            .map(|m| ("persistence".to_owned(), m.version, m.name.to_owned()))
            .collect();
        assert_eq!(applied, expected);
    }

    // A second component shares the schema with its own history.
    let service = [Migration {
        version: 1,
        name: "orders",
        sql: "CREATE TABLE orders (id text PRIMARY KEY); CREATE INDEX orders_id ON orders (id);",
    }];
    migrate::migrate(&alpha, "alpha", "ordering", &service)
        .await
        .unwrap();
    migrate::migrate(&alpha, "alpha", "ordering", &service)
        .await
        .unwrap();
    let components: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT component) FROM schema_migrations")
            .fetch_one(&alpha)
            .await
            .unwrap();
    assert_eq!(components, 2);
    sqlx::query("INSERT INTO orders VALUES ('o1')")
        .execute(&alpha)
        .await
        .unwrap();
    assert!(
        sqlx::query("SELECT * FROM orders")
            .execute(&beta)
            .await
            .is_err(),
        "beta sees only beta"
    );

    // An applied migration renamed in code, and a failing one that must leave nothing behind.
    let renamed = [Migration {
        name: "orders table",
        ..service[0]
    }];
    let err = migrate::migrate(&alpha, "alpha", "ordering", &renamed)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration { version: 1, .. }), "{err}");
    let failing = [
        service[0],
        Migration {
            version: 2,
            name: "extra",
            sql: "CREATE TABLE extra (x int)",
        },
        Migration {
            version: 3,
            name: "broken",
            sql: "CREATE TABLE broken (",
        },
    ];
    let err = migrate::migrate(&alpha, "alpha", "ordering", &failing)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration { version: 3, .. }), "{err}");
    assert!(
        sqlx::query("SELECT * FROM extra")
            .execute(&alpha)
            .await
            .is_err(),
        "rolled back"
    );
    assert!(matches!(
        persistence::connect(db.url(), "Robert'); DROP").await,
        Err(Error::InvalidName(_))
    ));

    // Outboxes of two modules in one database are separate, and so are their notifications.
    commit(&alpha, &[ping("x", "k", 1)]).await;
    assert_eq!(outbox::backlog(&alpha).await.unwrap().count, 1);
    assert_eq!(outbox::backlog(&beta).await.unwrap().count, 0);
    let memory = Memory::new("x");
    let beta_relay = OutboxRelay::new(beta.clone(), Arc::new(memory.clone()), quick());
    assert_eq!(beta_relay.flush().await.unwrap(), 0);
    assert!(memory.published().is_empty());
    alpha.close().await;
    beta.close().await;
}

// ---------------------------------------------------------------------------------------------
// Event store

/// Current events of the test aggregate.
#[derive(Clone, PartialEq, prost::Message)]
struct Added {
    #[prost(int64, tag = "1")]
    amount: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Renamed {
    #[prost(string, tag = "1")]
    name: String,
}

/// What older code stored as `test.Incremented` before it was renamed `test.Added`.
#[derive(Clone, PartialEq, prost::Message)]
struct Incremented {
    #[prost(uint32, tag = "7")]
    by: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CounterSnapshot {
    #[prost(int64, tag = "1")]
    total: i64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint64, tag = "3")]
    events: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Added(Added),
    Renamed(Renamed),
}

impl DomainEvent for CounterEvent {
    fn encode(&self) -> EventData {
        match self {
            CounterEvent::Added(e) => EventData::new("test.Added", 1, e.encode_to_vec()),
            CounterEvent::Renamed(e) => EventData::new("test.Renamed", 1, e.encode_to_vec()),
        }
    }

    fn decode(data: &EventData) -> Result<Self, String> {
        let bytes = data.payload.as_ref();
        match (data.name.as_str(), data.schema_version) {
            ("test.Added", 1) => Added::decode(bytes).map(CounterEvent::Added),
            ("test.Renamed", 1) => Renamed::decode(bytes).map(CounterEvent::Renamed),
            _ => return Err("unknown event".to_owned()),
        }
        .map_err(|e| e.to_string())
    }

    fn upcast(data: EventData) -> Result<EventData, String> {
        match (data.name.as_str(), data.schema_version) {
            ("test.Incremented", 1) => {
                let old = Incremented::decode(data.payload.as_ref()).map_err(|e| e.to_string())?;
                let new = Added {
                    amount: i64::from(old.by),
                };
                Ok(EventData::new("test.Added", 1, new.encode_to_vec()))
            }
            _ => Ok(data),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Counter {
    total: i64,
    name: String,
    events: u64,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "test.Counter";
    type Event = CounterEvent;

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(e) => self.total += e.amount,
            CounterEvent::Renamed(e) => self.name.clone_from(&e.name),
        }
        self.events += 1;
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let s = CounterSnapshot {
            total: self.total,
            name: self.name.clone(),
            events: self.events,
        };
        Some(s.encode_to_vec())
    }

    fn restore(payload: &[u8]) -> Result<Self, String> {
        let s = CounterSnapshot::decode(payload).map_err(|e| e.to_string())?;
        Ok(Counter {
            total: s.total,
            name: s.name,
            events: s.events,
        })
    }
}

/// The same aggregate after its snapshot encoding changed.
#[derive(Debug, Clone, Default, PartialEq)]
struct CounterV2(Counter);

impl Aggregate for CounterV2 {
    const TYPE: &'static str = "test.Counter";
    const SNAPSHOT_VERSION: i32 = 2;
    type Event = CounterEvent;

    fn apply(&mut self, event: &CounterEvent) {
        self.0.apply(event);
    }

    fn restore(_: &[u8]) -> Result<Self, String> {
        panic!("a snapshot in the old format must not be restored");
    }
}

fn add(amount: i64) -> CounterEvent {
    CounterEvent::Added(Added { amount })
}

fn rename(name: &str) -> CounterEvent {
    CounterEvent::Renamed(Renamed {
        name: name.to_owned(),
    })
}

#[tokio::test]
async fn appends_with_a_stale_version_fail_with_a_conflict() {
    let db = Db::new("es_conflict").await;
    let store = EventStore::new();
    let mut conn = db.pool.acquire().await.unwrap();
    let two = [add(1).encode(), add(2).encode()];

    assert_eq!(
        store
            .append(&mut conn, "test.Counter", "c1", 0, &two)
            .await
            .unwrap(),
        2
    );
    for expected in [0, 1, 3] {
        match store
            .append(&mut conn, "test.Counter", "c1", expected, &two)
            .await
        {
            Err(Error::Conflict {
                stream,
                expected: e,
                actual: 2,
            }) => {
                assert_eq!(stream, "test.Counter/c1");
                assert_eq!(e, expected);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    // Another type may use the same id (an order has its basket's id).
    assert_eq!(
        store
            .append(&mut conn, "test.Other", "c1", 0, &two)
            .await
            .unwrap(),
        2
    );

    // A conflict leaves the caller's transaction usable (no aborted transaction).
    let mut tx = conn.begin().await.unwrap();
    assert!(matches!(
        store.append(&mut tx, "test.Counter", "c1", 1, &two).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        store
            .append(&mut tx, "test.Counter", "c1", 2, &two)
            .await
            .unwrap(),
        4
    );
    tx.commit().await.unwrap();

    // Two writers loaded version 4; the second blocks on the first and then loses.
    let mut first = db.pool.begin().await.unwrap();
    let mut loaded = store.load::<Counter>(&mut first, "c1").await.unwrap();
    assert_eq!((loaded.version, loaded.state.total), (4, 6));
    let mut stale = loaded.clone();
    store
        .save(&mut first, &mut loaded, &[add(10)])
        .await
        .unwrap();
    let pool = db.pool.clone();
    let store2 = store.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let result = store2.save(&mut tx, &mut stale, &[add(100)]).await;
        (result, stale)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.commit().await.unwrap();
    let (result, stale) = second.await.unwrap();
    match result {
        Err(
            e @ Error::Conflict {
                expected: 4,
                actual: 5,
                ..
            },
        ) => assert!(e.is_retryable()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        (stale.version, stale.state.total),
        (4, 6),
        "a failed save leaves the state alone"
    );
    let reloaded = store.load::<Counter>(&mut conn, "c1").await.unwrap();
    assert_eq!((reloaded.version, reloaded.state.total), (5, 16));
}

#[tokio::test]
async fn snapshot_plus_later_events_equals_full_replay() {
    let db = Db::new("es_snapshot").await;
    let store = EventStore::new().with_snapshots(Counter::TYPE, SnapshotPolicy::Every(3));
    let mut conn = db.pool.acquire().await.unwrap();

    let mut counter = store.load::<Counter>(&mut conn, "c1").await.unwrap();
    assert!(!counter.exists());
    let mut amount = 0;
    for size in [1, 2, 4, 1, 1, 3, 5, 2, 1] {
        let events: Vec<CounterEvent> = (0..size)
            .map(|i| {
                amount += 1;
                if i == 1 {
                    rename(&format!("n{amount}"))
                } else {
                    add(amount)
                }
            })
            .collect();
        let mut tx = conn.begin().await.unwrap();
        store.save(&mut tx, &mut counter, &events).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(counter.version, 20);

    let snapshot: i64 = sqlx::query_scalar("SELECT version FROM snapshots WHERE stream_id = 'c1'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        snapshot, 19,
        "taken by the last save crossing a multiple of 3 (17 -> 19)"
    );
    let loaded = store.load::<Counter>(&mut conn, "c1").await.unwrap();
    let replayed = store.replay::<Counter>(&mut conn, "c1").await.unwrap();
    assert_eq!(loaded, replayed);
    assert_eq!(loaded, counter);
    assert_eq!(loaded.state.events, 20);

    // The snapshot is really used: damage an event it covers; only full replay trips on it.
    sqlx::query("UPDATE events SET payload = '\\xff' WHERE stream_id = 'c1' AND version = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        store.load::<Counter>(&mut conn, "c1").await.unwrap(),
        counter
    );
    assert!(matches!(
        store.replay::<Counter>(&mut conn, "c1").await,
        Err(Error::Corrupt { version: 2, .. })
    ));

    // A snapshot in an older format is ignored, not restored: full replay (which now fails at
    // the damaged event, proving it was attempted).
    let err = store.load::<CounterV2>(&mut conn, "c1").await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { version: 2, .. }), "{err}");
}

#[tokio::test]
async fn old_events_are_upcast_and_corrupt_or_unknown_ones_fail_with_stream_and_version() {
    let db = Db::new("es_corrupt").await;
    let store = EventStore::new();
    let mut conn = db.pool.acquire().await.unwrap();

    // History written by older code under the old name and field layout.
    let old = EventData::new("test.Incremented", 1, Incremented { by: 5 }.encode_to_vec());
    store
        .append(&mut conn, Counter::TYPE, "old", 0, &[old, add(2).encode()])
        .await
        .unwrap();
    let loaded = store.load::<Counter>(&mut conn, "old").await.unwrap();
    assert_eq!((loaded.version, loaded.state.total), (2, 7));

    let garbage = EventData::new("test.Added", 1, vec![0xff, 0xff, 0xff]);
    store
        .append(
            &mut conn,
            Counter::TYPE,
            "bad",
            0,
            &[add(1).encode(), garbage],
        )
        .await
        .unwrap();
    let err = store.load::<Counter>(&mut conn, "bad").await.unwrap_err();
    match &err {
        Error::Corrupt {
            stream,
            version: 2,
            reason,
        } => {
            assert_eq!(stream, "test.Counter/bad");
            assert!(reason.contains("test.Added"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("test.Counter/bad") && text.contains("version 2"),
        "{text}"
    );
    assert!(!err.is_retryable());

    let unknown = EventData::new("test.Exploded", 1, Vec::new());
    store
        .append(&mut conn, Counter::TYPE, "unknown", 0, &[unknown])
        .await
        .unwrap();
    let newer = EventData::new("test.Added", 9, Added { amount: 1 }.encode_to_vec());
    store
        .append(&mut conn, Counter::TYPE, "unknown", 1, &[newer])
        .await
        .unwrap();
    assert!(matches!(
        store.load::<Counter>(&mut conn, "unknown").await,
        Err(Error::Corrupt { version: 1, .. })
    ));

    // A hole in the versions is corruption too, never skipped.
    sqlx::query("DELETE FROM events WHERE stream_id = 'old' AND version = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    let read: Result<Vec<RecordedEvent>, _> = store.read(&mut conn, Counter::TYPE, "old", 0).await;
    assert!(
        matches!(read, Err(Error::Corrupt { version: 1, .. })),
        "{read:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Outbox and relay

#[tokio::test]
async fn rows_of_a_rolled_back_transaction_are_never_published() {
    let db = Db::new("ob_rollback").await;
    let broker = Broker::shared("ob_rollback").await;
    let shutdown = CancellationToken::new();
    let relay = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        broker.transport(),
        quick(),
    ));
    let task = spawn_relay(relay.clone(), &shutdown);

    let doomed = ping(&broker.prefix, "k", 1);
    let mut tx = db.pool.begin().await.unwrap();
    outbox::enqueue(&mut tx, std::slice::from_ref(&doomed))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let kept = ping(&broker.prefix, "k", 2);
    commit(&db.pool, std::slice::from_ref(&kept)).await;

    wait_until_sent(&db.pool, Duration::from_secs(10)).await;
    relay.flush().await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    let stored = broker.stored().await;
    assert_eq!(
        stored.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![kept.id]
    );
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn two_relays_at_once_publish_every_row_exactly_once_in_key_order() {
    let db = Db::new("ob_two_relays").await;
    let broker = Broker::shared("ob_two_relays").await;
    let shutdown = CancellationToken::new();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let config = RelayConfig {
        batch_size: 40,
        max_in_flight: 16,
        ..quick()
    };
    let relays: Vec<Arc<OutboxRelay>> = (0..2)
        .map(|_| {
            let transport = Wrapped {
                inner: broker.transport(),
                behaviour: Behaviour::Count(counts.clone()),
            };
            Arc::new(OutboxRelay::new(
                db.pool.clone(),
                Arc::new(transport),
                config.clone(),
            ))
        })
        .collect();
    let tasks: Vec<_> = relays
        .iter()
        .map(|r| spawn_relay(r.clone(), &shutdown))
        .collect();

    // Four producers, each owning five keys (writers of one aggregate are serialised), some
    // transactions carrying several messages.
    const PER_PRODUCER: u64 = 300;
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let pool = db.pool.clone();
            let prefix = broker.prefix.clone();
            tokio::spawn(async move {
                let mut seq = 0;
                while seq < PER_PRODUCER {
                    let size = (seq % 3 + 1).min(PER_PRODUCER - seq);
                    let batch: Vec<Envelope> = (seq..seq + size)
                        .map(|s| ping(&prefix, &format!("p{p}-k{}", s % 5), s))
                        .collect();
                    commit(&pool, &batch).await;
                    seq += size;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    let total = 4 * PER_PRODUCER as usize;
    wait_until_sent(&db.pool, Duration::from_secs(30)).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }

    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), total);
    assert!(
        counts.values().all(|&n| n == 1),
        "a row was published more than once"
    );
    let split: Vec<u64> = relays
        .iter()
        .map(|r| r.stats().snapshot().published)
        .collect();
    assert_eq!(split.iter().sum::<u64>(), total as u64);
    eprintln!("rows published per relay: {split:?}");
    assert_exactly_once_in_order(&broker.stored().await, total);
}

#[tokio::test]
async fn a_relay_killed_after_the_puback_causes_a_duplicate_the_broker_removes() {
    let db = Db::new("ob_killed").await;
    let broker = Broker::shared("ob_killed").await;
    let envelopes: Vec<Envelope> = (0..20)
        .map(|i| ping(&broker.prefix, &format!("k{}", i % 3), i))
        .collect();
    commit(&db.pool, &envelopes).await;

    let published = Arc::new(Notify::new());
    let hanging = Wrapped {
        inner: broker.transport(),
        behaviour: Behaviour::HangAfterPublish(published.clone()),
    };
    let doomed = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        Arc::new(hanging),
        quick(),
    ));
    let shutdown = CancellationToken::new();
    let task = spawn_relay(doomed, &shutdown);
    tokio::time::timeout(Duration::from_secs(10), published.notified())
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    // Stored at the broker, not marked sent: the state a crash at that point leaves.
    assert_eq!(outbox::backlog(&db.pool).await.unwrap().count, 20);
    assert!(!broker.stored().await.is_empty());

    let relay = OutboxRelay::new(db.pool.clone(), broker.transport(), quick());
    eventually(Duration::from_secs(10), "rows republished", || async {
        relay.flush().await.ok();
        (outbox::backlog(&db.pool).await.unwrap().count == 0).then_some(())
    })
    .await;
    assert_eq!(
        relay.stats().snapshot().published,
        20,
        "every row was published again"
    );
    assert_exactly_once_in_order(&broker.stored().await, 20);
}

#[tokio::test]
async fn a_duplicate_past_the_broker_window_is_skipped_by_the_inbox() {
    let db = Db::new("ob_inbox").await;
    // A tiny de-duplication window: the republished copies reach the consumer.
    let broker = Broker::on(&testkit::nats_url(), "ob_inbox", |c| JetStreamConfig {
        duplicate_window: Duration::from_millis(100),
        ..c
    })
    .await;
    sqlx::query("CREATE TABLE svc.effects (key text PRIMARY KEY, n bigint NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    // Ten keys: all ten go out in the first window, before the relay dies.
    let envelopes: Vec<Envelope> = (0..10)
        .map(|i| ping(&broker.prefix, &format!("k{i}"), i))
        .collect();
    commit(&db.pool, &envelopes).await;

    let published = Arc::new(Notify::new());
    let hanging = Wrapped {
        inner: broker.transport(),
        behaviour: Behaviour::HangAfterPublish(published.clone()),
    };
    let doomed = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        Arc::new(hanging),
        quick(),
    ));
    let shutdown = CancellationToken::new();
    let task = spawn_relay(doomed, &shutdown);
    tokio::time::timeout(Duration::from_secs(10), published.notified())
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    OutboxRelay::new(db.pool.clone(), broker.transport(), quick())
        .flush()
        .await
        .unwrap();
    assert_eq!(
        broker.stored().await.len(),
        20,
        "each message is in the stream twice"
    );

    // The consumer: inbox record and effect in one transaction.
    let deliveries = Arc::new(AtomicUsize::new(0));
    let pool = db.pool.clone();
    let seen = deliveries.clone();
    let sub = Subscription::new("effects", Ping::SUBJECT)
        .policy(ConsumerPolicy {
            workers: 2,
            ..ConsumerPolicy::default()
        })
        .on(move |ping: Ping, ctx| {
            let pool = pool.clone();
            let seen = seen.clone();
            async move {
                let mut tx = pool.begin().await.map_err(HandlerError::retryable)?;
                if inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
                    .await
                    .map_err(HandlerError::retryable)?
                {
                    sqlx::query(
                        "INSERT INTO effects VALUES ($1, 1)
                         ON CONFLICT (key) DO UPDATE SET n = effects.n + 1",
                    )
                    .bind(format!("{}-{}", ping.key, ping.seq))
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::retryable)?;
                }
                tx.commit().await.map_err(HandlerError::retryable)?;
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
    let bus = Bus::new(broker.transport());
    let consumer = bus.subscribe(sub, shutdown.clone()).await.unwrap();
    eventually(Duration::from_secs(10), "20 deliveries", || async {
        (deliveries.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;
    shutdown.cancel();
    consumer.task.await.unwrap();
    let effects: Vec<i64> = sqlx::query_scalar("SELECT n FROM effects")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(effects.len(), 10);
    assert!(
        effects.iter().all(|&n| n == 1),
        "an effect happened twice: {effects:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM inbox").await, 10);
}

#[tokio::test]
async fn messages_written_while_nats_is_down_for_ten_seconds_all_arrive_in_key_order() {
    let db = Db::new("ob_outage").await;
    let mut server = NatsServer::start().await;
    let broker = Broker::on(&server.url(), "ob_outage", |c| JetStreamConfig {
        ack_timeout: Duration::from_secs(2),
        ..c
    })
    .await;
    let config = RelayConfig {
        retry_max: Duration::from_secs(1),
        ..quick()
    };
    let relay = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        broker.transport(),
        config,
    ));
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay.clone(), &shutdown);

    // A steady writer: one message every 20 ms over five keys, all through the outage.
    let writing = CancellationToken::new();
    let writer = {
        let pool = db.pool.clone();
        let prefix = broker.prefix.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !writing.is_cancelled() {
                commit(&pool, &[ping(&prefix, &format!("k{}", n % 5), n)]).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n as usize
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = relay.stats().snapshot().published;
    assert!(before > 0, "publishing before the outage");
    server.kill();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = outbox::backlog(&db.pool).await.unwrap();
    assert!(
        during.count > 100,
        "writes went on into the outbox: {during:?}"
    );
    server.restart().await;
    eprintln!(
        "NATS down for {:?}; backlog then {during:?}",
        down.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    writing.cancel();
    let written = writer.await.unwrap();

    let recovered = Instant::now();
    wait_until_sent(&db.pool, Duration::from_secs(30)).await;
    eprintln!(
        "{written} written; backlog drained {:?} after the last write",
        recovered.elapsed()
    );
    shutdown.cancel();
    task.await.unwrap();
    let counters = relay.stats().snapshot();
    assert!(
        counters.failed > 0,
        "publishes failed during the outage: {counters:?}"
    );
    assert_exactly_once_in_order(&broker.stored().await, written);
}

#[tokio::test]
async fn failed_publishes_are_retried_with_back_off_and_keep_key_order() {
    let db = Db::new("ob_retry").await;
    let memory = Memory::new("m");
    let envelopes: Vec<Envelope> = (0..60)
        .map(|i| ping("m", &format!("k{}", i % 4), i))
        .collect();
    let doomed: HashSet<Uuid> = envelopes.iter().step_by(7).map(|e| e.id).collect();
    let flaky = Wrapped {
        inner: Arc::new(memory.clone()),
        behaviour: Behaviour::FailFirst(Mutex::new(doomed.clone())),
    };
    let relay = Arc::new(OutboxRelay::new(db.pool.clone(), Arc::new(flaky), quick()));
    commit(&db.pool, &envelopes[..30]).await;
    commit(&db.pool, &envelopes[30..]).await;

    let first = relay.flush().await;
    assert!(matches!(first, Err(Error::Publish(_))), "{first:?}");
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay.clone(), &shutdown);
    wait_until_sent(&db.pool, Duration::from_secs(20)).await;
    shutdown.cancel();
    task.await.unwrap();

    let published: Vec<Received> = memory
        .published()
        .iter()
        .map(|e| {
            let ping: Ping = e.decode().unwrap();
            Received {
                id: e.id,
                key: ping.key,
                seq: ping.seq,
            }
        })
        .collect();
    assert_exactly_once_in_order(&published, 60);
    let retried: i64 = db
        .count("SELECT count(*) FROM outbox WHERE attempts > 0")
        .await;
    assert_eq!(retried, doomed.len() as i64);
    let errors: i64 = db
        .count("SELECT count(*) FROM outbox WHERE last_error LIKE '%injected%'")
        .await;
    assert_eq!(
        errors,
        doomed.len() as i64,
        "the failure is kept on the row"
    );
    assert!(relay.stats().snapshot().failed >= doomed.len() as u64);
}

#[tokio::test]
async fn a_commit_wakes_the_relay_without_waiting_for_the_poll() {
    let db = Db::new("ob_notify").await;
    let memory = Memory::new("m");
    let config = notified_only();
    let relay = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        Arc::new(memory.clone()),
        config,
    ));
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay, &shutdown);

    for n in 1..=5usize {
        // The first may be found by the start-up pass; the others only by a notification.
        let started = Instant::now();
        commit(&db.pool, &[ping("m", "k", n as u64)]).await;
        published(&memory, n, "published on commit").await;
        let latency = started.elapsed();
        assert!(
            latency < Duration::from_secs(2),
            "message {n} took {latency:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

/// Relays sharing an [`OutboxListener`] (the monolith's modules) hear their commits over one
/// listening backend: each relay is still woken by its own schema's commits only, one relay
/// stopping leaves the other's notifications flowing, and the connection closes with the last.
#[tokio::test]
async fn relays_of_several_schemas_share_one_listening_connection() {
    let db = Db::new("ob_listen_shared").await;
    let other = persistence::connect(db.url(), "svc2").await.unwrap();
    migrate::migrate_common(&other, "svc2").await.unwrap();
    let listener = OutboxListener::new(db.url());
    let config = notified_only();
    let relay_on = |pool: &PgPool, memory: &Memory| {
        let relay = OutboxRelay::new(pool.clone(), Arc::new(memory.clone()), config.clone())
            .with_listener(listener.clone());
        let shutdown = CancellationToken::new();
        (spawn_relay(Arc::new(relay), &shutdown), shutdown)
    };
    let (first, second) = (Memory::new("m"), Memory::new("m"));
    let (first_task, first_stop) = relay_on(&db.pool, &first);
    let (second_task, second_stop) = relay_on(&other, &second);
    let listening = || async { listening_backends(&db.pool).await.len() };
    eventually(
        Duration::from_secs(5),
        "the listening connection up",
        || async { (listening().await == 1).then_some(()) },
    )
    .await;

    // Wait for each relay's start-up claim, so what follows is published by notifications.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=3u64 {
        commit(&db.pool, &[ping("m", "a", n)]).await;
        commit(&other, &[ping("m", "b", n)]).await;
        published(&first, n as usize, "svc row published on its commit").await;
        published(&second, n as usize, "svc2 row published on its commit").await;
    }
    assert_eq!(
        listening().await,
        1,
        "one listening backend for both relays"
    );
    assert!(
        first
            .published()
            .iter()
            .all(|e| e.header(header::KEY) == Some("a"))
    );
    assert!(
        second
            .published()
            .iter()
            .all(|e| e.header(header::KEY) == Some("b"))
    );

    first_stop.cancel();
    first_task.await.unwrap();
    commit(&other, &[ping("m", "b", 4)]).await;
    published(
        &second,
        4,
        "svc2 row published after the other relay stopped",
    )
    .await;

    second_stop.cancel();
    second_task.await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the listening connection closed",
        || async { (listening().await == 0).then_some(()) },
    )
    .await;

    // A relay registering after the last one left gets a connection of its own again.
    let (third, third_stop) = relay_on(&db.pool, &first);
    eventually(Duration::from_secs(5), "listening again", || async {
        (listening().await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    commit(&db.pool, &[ping("m", "a", 4)]).await;
    published(&first, 4, "svc row published by the new relay").await;
    third_stop.cancel();
    third.await.unwrap();
}

/// The shared `LISTEN` connection cut by the server (`pg_terminate_backend`): it reconnects,
/// its relays claim what was committed meanwhile, and later commits wake them again.
#[tokio::test]
async fn a_terminated_listening_connection_comes_back_and_nothing_waits_for_the_poll() {
    let db = Db::new("ob_listen_cut").await;
    let listener = OutboxListener::new(db.url());
    let config = notified_only();
    let memory = Memory::new("m");
    let relay =
        OutboxRelay::new(db.pool.clone(), Arc::new(memory.clone()), config).with_listener(listener);
    let shutdown = CancellationToken::new();
    let task = spawn_relay(Arc::new(relay), &shutdown);
    let listening = || async { listening_backends(&db.pool).await.first().copied() };
    let first = eventually(Duration::from_secs(5), "listening", listening).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    commit(&db.pool, &[ping("m", "k", 1)]).await;
    published(&memory, 1, "published before the cut").await;

    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&db.pool)
        .await
        .unwrap();
    commit(&db.pool, &[ping("m", "k", 2)]).await;
    published(&memory, 2, "the row committed around the cut").await;
    let second = eventually(Duration::from_secs(5), "listening again", || async {
        listening().await.filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(second, first);
    for n in 3..=5u64 {
        commit(&db.pool, &[ping("m", "k", n)]).await;
        published(
            &memory,
            n as usize,
            "published on its commit after the reconnect",
        )
        .await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

/// The fast path: rows this process enqueued are published from memory on their commit's
/// notification (no claim transaction finds them), in commit order, and marked sent; a row
/// another process wrote (inserted here with plain SQL, so nothing is in memory) is still
/// published, by a claim shortly after its notification.
#[tokio::test]
async fn committed_rows_go_out_from_memory_and_foreign_rows_by_a_claim() {
    let db = Db::new("ob_fast").await;
    let memory = Memory::new("f");
    let config = notified_only();
    let relay = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        Arc::new(memory.clone()),
        config,
    ));
    let stats = relay.stats();
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay, &shutdown);
    // The start-up claim finds the outbox empty, which turns the fast path on.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for n in 1..=40u64 {
        commit(&db.pool, &[ping("f", &format!("k{}", n % 3), n)]).await;
    }
    published(&memory, 40, "40 published").await;
    wait_until_sent(&db.pool, Duration::from_secs(5)).await;
    let counters = stats.snapshot();
    assert_eq!(counters.published, 40);
    assert_eq!(
        counters.batches, 0,
        "no claim found a row: all went the fast way"
    );
    let seqs: Vec<u64> = memory
        .published()
        .iter()
        .map(|env| env.decode::<Ping>().unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "commit order");

    // A row enqueued by someone else: its notification names an id this process never saw.
    let foreign = ping("f", "k9", 99);
    sqlx::query(
        "INSERT INTO outbox (id, name, subject, payload, headers, key)
         VALUES ($1, $2, $3, $4, '{}'::jsonb, 'k9')",
    )
    .bind(foreign.id)
    .bind(&foreign.name)
    .bind(&foreign.subject)
    .bind(foreign.payload.as_ref())
    .execute(&db.pool)
    .await
    .unwrap();
    published(&memory, 41, "the foreign row published").await;
    assert_eq!(memory.published()[40].id, foreign.id);
    // The claim counts its batch after publishing, marking and committing it.
    eventually(Duration::from_secs(5), "the claim counted", || async {
        (stats.snapshot().batches >= 1).then_some(())
    })
    .await;
    wait_until_sent(&db.pool, Duration::from_secs(5)).await;
    assert_eq!(stats.snapshot().batches, 1, "one claim published it");
    shutdown.cancel();
    task.await.unwrap();
}

/// The fast path marks rows sent in batches: the rows of commits close together are marked by
/// one statement once `mark_delay` has passed, and a claim in between (by any relay of the
/// schema in this process) marks them first rather than publishing them again.
#[tokio::test]
async fn fast_path_marks_wait_to_be_batched_and_precede_any_claim() {
    let db = Db::new("ob_marks").await;
    let memory = Memory::new("f");
    let config = RelayConfig {
        mark_delay: Duration::from_millis(1500),
        ..notified_only()
    };
    let relay = Arc::new(OutboxRelay::new(
        db.pool.clone(),
        Arc::new(memory.clone()),
        config.clone(),
    ));
    let stats = relay.stats();
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay, &shutdown);
    // The start-up claim finds the outbox empty, which turns the fast path on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unsent = || async { outbox::backlog(&db.pool).await.unwrap().count };

    // Five commits: published at once, marked together later.
    for n in 1..=5u64 {
        commit(&db.pool, &[ping("f", &format!("k{n}"), n)]).await;
    }
    published(&memory, 5, "5 published").await;
    assert_eq!(unsent().await, 5, "marks wait for mark_delay");
    eventually(Duration::from_secs(5), "marked after the delay", || async {
        (unsent().await == 0).then_some(())
    })
    .await;
    let marks: i64 = sqlx::query_scalar("SELECT count(DISTINCT sent_at) FROM outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(marks, 1, "one transaction (one now()) marked all five");

    // Five more, then a claim by another relay of the schema before their marks are due.
    for n in 6..=10u64 {
        commit(&db.pool, &[ping("f", &format!("k{n}"), n)]).await;
    }
    published(&memory, 10, "10 published").await;
    assert_eq!(unsent().await, 5);
    let other = OutboxRelay::new(db.pool.clone(), Arc::new(memory.clone()), config);
    assert_eq!(
        other.flush().await.unwrap(),
        0,
        "the claim found them marked"
    );
    assert_eq!(unsent().await, 0);
    assert_eq!(memory.published().len(), 10, "nothing published twice");
    assert_eq!(stats.snapshot().batches, 0, "no claim published anything");
    shutdown.cancel();
    task.await.unwrap();
}

/// A row waiting for its retry holds back the newer rows of its key even when the fast path
/// could publish them: a clean claim (which skips rows not yet due) must not turn the fast
/// path back on while such a row exists.
#[tokio::test]
async fn a_row_waiting_for_its_retry_keeps_newer_rows_of_its_key_behind_it() {
    let db = Db::new("ob_retry_fast").await;
    let memory = Memory::new("r");
    let first = ping("r", "k", 1);
    let flaky = Wrapped {
        inner: Arc::new(memory.clone()),
        // Fails on the fast path and on the claim that follows: then it waits for its retry.
        behaviour: Behaviour::FailTimes(Mutex::new(HashMap::from([(first.id, 2)]))),
    };
    let config = RelayConfig {
        retry_initial: Duration::from_millis(1500),
        retry_max: Duration::from_millis(1500),
        ..notified_only()
    };
    let relay = Arc::new(OutboxRelay::new(db.pool.clone(), Arc::new(flaky), config));
    let shutdown = CancellationToken::new();
    let task = spawn_relay(relay, &shutdown);
    tokio::time::sleep(Duration::from_millis(300)).await;

    commit(&db.pool, std::slice::from_ref(&first)).await;
    eventually(Duration::from_secs(5), "the row failed twice", || async {
        let attempts: i64 = db
            .count("SELECT coalesce(max(attempts), 0)::int8 FROM outbox WHERE key = 'k'")
            .await;
        (attempts >= 1).then_some(())
    })
    .await;
    // Another key's row: its notification makes the relay claim, and that claim is clean
    // (the failed row is not due yet).
    commit(&db.pool, &[ping("r", "other", 1)]).await;
    published(&memory, 1, "the other key published").await;
    for seq in 2..=4 {
        commit(&db.pool, &[ping("r", "k", seq)]).await;
    }
    wait_until_sent(&db.pool, Duration::from_secs(10)).await;
    shutdown.cancel();
    task.await.unwrap();

    let of_k: Vec<u64> = memory
        .published()
        .iter()
        .map(|e| e.decode::<Ping>().unwrap())
        .filter(|p| p.key == "k")
        .map(|p| p.seq)
        .collect();
    assert_eq!(
        of_k,
        vec![1, 2, 3, 4],
        "key order kept behind the retried row"
    );
}

#[tokio::test]
async fn backlog_is_reported_and_sent_rows_are_cleaned_up() {
    let db = Db::new("ob_cleanup").await;
    let empty = outbox::backlog(&db.pool).await.unwrap();
    assert_eq!((empty.count, empty.oldest_age), (0, None));

    let envelopes: Vec<Envelope> = (0..3).map(|i| ping("m", "k", i)).collect();
    commit(&db.pool, &envelopes).await;
    commit(&db.pool, &envelopes[..1]).await; // the same id again is ignored
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = outbox::backlog(&db.pool).await.unwrap();
    assert_eq!(waiting.count, 3);
    assert!(waiting.oldest_age.unwrap() >= Duration::from_millis(50));

    let memory = Memory::new("m");
    let relay = OutboxRelay::new(db.pool.clone(), Arc::new(memory.clone()), quick());
    assert_eq!(relay.flush().await.unwrap(), 3);
    assert_eq!(outbox::backlog(&db.pool).await.unwrap().count, 0);
    let order: Vec<Uuid> = memory.published().iter().map(|e| e.id).collect();
    assert_eq!(order, envelopes.iter().map(|e| e.id).collect::<Vec<_>>());
    let stored: BTreeMap<String, String> = sqlx::query_scalar::<_, sqlx::types::Json<_>>(
        "SELECT headers FROM outbox ORDER BY seq LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .map(|j: sqlx::types::Json<BTreeMap<String, String>>| j.0)
    .unwrap();
    assert_eq!(
        stored, envelopes[0].headers,
        "headers survive the round trip"
    );
    assert_eq!(
        memory.published()[0],
        envelopes[0],
        "the published envelope is the enqueued one"
    );

    assert_eq!(
        outbox::delete_sent(&db.pool, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        outbox::delete_sent(&db.pool, Duration::ZERO).await.unwrap(),
        3
    );
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Inbox

#[tokio::test]
async fn the_inbox_skips_a_redelivered_message_and_forgets_only_old_ones() {
    let db = Db::new("inbox").await;
    sqlx::query("CREATE TABLE svc.effects (id uuid PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();
    let message = ping("m", "k", 1);

    // A handler: record + effect in one transaction; the first attempt fails after both.
    let handle = |fail: bool| {
        let pool = db.pool.clone();
        let message = message.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let first = inbox::record(&mut tx, &message, "consumer-a")
                .await
                .unwrap();
            if first {
                sqlx::query("INSERT INTO effects VALUES ($1)")
                    .bind(message.id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            if fail {
                tx.rollback().await.unwrap();
            } else {
                tx.commit().await.unwrap();
            }
            first
        }
    };
    assert!(handle(true).await, "first attempt");
    assert!(
        handle(false).await,
        "a failed attempt leaves no record: the retry is no duplicate"
    );
    assert!(!handle(false).await, "redelivery is skipped");
    assert!(!handle(false).await);
    assert_eq!(db.count("SELECT count(*) FROM effects").await, 1);

    // Another consumer of the same message keeps its own record.
    let mut conn = db.pool.acquire().await.unwrap();
    assert!(
        inbox::record(&mut conn, &message, "consumer-b")
            .await
            .unwrap()
    );

    let old = ping("m", "k", 2);
    assert!(inbox::record(&mut conn, &old, "consumer-a").await.unwrap());
    sqlx::query("UPDATE inbox SET received_at = now() - interval '8 days' WHERE message_id = $1")
        .bind(old.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        inbox::prune(&db.pool, inbox::DEFAULT_RETENTION)
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM inbox").await, 2);
}

// ---------------------------------------------------------------------------------------------
// Sagas

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct OrderData {
    order_id: String,
    shopping_id: Option<String>,
}

#[tokio::test]
async fn concurrent_saga_updates_are_detected_and_overdue_sagas_found() {
    let db = Db::new("saga").await;
    let mut conn = db.pool.acquire().await.unwrap();
    let data = OrderData {
        order_id: "o1".into(),
        shopping_id: None,
    };
    let mut saga = Saga::new("cosec.CreateOrder", "o1", data.clone());
    saga::insert(&mut conn, &mut saga).await.unwrap();
    assert_eq!(saga.version, 1);

    let mut again = Saga::new("cosec.CreateOrder", "o1", data.clone());
    match saga::insert(&mut conn, &mut again).await {
        Err(Error::SagaConflict {
            expected: 0,
            actual: Some(1),
            ..
        }) => {}
        other => panic!("a second start must conflict, got {other:?}"),
    }

    // Two replies load the same state; the first advances the step, the second must not.
    let mut a: Saga<OrderData> = saga::load(&mut conn, "cosec.CreateOrder", "o1")
        .await
        .unwrap()
        .unwrap();
    let mut b = a.clone();
    a.step = 1;
    a.data.shopping_id = Some("s1".into());
    saga::update(&mut conn, &mut a).await.unwrap();
    assert_eq!(a.version, 2);
    b.step = 1;
    b.compensating = true;
    match saga::update(&mut conn, &mut b).await {
        Err(
            e @ Error::SagaConflict {
                expected: 1,
                actual: Some(2),
                ..
            },
        ) => {
            assert!(e.to_string().contains("cosec.CreateOrder/o1"), "{e}");
        }
        other => panic!("expected a saga conflict, got {other:?}"),
    }
    let stored: Saga<OrderData> = saga::load(&mut conn, "cosec.CreateOrder", "o1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, a);

    // Truly concurrent: many writers from the same version, exactly one wins.
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let pool = db.pool.clone();
            let mut copy = stored.clone();
            tokio::spawn(async move {
                copy.step = 2 + i;
                let mut conn = pool.acquire().await.unwrap();
                saga::update(&mut conn, &mut copy).await
            })
        })
        .collect();
    let mut won = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(()) => won += 1,
            Err(Error::SagaConflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    let mut missing = Saga::new("cosec.CreateOrder", "nope", data.clone());
    missing.version = 3;
    assert!(matches!(
        saga::update(&mut conn, &mut missing).await,
        Err(Error::SagaConflict { actual: None, .. })
    ));

    // Deadlines: only running, not stuck sagas past theirs, oldest first.
    let now = time::OffsetDateTime::now_utc();
    for (id, offset, done, stuck) in [
        ("late", -60, false, None),
        ("later", -5, false, None),
        ("future", 60, false, None),
        ("finished", -60, true, None),
        ("stuck", -60, false, Some("compensation failed")),
    ] {
        let mut s = Saga::new("cosec.CreateOrder", id, data.clone());
        s.deadline = Some(now + time::Duration::seconds(offset));
        s.done = done;
        s.stuck_reason = stuck.map(str::to_owned);
        saga::insert(&mut conn, &mut s).await.unwrap();
    }
    let overdue = saga::overdue(&mut conn, "cosec.CreateOrder", 10)
        .await
        .unwrap();
    let ids: Vec<&str> = overdue.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["late", "later"]);
    assert!(
        saga::overdue(&mut conn, "other.Saga", 10)
            .await
            .unwrap()
            .is_empty()
    );
}
