//! Fault injection (`make test-faults`): each test runs a bounded load of shoppers
//! (`FAULTS_CHECKOUTS`, default 20) against the real system while one fault happens, lets the
//! system recover, then checks that every accepted checkout reached its final state and left
//! each effect exactly once. Each prints its row of the fault table (and appends it to
//! `FAULTS_REPORT` when set).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::faults::{self, Load, Report};
use e2e::{Options, System};

/// The load's length: shoppers start evenly over it; the fault hits in its middle.
const SPREAD: Duration = Duration::from_secs(4);

/// Log level that keeps warnings and the notifications sender's one line per SMS sent, which
/// is how sends are counted.
const LOG_LEVEL: &str = "warn,notifications::sms=info";

fn log_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("system.log")
}

/// The common end of every fault test: collect the shoppers, count effects, print, assert.
async fn conclude(
    sys: &System,
    fault: &str,
    load: Load,
    fault_end: Instant,
    log: &std::path::Path,
) -> Report {
    let n = faults::checkouts();
    let outcomes = load.finish().await;
    let report = faults::verify(sys, fault, &outcomes, fault_end, log).await;
    report.print();
    if report.lost != 0
        || report.duplicated != 0
        || report.finished != report.checkouts
        || report.checkouts != n
    {
        eprintln!(
            "--- last lines of the system's log ---\n{}",
            faults::log_tail(log, 60)
        );
    }
    report.assert_clean(n);
    report
}

#[tokio::test]
async fn kill_9_the_monolith_mid_load_and_restart_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let options = Options::monolith()
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let mut sys = System::start("fault_kill_mono", options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    sys.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fault_end = Instant::now();
    sys.start_again().await;
    conclude(&sys, "kill -9 monolith", load, fault_end, &log).await;
}

#[tokio::test]
async fn stop_and_restart_nats_mid_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let mut nats = testkit::NatsServer::start().await;
    let options = Options::monolith()
        .on_nats(&nats.url())
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start("fault_nats", options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    nats.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_end = Instant::now();
    nats.restart().await;
    conclude(
        &sys,
        "NATS stopped 3 s and restarted",
        load,
        fault_end,
        &log,
    )
    .await;
    drop(sys);
}

#[tokio::test]
async fn stop_and_restart_postgres_mid_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let mut postgres = testkit::PostgresServer::start().await;
    let options = Options::monolith()
        .on_postgres(&postgres.url())
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start("fault_pg", options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    postgres.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_end = Instant::now();
    postgres.start_again().await;
    conclude(
        &sys,
        "PostgreSQL stopped 3 s and restarted",
        load,
        fault_end,
        &log,
    )
    .await;
    drop(sys);
}

/// Duplicates: every message delivered so far is published again, once mid-load and once
/// after it. `fresh_ids` false: the same envelope ids (a redelivery; the inbox's job).
/// `fresh_ids` true: new ids (the same fact published again; the handlers' idempotency).
async fn duplicates(label: &str, fault: &str, fresh_ids: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let options = Options::monolith()
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start(label, options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    // Mid-load: every message so far arrives a second time while later ones are in flight.
    let copies = faults::republish_everything(&sys, fresh_ids).await;
    assert!(copies > 0, "nothing to republish");
    let fault_end = Instant::now();
    let n = faults::checkouts();
    let outcomes = load.finish().await;
    // After the load: every message, once more, on a system with nothing else to do.
    let t = Instant::now();
    let copies_after = faults::republish_everything(&sys, fresh_ids).await;
    let republish_time = t.elapsed();
    let t = Instant::now();
    let report = faults::verify(&sys, fault, &outcomes, fault_end, &log).await;
    report.print();
    println!(
        "republished {copies} messages mid-load and {copies_after} after it (in {:.1} s; checked in {:.1} s)",
        republish_time.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    if report.lost != 0 || report.duplicated != 0 {
        eprintln!(
            "--- last lines of the system's log ---\n{}",
            faults::log_tail(&log, 60)
        );
    }
    report.assert_clean(n);
    if !fresh_ids {
        // A redelivery is recognised and acknowledged, never mistaken for a bad message.
        let dead = faults::dead_letters(&sys).await;
        assert!(dead.is_empty(), "redeliveries were dead-lettered: {dead:?}");
    }
}

#[tokio::test]
async fn duplicate_deliveries_are_no_ops() {
    duplicates("fault_dup", "duplicate deliveries (same ids)", false).await;
}

#[tokio::test]
async fn messages_republished_under_new_ids_are_no_ops() {
    duplicates("fault_dup_new", "duplicates under new ids", true).await;
}

#[tokio::test]
async fn poison_on_every_subscribed_subject_is_dead_lettered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let options = Options::monolith()
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start("fault_poison", options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    let poisons = faults::publish_poison(&sys).await;
    let fault_end = Instant::now();
    let report = conclude(
        &sys,
        "poison on every subscribed subject",
        load,
        fault_end,
        &log,
    )
    .await;
    // Every consumer dead-letters the unknown name; each undecodable payload is dead-lettered
    // by the consumers that handle its name and skipped by the others. Nothing else is.
    let dead = faults::dead_letters(&sys).await;
    let subjects: BTreeSet<&str> = poisons.iter().map(|p| p.subject.as_str()).collect();
    let catalogue: BTreeSet<&str> = contracts::ALL_SUBJECTS.iter().copied().collect();
    assert_eq!(
        subjects, catalogue,
        "every subject in the stream has a consumer and got poison"
    );
    let durables: BTreeSet<&str> = poisons.iter().map(|p| p.durable.as_str()).collect();
    let dead_letter_of =
        |p: &faults::Poison| dead.iter().any(|(d, id, _)| *d == p.durable && *id == p.id);
    for durable in &durables {
        let mine: Vec<&faults::Poison> = poisons.iter().filter(|p| p.durable == *durable).collect();
        let unknown = mine
            .iter()
            .find(|p| p.name == faults::UNKNOWN_NAME)
            .expect("an unknown-name poison per consumer");
        assert!(
            dead_letter_of(unknown),
            "{durable} did not dead-letter the unknown message name; dead letters: {dead:?}"
        );
        assert!(
            mine.iter()
                .any(|p| p.name != faults::UNKNOWN_NAME && dead_letter_of(p)),
            "{durable} dead-lettered none of the undecodable payloads on its subject"
        );
    }
    let poison_ids: BTreeSet<&str> = poisons.iter().map(|p| p.id.as_str()).collect();
    let other: Vec<_> = dead
        .iter()
        .filter(|(_, id, _)| !poison_ids.contains(id.as_str()))
        .collect();
    assert!(
        other.is_empty(),
        "real messages were dead-lettered: {other:?}"
    );
    println!(
        "{} poison messages on {} consumers, {} dead letters; {} checkouts unaffected",
        poison_ids.len(),
        durables.len(),
        dead.len(),
        report.checkouts
    );
}

#[tokio::test]
async fn kill_9_each_service_process_in_turn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let options = Options::services()
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start("fault_kill_svc", options).await;
    let services: Vec<String> = {
        let mut names: Vec<String> = faults::runner_instances(&sys)
            .await
            .into_iter()
            .map(|(_, service, _, _)| service)
            .collect();
        names.dedup();
        names
    };
    assert!(services.len() >= 9, "runner instances: {services:?}");
    // One kill every 1.5 s, spread over the whole load.
    let gap = Duration::from_millis(1500);
    let spread = gap * (services.len() as u32 + 1);
    let load = Load::start(&sys, faults::checkouts(), spread).await;
    let mut killed = Vec::new();
    for service in &services {
        tokio::time::sleep(gap).await;
        // The first copy of the service, once the runner has it running.
        let (label, pid) =
            testkit::eventually(Duration::from_secs(30), "a running instance", || {
                let sys = &sys;
                async move {
                    faults::runner_instances(sys)
                        .await
                        .into_iter()
                        .find(|(_, s, pid, _)| s == service && *pid != 0)
                        .map(|(label, _, pid, _)| (label, pid))
                }
            })
            .await;
        faults::kill_9(pid);
        killed.push((label, pid));
    }
    // The fault ends when the runner has replaced the last process it lost.
    let (last_label, last_pid) = killed.last().cloned().expect("a service was killed");
    testkit::eventually(
        Duration::from_secs(30),
        "the runner to restart the last service",
        || {
            let sys = &sys;
            let last_label = last_label.clone();
            async move {
                faults::runner_instances(sys)
                    .await
                    .into_iter()
                    .any(|(label, _, pid, _)| label == last_label && pid != 0 && pid != last_pid)
                    .then_some(())
            }
        },
    )
    .await;
    let fault_end = Instant::now();
    let report = conclude(
        &sys,
        "kill -9 each service (run-services)",
        load,
        fault_end,
        &log,
    )
    .await;
    let instances = faults::runner_instances(&sys).await;
    for (label, _) in &killed {
        assert!(
            instances
                .iter()
                .any(|(l, _, _, restarts)| l == label && *restarts >= 1),
            "{label} was not restarted: {instances:?}"
        );
    }
    println!(
        "killed and restarted: {}",
        killed
            .iter()
            .map(|(l, _)| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(report.checkouts, faults::checkouts());
}

#[tokio::test]
async fn kill_9_the_stream_leader_of_a_three_node_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = log_file(&dir);
    let mut cluster = testkit::NatsCluster::start().await;
    let options = Options::monolith()
        .on_nats(&cluster.url())
        .with_env("NATS_STREAM_REPLICAS", "3")
        .with_env("LOG_LEVEL", LOG_LEVEL)
        .log_to(&log);
    let sys = System::start("fault_cluster", options).await;
    let load = Load::start(&sys, faults::checkouts(), SPREAD).await;
    tokio::time::sleep(SPREAD / 2).await;
    // The node leading the system's stream: losing it forces a leader election mid-load.
    let (leader, replicas) = faults::stream_leader(&sys).await;
    assert_eq!(replicas, 3, "the stream has three replicas");
    let node = cluster
        .index_of(&leader)
        .expect("the leader is one of our nodes");
    cluster.kill(node);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_end = Instant::now();
    cluster.restart(node).await;
    conclude(
        &sys,
        "kill -9 stream leader of 3-node NATS",
        load,
        fault_end,
        &log,
    )
    .await;
    println!(
        "killed and restarted node {} ({leader})",
        cluster.name(node)
    );
    drop(sys);
}
