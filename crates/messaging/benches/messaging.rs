//! `make bench-messaging`: raw async-nats JetStream against the messaging crate on the same
//! server in one run. Prints publish-and-consume throughput of both and their ratio, and the
//! per-hop latency (publish → handler) p50/p99 of both and the added p50.
//!
//! Environment: NATS_URL (default nats://127.0.0.1:4222), BENCH_MESSAGES (default 20000),
//! BENCH_HOPS (default 2000), BENCH_ROUNDS (default 5; the median of the rounds is reported).
//! BENCH_ONLY=raw|crate runs only that path's throughput rounds (raw with the envelope's
//! headers; no ratio), for profiling one path with `perf`.

/// The allocator the service binaries use (see `platform::Allocator`): both paths measured
/// here run on it, as they would in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{Bus, CancellationToken, ConsumerPolicy, Event, Subscription, Transport};
use tokio::sync::mpsc;

#[derive(Clone, PartialEq, prost::Message)]
struct Tick {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(uint64, tag = "2")]
    n: u64,
    #[prost(bytes = "vec", tag = "3")]
    padding: Vec<u8>,
}

impl prost::Name for Tick {
    const NAME: &'static str = "Tick";
    const PACKAGE: &'static str = "bench.v1";
}

impl Event for Tick {
    const SUBJECT: &'static str = "bench.events.Tick";
    fn key(&self) -> String {
        self.key.clone()
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tick(n: u64) -> Tick {
    // ~200 bytes, the size of a typical integration event.
    Tick {
        key: format!("agg-{}", n % 64),
        n,
        padding: vec![7u8; 160],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn workers() -> usize {
    env_num("BENCH_WORKERS", 4) as usize
}

/// Raw: pipelined publishes with acks, a pull consumer acking each message.
///
/// `with_headers` adds the same metadata headers the envelope carries (name, sent-at, key,
/// traceparent): the bytes every message pays for, so the difference to the crate is
/// the crate's own overhead.
async fn raw_throughput(
    client: &async_nats::Client,
    prefix: &str,
    count: u64,
    with_headers: bool,
) -> f64 {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: prefix.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "raw",
            jetstream::consumer::pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: (workers() * 8) as i64,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let subject = format!("{prefix}.bench.events.Tick");
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(workers() * 2)
            .messages()
            .await
            .unwrap();
        let mut n = 0;
        while n < count {
            let msg = messages.next().await.unwrap().unwrap();
            let _ = <Tick as prost::Message>::decode(msg.payload.as_ref()).unwrap();
            msg.ack().await.unwrap();
            n += 1;
        }
    });
    let mut pending = Vec::with_capacity(256);
    for i in 0..count {
        let payload = prost::Message::encode_to_vec(&tick(i));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
        if with_headers {
            headers.insert("Message-Name", "bench.v1.Tick");
            headers.insert("Sent-At", "2026-11-27T01:35:50.123Z");
            headers.insert("Message-Key", "agg-12");
            headers.insert(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            );
        }
        pending.push(
            js.publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .unwrap(),
        );
        if pending.len() == 256 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await.unwrap();
    }
    let published = start.elapsed();
    consume.await.unwrap();
    if std::env::var("BENCH_VERBOSE").is_ok() {
        eprintln!(
            "raw(headers={with_headers}): published in {published:?}, consumed in {:?}",
            start.elapsed()
        );
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(prefix).await.unwrap();
    rate
}

/// The crate: `publish_batch` and a `Subscription` with 4 workers.
async fn crate_throughput(url: &str, prefix: &str, count: u64) -> f64 {
    let js = JetStream::connect(JetStreamConfig::new(url, prefix))
        .await
        .unwrap();
    let bus = Bus::new(Arc::new(js.clone()));
    let shutdown = CancellationToken::new();
    let handled = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let h = handled.clone();
    let sub = Subscription::new("crate", Tick::SUBJECT)
        .policy(ConsumerPolicy {
            workers: workers(),
            ..ConsumerPolicy::default()
        })
        .on(move |_: Tick, _| {
            let h = h.clone();
            let done = done_tx.clone();
            async move {
                if h.fetch_add(1, Ordering::Relaxed) + 1 == count {
                    let _ = done.send(()).await;
                }
                Ok(())
            }
        });
    // Like the raw path, the consumer exists before the clock starts and each message is
    // built just before it is sent (a window at a time, as the relay does).
    bus.subscribe(sub, shutdown.clone()).await.unwrap();
    let start = Instant::now();
    let mut window = Vec::with_capacity(256);
    for i in 0..count {
        window.push(bus.event(&tick(i)));
        if window.len() == 256 || i + 1 == count {
            for r in js.publish_batch(&window).await {
                r.unwrap();
            }
            window.clear();
        }
    }
    let published = start.elapsed();
    done_rx.recv().await;
    if std::env::var("BENCH_VERBOSE").is_ok() {
        eprintln!(
            "crate: published in {published:?}, consumed in {:?}",
            start.elapsed()
        );
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    shutdown.cancel();
    js.delete_stream().await.unwrap();
    rate
}

/// Raw hop latency: publish one message with ack, wait until the consumer has it.
async fn raw_hops(client: &async_nats::Client, prefix: &str, hops: u64) -> Vec<Duration> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: prefix.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "rawhop",
            jetstream::consumer::pull::Config {
                durable_name: Some("rawhop".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel::<Instant>(1);
    tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(8)
            .messages()
            .await
            .unwrap();
        while let Some(Ok(msg)) = messages.next().await {
            let _ = <Tick as prost::Message>::decode(msg.payload.as_ref());
            let _ = msg.ack_with(AckKind::Ack).await;
            if tx.send(Instant::now()).await.is_err() {
                break;
            }
        }
    });
    let subject = format!("{prefix}.bench.events.Tick");
    let mut out = Vec::with_capacity(hops as usize);
    for i in 0..hops {
        let start = Instant::now();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
        let payload = prost::Message::encode_to_vec(&tick(i));
        js.publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let got = rx.recv().await.unwrap();
        out.push(got - start);
    }
    js.delete_stream(prefix).await.unwrap();
    out.sort();
    out
}

/// Crate hop latency: `Bus::publish_event`, measured when the typed handler runs.
async fn crate_hops(url: &str, prefix: &str, hops: u64) -> Vec<Duration> {
    let js = JetStream::connect(JetStreamConfig::new(url, prefix))
        .await
        .unwrap();
    let bus = Bus::new(Arc::new(js.clone()));
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<Instant>(1);
    let sub = Subscription::new("cratehop", Tick::SUBJECT).on(move |_: Tick, _| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Instant::now()).await;
            Ok(())
        }
    });
    bus.subscribe(sub, shutdown.clone()).await.unwrap();
    let mut out = Vec::with_capacity(hops as usize);
    for i in 0..hops {
        let start = Instant::now();
        bus.publish_event(&tick(i)).await.unwrap();
        let got = rx.recv().await.unwrap();
        out.push(got - start);
    }
    shutdown.cancel();
    js.delete_stream().await.unwrap();
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let count = env_num("BENCH_MESSAGES", 20_000);
    let hops = env_num("BENCH_HOPS", 2_000);
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let client = async_nats::connect(&url).await.expect("connect to NATS");

    println!(
        "messaging benchmark: {count} messages (~200 B) per round, {hops} single hops, NATS at {url}"
    );
    // Warm both paths once so neither pays for first-use costs.
    raw_throughput(&client, &format!("benchwarm_raw_{run}"), 1000, false).await;
    crate_throughput(&url, &format!("benchwarm_crate_{run}"), 1000).await;

    if let Ok(only) = std::env::var("BENCH_ONLY") {
        for round in 0..env_num("BENCH_ROUNDS", 5).max(1) {
            let rate = match only.as_str() {
                "raw" => {
                    raw_throughput(&client, &format!("bench_raw_{run}_{round}"), count, true).await
                }
                "crate" => {
                    crate_throughput(&url, &format!("bench_crate_{run}_{round}"), count).await
                }
                other => panic!("BENCH_ONLY must be raw or crate, not {other:?}"),
            };
            println!("{only}: {rate:.0} msg/s");
        }
        return;
    }
    // Rounds interleave the three paths so that background load hits them alike; the median
    // of each is reported.
    let rounds = env_num("BENCH_ROUNDS", 5).max(1);
    let (mut raws, mut raw_mds, mut ours_all) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        raws.push(raw_throughput(&client, &format!("bench_raw_{run}_{round}"), count, false).await);
        raw_mds.push(
            raw_throughput(&client, &format!("bench_rawmd_{run}_{round}"), count, true).await,
        );
        ours_all.push(crate_throughput(&url, &format!("bench_crate_{run}_{round}"), count).await);
    }
    let (raw, raw_md, ours) = (
        median(&mut raws),
        median(&mut raw_mds),
        median(&mut ours_all),
    );
    let raw_lat = raw_hops(&client, &format!("bench_rawhop_{run}"), hops).await;
    let our_lat = crate_hops(&url, &format!("bench_cratehop_{run}"), hops).await;

    let ratio = ours / raw * 100.0;
    let ratio_md = ours / raw_md * 100.0;
    let added = ms(percentile(&our_lat, 0.5)) - ms(percentile(&raw_lat, 0.5));
    println!();
    println!("| path | publish+consume msg/s (median of {rounds}) | hop p50 ms | hop p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw async-nats | {raw:.0} | {:.3} | {:.3} |",
        ms(percentile(&raw_lat, 0.5)),
        ms(percentile(&raw_lat, 0.99))
    );
    println!("| raw async-nats + the envelope's headers | {raw_md:.0} | | |");
    println!(
        "| messaging crate | {ours:.0} | {:.3} | {:.3} |",
        ms(percentile(&our_lat, 0.5)),
        ms(percentile(&our_lat, 0.99))
    );
    println!();
    println!("throughput ratio (crate / raw): {ratio:.1} %  (target >= 80 %)");
    println!("throughput ratio (crate / raw with the same headers): {ratio_md:.1} %");
    println!("added p50 latency per hop: {added:.3} ms  (target < 0.3 ms)");
    let pass = ratio >= 80.0 && added < 0.3;
    println!(
        "result: {}",
        if pass {
            "targets met"
        } else {
            "TARGETS MISSED"
        }
    );
}
