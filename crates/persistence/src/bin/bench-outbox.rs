//! `make bench-outbox`: the outbox relay measured end to end (commit → JetStream → consumer)
//! beside the raw limits of the same machine, measured in the same run:
//!
//! 1. raw PostgreSQL commit rate on one connection, raw JetStream publish-with-ack rate (one at
//!    a time and pipelined);
//! 2. commit → consumer latency p50/p99 at a low rate (`BENCH_RATE`, default 100 msg/s);
//! 3. the sustained rate: producers committing one message per transaction as fast as they can
//!    while the relay publishes and a consumer receives;
//! 4. the relay alone draining a backlog.
//!
//! It creates its own database and stream and removes both at the end. Environment:
//! DATABASE_URL (an admin URL, default postgres://postgres@127.0.0.1:5432/postgres), NATS_URL
//! (default nats://127.0.0.1:4222), BENCH_SECONDS (length of each timed phase, default 5),
//! BENCH_RATE, BENCH_PRODUCERS (default 8).
//!
//! The machine may be shared: the raw PostgreSQL commit rate is measured before and right after
//! the sustained phase and the mean is the reference, and the load average is printed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{
    Bus, CancellationToken, ConsumerPolicy, Empty, Envelope, Subscription, Transport, header,
};
use persistence::{OutboxRelay, RelayConfig, outbox};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

const SCHEMA: &str = "bench";
const SUBJECT: &str = "bench.events.Tick";
const KEYS: u64 = 64;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<()> {
    let admin_url = env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let nats_url = env_or("NATS_URL", "nats://127.0.0.1:4222");
    let suffix = &Uuid::new_v4().simple().to_string()[..10];
    let database = format!("bench_outbox_{suffix}");
    let prefix = format!("bench_outbox_{suffix}");

    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connect to PostgreSQL")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .await?;
    let js = JetStream::connect(JetStreamConfig::new(&nats_url, &prefix))
        .await
        .context("connect to NATS")?;

    let outcome = run(&admin_url, &database, &js, &prefix).await;

    let _ = js.delete_stream().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .await?;
    outcome
}

/// Where each message was committed and received, by id.
#[derive(Default)]
struct Clock {
    committed: Mutex<HashMap<Uuid, Instant>>,
    received: Mutex<HashMap<Uuid, Instant>>,
    count: AtomicU64,
}

impl Clock {
    fn commit(&self, id: Uuid, at: Instant) {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, at);
    }

    fn receive(&self, id: Uuid) {
        let now = Instant::now();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_insert(now);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn received(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Commit → receipt of every message committed since the last reset, sorted.
    fn latencies(&self) -> Vec<Duration> {
        let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Duration> = committed
            .iter()
            .filter_map(|(id, at)| received.get(id).map(|r| r.saturating_duration_since(*at)))
            .collect();
        out.sort();
        out
    }

    fn last_receipt(&self) -> Option<Instant> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .max()
            .copied()
    }
}

async fn run(admin_url: &str, database: &str, js: &JetStream, prefix: &str) -> Result<()> {
    let phase = Duration::from_secs(env_num("BENCH_SECONDS", 5));
    let rate = env_num("BENCH_RATE", 100).max(1);
    let producers = env_num("BENCH_PRODUCERS", 8).max(1);
    let options = persistence::connect_options(admin_url, SCHEMA)?.database(database);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await?;
    persistence::migrate::migrate_common(&pool, SCHEMA).await?;
    let transport: Arc<dyn Transport> = Arc::new(js.clone());
    let subject = format!("{prefix}.{SUBJECT}");

    println!(
        "outbox benchmark: {} s phases, PostgreSQL db {database}, stream {prefix}, load {}",
        phase.as_secs(),
        load_average()
    );
    println!();
    println!("raw limits (same run)");
    let pg_rate = raw_commit_rate(&pool, phase.min(Duration::from_secs(3))).await?;
    println!(
        "  PostgreSQL commit, one connection     {pg_rate:>9.0} /s  ({:.2} ms each)",
        1000.0 / pg_rate
    );
    let (js_one, js_pipelined) =
        raw_publish_rates(js, &subject, phase.min(Duration::from_secs(3))).await?;
    println!(
        "  JetStream publish+ack, one at a time  {js_one:>9.0} /s  ({:.2} ms each)",
        1000.0 / js_one
    );
    println!("  JetStream publish+ack, pipelined      {js_pipelined:>9.0} /s");
    // Raw publishes went to the stream too; the consumer starts after them.
    let clock = Arc::new(Clock::default());
    let shutdown = CancellationToken::new();
    let consumer = subscribe(js, clock.clone(), shutdown.clone()).await?;

    let relay_stop = CancellationToken::new();
    let relay = Arc::new(OutboxRelay::new(
        pool.clone(),
        transport.clone(),
        RelayConfig::default(),
    ));
    let relay_task = {
        let relay = relay.clone();
        let stop = relay_stop.clone();
        tokio::spawn(async move { relay.run(stop).await })
    };

    // Warm-up: connections, consumer and relay are live.
    let warm = produce_at_rate(&pool, &subject, &clock, 50, Duration::from_millis(500)).await?;
    anyhow::ensure!(
        wait_received(&clock, warm, Duration::from_secs(10)).await,
        "the consumer receives nothing: is the relay publishing?"
    );
    clock.reset();

    println!();
    println!(
        "commit → consumer latency at {rate} msg/s ({} s)",
        phase.as_secs()
    );
    let sent = produce_at_rate(&pool, &subject, &clock, rate, phase).await?;
    let low_rate_complete = wait_received(&clock, sent, Duration::from_secs(20)).await;
    let latencies = clock.latencies();
    let (p50, p90, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "  {} messages: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    );
    clock.reset();

    println!();
    println!(
        "sustained: {producers} producers, one message per commit, as fast as they go ({} s)",
        phase.as_secs()
    );
    let flat = produce_flat_out(&pool, &subject, &clock, producers, phase).await?;
    let flat_complete = wait_received(&clock, flat.committed, Duration::from_secs(60)).await;
    let last_receipt = clock.last_receipt().unwrap_or(flat.last_commit);
    let sustained = flat.committed as f64 / last_receipt.duration_since(flat.started).as_secs_f64();
    println!(
        "  committed {} ({:.0}/s); the last arrived {:.1} ms after the last commit; \
         largest backlog sampled {}",
        flat.committed,
        flat.committed as f64 / flat.last_commit.duration_since(flat.started).as_secs_f64(),
        ms(last_receipt.saturating_duration_since(flat.last_commit)),
        flat.max_backlog,
    );
    println!("  sustained commit → consumer rate      {sustained:>9.0} /s");
    clock.reset();
    let pg_rate_after = raw_commit_rate(&pool, phase.min(Duration::from_secs(3))).await?;
    println!("  PostgreSQL commit, one connection, measured again now: {pg_rate_after:.0} /s");

    relay_stop.cancel();
    relay_task.await?;
    println!();
    let backlog_size = 20_000u64;
    println!("relay alone: draining a backlog of {backlog_size} rows (64 keys)");
    fill(&pool, &subject, &clock, backlog_size).await?;
    let relay = Arc::new(OutboxRelay::new(
        pool.clone(),
        transport.clone(),
        RelayConfig::default(),
    ));
    let started = Instant::now();
    let relay_stop = CancellationToken::new();
    let relay_task = {
        let relay = relay.clone();
        let stop = relay_stop.clone();
        tokio::spawn(async move { relay.run(stop).await })
    };
    loop {
        if outbox::backlog(&pool).await?.count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published_in = started.elapsed();
    let drain_complete = wait_received(&clock, backlog_size, Duration::from_secs(60)).await;
    let received_in = clock
        .last_receipt()
        .map_or(published_in, |t| t.duration_since(started));
    let relay_rate = backlog_size as f64 / published_in.as_secs_f64();
    if drain_complete {
        println!(
            "  published and marked sent {relay_rate:>9.0} /s; consumer received all at {:.0}/s",
            backlog_size as f64 / received_in.as_secs_f64()
        );
    } else {
        println!("  published and marked sent {relay_rate:>9.0} /s");
    }
    relay_stop.cancel();
    relay_task.await?;
    shutdown.cancel();
    let _ = consumer.task.await;

    let pg_rate = (pg_rate + pg_rate_after) / 2.0;
    let lower = pg_rate.min(js_one);
    let lower_name = if pg_rate <= js_one {
        "PostgreSQL commit"
    } else {
        "JetStream publish+ack"
    };
    println!();
    println!("targets");
    let p50_ok = low_rate_complete && p50 < Duration::from_millis(5);
    let p99_ok = low_rate_complete && p99 < Duration::from_millis(25);
    let rate_ok = flat_complete && sustained >= 0.5 * lower;
    verdict(
        "p50 < 5 ms at low rate",
        p50_ok,
        format!("{:.2} ms", ms(p50)),
    );
    verdict(
        "p99 < 25 ms at low rate",
        p99_ok,
        format!("{:.2} ms", ms(p99)),
    );
    verdict(
        "sustained ≥ 50 % of the lower raw limit",
        rate_ok,
        format!(
            "{sustained:.0}/s = {:.0} % of {lower:.0}/s ({lower_name}, one at a time, mean)",
            100.0 * sustained / lower
        ),
    );
    println!("  (load average at the end: {})", load_average());
    pool.close().await;
    Ok(())
}

/// The 1, 5 and 15 minute load averages, for judging a run on a shared machine.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn verdict(what: &str, ok: bool, detail: String) {
    println!(
        "  {:<42} {}  {detail}",
        what,
        if ok { "PASS" } else { "MISS" }
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A message about the size of a typical integration event (~300 bytes with its headers).
fn tick(subject: &str, n: u64) -> Envelope {
    let mut env =
        Envelope::new(subject, &Empty {}).with_header(header::KEY, format!("agg-{}", n % KEYS));
    // An `Empty` with 94 bytes in an unknown field (15, length-delimited): decoding skips it.
    let mut body = vec![(15 << 3) | 2, 94];
    body.resize(96, 7);
    env.payload = Bytes::from(body);
    env
}

/// Commits of a tiny transaction on one connection, per second.
async fn raw_commit_rate(pool: &PgPool, length: Duration) -> Result<f64> {
    let mut conn = pool.acquire().await?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_commits (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
    )
    .await?;
    let payload = vec![7u8; 200];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < length {
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO raw_commits (payload) VALUES ($1)")
            .bind(&payload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Raw async-nats publishes with a PubAck each: awaited one by one, then 256 in flight.
async fn raw_publish_rates(js: &JetStream, subject: &str, length: Duration) -> Result<(f64, f64)> {
    let context = js.context();
    let payload = Bytes::from(vec![7u8; 200]);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < length {
        context
            .publish(subject.to_owned(), payload.clone())
            .await?
            .await?;
        n += 1;
    }
    let one = n as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < length {
        let mut acks = Vec::with_capacity(256);
        for _ in 0..256 {
            acks.push(context.publish(subject.to_owned(), payload.clone()).await?);
        }
        for ack in acks {
            ack.await?;
        }
        n += 256;
    }
    Ok((one, n as f64 / started.elapsed().as_secs_f64()))
}

/// A durable consumer through the messaging crate, as a service would run it. It starts at the
/// stream's end so the raw-limit publishes are not counted.
async fn subscribe(
    js: &JetStream,
    clock: Arc<Clock>,
    shutdown: CancellationToken,
) -> Result<messaging::ConsumerHandle> {
    let bus = Bus::new(Arc::new(js.clone()));
    let sub = Subscription::new("bench-consumer", SUBJECT)
        .policy(ConsumerPolicy {
            workers: 4,
            ..ConsumerPolicy::default()
        })
        .on(move |_: Empty, ctx| {
            let clock = clock.clone();
            async move {
                clock.receive(ctx.envelope.id);
                Ok(())
            }
        });
    js.context()
        .get_stream(js.stream_name())
        .await?
        .purge()
        .await
        .map_err(|e| anyhow::anyhow!("purge raw publishes: {e}"))?;
    Ok(bus.subscribe(sub, shutdown).await?)
}

/// One message per transaction at `rate` per second for `length`; returns how many.
async fn produce_at_rate(
    pool: &PgPool,
    subject: &str,
    clock: &Clock,
    rate: u64,
    length: Duration,
) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < length {
        ticker.tick().await;
        let env = tick(subject, n);
        let mut tx = conn.begin().await?;
        outbox::enqueue(&mut tx, std::slice::from_ref(&env)).await?;
        tx.commit().await?;
        clock.commit(env.id, Instant::now());
        n += 1;
    }
    Ok(n)
}

/// What the flat-out producers did.
struct FlatOut {
    committed: u64,
    started: Instant,
    last_commit: Instant,
    max_backlog: i64,
}

/// `producers` connections committing one message per transaction without pause for `length`.
async fn produce_flat_out(
    pool: &PgPool,
    subject: &str,
    clock: &Arc<Clock>,
    producers: u64,
    length: Duration,
) -> Result<FlatOut> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let pool = pool.clone();
            let subject = subject.to_owned();
            let clock = clock.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                let mut n = 0u64;
                let mut last = started;
                while started.elapsed() < length {
                    // Each producer owns its keys: one aggregate's writers are serialised.
                    let env = tick(&subject, n * producers + p);
                    let mut tx = conn.begin().await?;
                    outbox::enqueue(&mut tx, std::slice::from_ref(&env)).await?;
                    tx.commit().await?;
                    last = Instant::now();
                    clock.commit(env.id, last);
                    n += 1;
                }
                anyhow::Ok((n, last))
            })
        })
        .collect();
    let mut max_backlog = 0;
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(250)).await;
        max_backlog = max_backlog.max(outbox::backlog(pool).await?.count);
    }
    let mut out = FlatOut {
        committed: 0,
        started,
        last_commit: started,
        max_backlog,
    };
    for t in tasks {
        let (n, last) = t.await??;
        out.committed += n;
        out.last_commit = out.last_commit.max(last);
    }
    Ok(out)
}

/// `count` rows committed in transactions of 500, with no relay running.
async fn fill(pool: &PgPool, subject: &str, clock: &Clock, count: u64) -> Result<()> {
    let mut conn = pool.acquire().await?;
    for start in (0..count).step_by(500) {
        let batch: Vec<Envelope> = (start..(start + 500).min(count))
            .map(|n| tick(subject, n))
            .collect();
        let mut tx = conn.begin().await?;
        outbox::enqueue(&mut tx, &batch).await?;
        tx.commit().await?;
        let now = Instant::now();
        for env in &batch {
            clock.commit(env.id, now);
        }
    }
    Ok(())
}

/// Waits until `count` messages were received; says so and returns false if they were not.
async fn wait_received(clock: &Clock, count: u64, timeout: Duration) -> bool {
    let started = Instant::now();
    while clock.received() < count && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = clock.received() >= count;
    if !all {
        println!(
            "  only {} of {count} received within {timeout:?}",
            clock.received()
        );
    }
    all
}
