//! The real `mallbots` binary as an operator runs it: configured by environment variables,
//! ready on `/readyz`, stopped by SIGTERM with exit code 0, self-documenting with `--help`,
//! and refusing a bad setting before it starts anything.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use messaging::jetstream::{JetStream, JetStreamConfig};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mallbots");

/// Every setting `--help` must document.
const SETTINGS: &[&str] = &[
    "NATS_URL",
    "DATABASE_URL",
    "HTTP_ADDR",
    "NATS_PREFIX",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SHUTDOWN_TIMEOUT",
    "HTTP_REQUEST_TIMEOUT",
    "HTTP_BODY_LIMIT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Deletes a deployment's stream when dropped, also when the test panics.
struct StreamGuard(String);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let config = JetStreamConfig::new(testkit::nats_url(), &prefix);
                if let Ok(js) = JetStream::connect(config).await {
                    let _ = js.delete_stream().await;
                }
            });
        })
        .join();
    }
}

/// The binary with a clean environment for our settings (the test runner's may set some).
fn mallbots() -> Command {
    let mut cmd = Command::new(BIN);
    for name in SETTINGS {
        cmd.env_remove(name);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts one instance on a free port with its own prefix and database URL.
fn spawn_instance(prefix: &str, database_url: &str) -> (Child, u16) {
    let port = testkit::free_port();
    let child = mallbots()
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("NATS_URL", testkit::nats_url())
        .env("NATS_PREFIX", prefix)
        .env("DATABASE_URL", database_url)
        .env("LOG_FORMAT", "json")
        .env("SHUTDOWN_TIMEOUT", "10s")
        .spawn()
        .expect("start the mallbots binary");
    (child, port)
}

async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    testkit::eventually(
        Duration::from_secs(30),
        &format!("{url} answers 200"),
        || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        },
    )
    .await;
}

/// Sends SIGTERM and waits (bounded) for the exit.
async fn terminate(child: Child) -> (Output, Duration) {
    let pid = child.id().expect("still running").to_string();
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the process exits after SIGTERM")
        .unwrap();
    (output, started.elapsed())
}

#[tokio::test]
async fn two_deployments_run_side_by_side_and_stop_cleanly_on_sigterm() {
    let (prefix_a, prefix_b) = (
        testkit::unique_prefix("mallbots_a"),
        testkit::unique_prefix("mallbots_b"),
    );
    let _streams = (StreamGuard(prefix_a.clone()), StreamGuard(prefix_b.clone()));
    let (db_a, db_b) = (
        testkit::TestDatabase::create("mallbots_a").await,
        testkit::TestDatabase::create("mallbots_b").await,
    );

    let (a, port_a) = spawn_instance(&prefix_a, db_a.url());
    let (b, port_b) = spawn_instance(&prefix_b, db_b.url());
    wait_ready(port_a).await;
    wait_ready(port_b).await;

    let liveness = reqwest::get(format!("http://127.0.0.1:{port_a}/liveness"))
        .await
        .unwrap();
    assert_eq!(liveness.text().await.unwrap(), ".");

    for child in [a, b] {
        let (output, took) = terminate(child).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(took < Duration::from_secs(5), "stopped in {took:?}");
        assert!(stdout.contains("started mallbots application"), "{stdout}");
        assert!(
            stdout.lines().all(|l| l.starts_with('{')),
            "LOG_FORMAT=json: {stdout}"
        );
        assert!(stdout.contains("SIGTERM"), "{stdout}");
    }
}

#[tokio::test]
async fn help_documents_every_setting() {
    let output = mallbots().arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for name in SETTINGS {
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} missing from:\n{help}"
        );
    }
    for default in [
        "nats://127.0.0.1:4222",
        "0.0.0.0:8080",
        "mallbots",
        "30s",
        "pretty",
    ] {
        assert!(
            help.contains(&format!("[default: {default}]")),
            "{default} missing from:\n{help}"
        );
    }
}

#[tokio::test]
async fn an_invalid_setting_stops_the_process_before_it_starts() {
    let started = Instant::now();
    let output = mallbots()
        .env("HTTP_ADDR", "not-an-address")
        // Nothing listens here: a process that got past configuration would hang or fail later.
        .env(
            "NATS_URL",
            format!("nats://127.0.0.1:{}", testkit::free_port()),
        )
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HTTP_ADDR") && stderr.contains("not-an-address"),
        "{stderr}"
    );
}
