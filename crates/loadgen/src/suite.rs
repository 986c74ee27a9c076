//! `make bench`: the monolith on a fresh database and NATS prefix, the load at several
//! concurrencies, resident memory sampled throughout, PostgreSQL transactions per checkout,
//! the raw limits of the machine, and BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::{Child, Command};

use crate::args::{RunArgs, SuiteArgs};
use crate::limits::{self, Limits, scratch_name, with_database};
use crate::report::{CHECKOUT_TO_APPROVED, CHECKOUT_TO_COMPLETED, Report, STATUS_ROUTE};
use crate::run;

/// Resident memory a warm monolith may gain over the soak run and still count as not growing
/// (allocator and pool slack; a leak of one allocation per message would be far above it).
const SOAK_GROWTH_MIB: f64 = 5.0;

/// How long pg_stat_database needs to include every backend's commits (backends flush at most
/// once a second).
const STATS_SETTLE: Duration = Duration::from_millis(2500);

/// The machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
    pub postgres: String,
    pub nats_server: String,
}

/// Database activity over a run (pg_stat_database deltas of the monolith's database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DbActivity {
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub tup_inserted: i64,
    pub tup_updated: i64,
    pub tup_deleted: i64,
    pub seconds: f64,
}

impl DbActivity {
    fn delta(before: &DbActivity, after: &DbActivity, seconds: f64) -> DbActivity {
        DbActivity {
            xact_commit: after.xact_commit - before.xact_commit,
            xact_rollback: after.xact_rollback - before.xact_rollback,
            tup_inserted: after.tup_inserted - before.tup_inserted,
            tup_updated: after.tup_updated - before.tup_updated,
            tup_deleted: after.tup_deleted - before.tup_deleted,
            seconds,
        }
    }
}

/// Resident memory over one phase, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rss {
    pub first_kib: u64,
    pub max_kib: u64,
    pub last_kib: u64,
}

/// One concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub report: Report,
    pub db: DbActivity,
    pub rss: Rss,
    /// CPU time (user + system) the monolith used during the run, seconds.
    #[serde(default)]
    pub monolith_cpu_s: f64,
    /// The long run that checks resident memory does not grow.
    #[serde(default)]
    pub soak: bool,
}

impl Level {
    /// `c=8`, `c=8 fulfil`, `c=8 soak`.
    pub fn label(&self) -> String {
        let kind = if self.soak {
            " soak"
        } else if self.report.fulfil {
            " fulfil"
        } else {
            ""
        };
        format!("c={}{kind}", self.report.concurrency)
    }

    /// Commits per checkout, net of the idle commit rate over the same time; with
    /// `per_poll`, also net of the order status polls' own transactions.
    pub fn commits_per_checkout(&self, idle_commits_per_s: f64, per_poll: f64) -> Option<f64> {
        (self.report.checkouts > 0).then(|| {
            let polls = self.report.calls(STATUS_ROUTE) as f64;
            (self.db.xact_commit as f64 - idle_commits_per_s * self.db.seconds - polls * per_poll)
                .max(0.0)
                / self.report.checkouts as f64
        })
    }
}

/// Everything `make bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub date: String,
    pub git_commit: String,
    pub machine: Machine,
    pub levels: Vec<Level>,
    pub idle: DbActivity,
    /// Commits one `GET /api/ordering/{id}` of an existing order costs (measured).
    pub commits_per_status_poll: f64,
    pub rss_ready_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    pub shutdown_s: f64,
    pub shutdown_clean: bool,
    pub limits: Limits,
}

/// utime + stime of a /proc/<pid>/stat text, in clock ticks.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds `pid` has used so far.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat_cpu_ticks(&s))
        .map_or(0.0, |t| t as f64 / ticks_per_s)
}

fn read_status_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// VmRSS of a /proc/<pid>/status text, KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Samples the RSS of `pid` every 250 ms; `phase()` gives what was seen since the last call.
struct RssSampler {
    seen: Arc<Mutex<(Vec<u64>, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let seen = Arc::new(Mutex::new((Vec::new(), 0u64)));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(kib) = read_status_rss(pid) {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    s.0.push(kib);
                    s.1 = s.1.max(kib);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        RssSampler { seen, task }
    }

    fn phase(&self) -> Rss {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let samples = std::mem::take(&mut s.0);
        Rss {
            first_kib: samples.first().copied().unwrap_or_default(),
            max_kib: samples.iter().copied().max().unwrap_or_default(),
            last_kib: samples.last().copied().unwrap_or_default(),
        }
    }

    fn peak(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn db_activity(conn: &mut PgConnection, database: &str) -> Result<DbActivity> {
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted \
         FROM pg_stat_database WHERE datname = $1",
    )
    .bind(database)
    .fetch_one(&mut *conn)
    .await?;
    Ok(DbActivity {
        xact_commit: row.0,
        xact_rollback: row.1,
        tup_inserted: row.2,
        tup_updated: row.3,
        tup_deleted: row.4,
        seconds: 0.0,
    })
}

/// Commits one status poll of an existing order costs: 200 sequential polls, minus idle.
async fn calibrate_status_poll(
    admin: &mut PgConnection,
    database: &str,
    base: &str,
    order: &str,
    idle_commits_per_s: f64,
) -> Result<f64> {
    const POLLS: u32 = 200;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/ordering/{order}");
    let before = db_activity(admin, database).await?;
    let started = Instant::now();
    for _ in 0..POLLS {
        client.get(&url).send().await?.error_for_status()?;
    }
    tokio::time::sleep(STATS_SETTLE).await;
    let after = db_activity(admin, database).await?;
    let seconds = started.elapsed().as_secs_f64();
    let commits = (after.xact_commit - before.xact_commit) as f64 - idle_commits_per_s * seconds;
    Ok((commits / f64::from(POLLS)).max(0.0))
}

fn machine_facts() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        memory_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        postgres: String::new(),
        nats_server: String::new(),
    }
}

async fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn wait_ready(base: &str, child: &mut Child, budget: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + budget;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the monolith exited before it was ready: {status}");
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the monolith was not ready after {budget:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM (through `kill`, the crate forbids unsafe code), then up to 30 s; SIGKILL after.
async fn terminate(child: &mut Child) -> (bool, Duration) {
    let started = Instant::now();
    let Some(pid) = child.id() else {
        return (false, Duration::ZERO);
    };
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) => (status.success(), started.elapsed()),
        _ => {
            let _ = child.kill().await;
            (false, started.elapsed())
        }
    }
}

/// `loadgen bench-suite`.
pub async fn command(args: &SuiteArgs) -> Result<()> {
    if args.levels.is_empty() || args.levels.iter().any(|&c| c == 0 || c > 1024) {
        bail!("--levels must list concurrencies between 1 and 1024");
    }
    if !args.mallbots_bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p mallbots",
            args.mallbots_bin.display()
        );
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let database = scratch_name("loadgen_bench");
    let prefix = scratch_name("loadgen_bench");
    let mut admin = PgConnection::connect(&args.database_url)
        .await
        .context("connect to PostgreSQL (DATABASE_URL)")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .await?;
    eprintln!("bench: database {database}, NATS prefix {prefix}");

    let outcome = suite(args, &mut admin, &database, &prefix).await;

    // Clean up whatever happened.
    if let Ok(client) = async_nats::connect(&args.nats_url).await {
        let _ = async_nats::jetstream::new(client.clone())
            .delete_stream(&prefix)
            .await;
        let _ = client.drain().await;
    }
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .await;
    let suite = outcome?;

    std::fs::write(
        args.work_dir.join("suite.json"),
        serde_json::to_vec_pretty(&suite)?,
    )?;
    // Hand-written notes after the marker survive a regeneration.
    let existing = std::fs::read_to_string(&args.out).unwrap_or_default();
    let mut text = markdown(&suite);
    if let Some(notes) = preserved_notes(&existing) {
        text.push('\n');
        text.push_str(notes);
    }
    std::fs::write(&args.out, text).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "bench: wrote {} and {}",
        args.out.display(),
        args.work_dir.join("suite.json").display()
    );
    Ok(())
}

async fn suite(
    args: &SuiteArgs,
    admin: &mut PgConnection,
    database: &str,
    prefix: &str,
) -> Result<Suite> {
    let mut machine = machine_facts();
    machine.postgres = sqlx::query_scalar::<_, String>("SHOW server_version")
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_default();
    if let Ok(client) = async_nats::connect(&args.nats_url).await {
        machine.nats_server = client.server_info().version;
        let _ = client.drain().await;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = args.work_dir.join("mallbots.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(&args.mallbots_bin)
        .env("DATABASE_URL", with_database(&args.database_url, database))
        .env("NATS_URL", &args.nats_url)
        .env("NATS_PREFIX", prefix)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", args.mallbots_bin.display()))?;
    let pid = child.id().context("monolith pid")?;
    eprintln!(
        "bench: monolith pid {pid} on {base} (log {})",
        log_path.display()
    );
    wait_ready(&base, &mut child, Duration::from_secs(90)).await?;
    let sampler = RssSampler::start(pid);
    let ticks_per_s = command_output("getconf", &["CLK_TCK"])
        .await
        .parse::<f64>()
        .unwrap_or(100.0);

    // Idle commit rate (relays, consumers) to subtract from the runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = db_activity(admin, database).await?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = db_activity(admin, database).await?;
    let idle = DbActivity::delta(&before, &after, idle_started.elapsed().as_secs_f64());
    let rss_ready_kib = sampler.phase().last_kib;

    // (concurrency, length, fulfil, soak)
    let mut runs: Vec<(usize, Duration, bool, bool)> = args
        .levels
        .iter()
        .map(|&c| (c, args.run_length, false, false))
        .collect();
    if !args.fulfil_length.is_zero() {
        runs.push((args.fulfil_concurrency, args.fulfil_length, true, false));
    }
    if !args.soak_length.is_zero() {
        // Last, on a warm process: what it holds at the start of this run is its working set.
        runs.push((args.soak_concurrency, args.soak_length, false, true));
    }
    let mut levels = Vec::new();
    let mut commits_per_status_poll = None;
    for (concurrency, length, fulfil, soak) in runs {
        if let Some(status) = child.try_wait()? {
            bail!("the monolith exited during the runs: {status}");
        }
        let name = format!(
            "c{concurrency}{}",
            if soak {
                "-soak"
            } else if fulfil {
                "-fulfil"
            } else {
                ""
            }
        );
        eprintln!("bench: {name}: {length:?}");
        let run_args = RunArgs {
            url: base.clone(),
            allow_remote: false,
            concurrency,
            duration: Some(length),
            count: None,
            max_duration: length + Duration::from_secs(60),
            stores: 4,
            products: 5,
            customers: 50,
            fulfil,
            poll_interval: Duration::from_millis(2),
            poll_max: Duration::from_millis(20),
            order_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            json_out: Some(args.work_dir.join(format!("{name}.json"))),
            quiet: false,
        };
        let plan = run_args.validate()?;
        let _ = sampler.phase();
        let before = db_activity(admin, database).await?;
        let cpu_before = cpu_seconds(pid, ticks_per_s);
        let started = Instant::now();
        let report = run::run(&plan).await?;
        let monolith_cpu_s = cpu_seconds(pid, ticks_per_s) - cpu_before;
        tokio::time::sleep(STATS_SETTLE).await;
        let after = db_activity(admin, database).await?;
        let db = DbActivity::delta(&before, &after, started.elapsed().as_secs_f64());
        let rss = sampler.phase();
        println!("{}", report.table());
        if commits_per_status_poll.is_none()
            && let Some(order) = &report.sample_order
        {
            let rate = idle.xact_commit as f64 / idle.seconds.max(0.001);
            commits_per_status_poll =
                Some(calibrate_status_poll(admin, database, &base, order, rate).await?);
        }
        levels.push(Level {
            report,
            db,
            rss,
            monolith_cpu_s,
            soak,
        });
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after_kib = sampler.phase().last_kib;
    let rss_peak_kib = sampler.peak();
    drop(sampler);
    let (shutdown_clean, shutdown) = terminate(&mut child).await;
    eprintln!("bench: monolith stopped in {shutdown:?} (clean: {shutdown_clean})");

    eprintln!("bench: raw limits");
    let limits =
        limits::measure(&args.database_url, &args.nats_url, Duration::from_secs(3)).await?;

    Ok(Suite {
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await,
        git_commit: command_output("git", &["rev-parse", "--short", "HEAD"]).await,
        machine,
        levels,
        idle,
        commits_per_status_poll: commits_per_status_poll.unwrap_or_default(),
        rss_ready_kib,
        rss_peak_kib,
        rss_after_kib,
        shutdown_s: shutdown.as_secs_f64(),
        shutdown_clean,
        limits,
    })
}

/// Marks the start of hand-written notes in BENCHMARKS.md, kept when the numbers are regenerated.
pub const NOTES_MARKER: &str = "<!-- notes: kept by make bench -->";

/// The notes section (marker included) of an existing BENCHMARKS.md.
pub fn preserved_notes(existing: &str) -> Option<&str> {
    existing.find(NOTES_MARKER).map(|at| &existing[at..])
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// BENCHMARKS.md.
pub fn markdown(s: &Suite) -> String {
    let mut out = String::new();
    let idle_rate = if s.idle.seconds > 0.0 {
        s.idle.xact_commit as f64 / s.idle.seconds
    } else {
        0.0
    };
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `make bench` (`loadgen bench-suite`) on {} at commit `{}`. The monolith \
         (`target/release/mallbots`) runs on a fresh database and NATS prefix on the same machine \
         as the load generator, PostgreSQL and NATS, so they all share the CPUs.\n",
        s.date, s.git_commit
    );
    let m = &s.machine;
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPUs (nproc) | {} |", m.cpus);
    let _ = writeln!(out, "| CPU model | {} |", m.cpu_model);
    let _ = writeln!(out, "| memory | {} MiB |", m.memory_mib);
    let _ = writeln!(out, "| kernel | {} |", m.kernel);
    let _ = writeln!(out, "| PostgreSQL | {} |", m.postgres);
    let _ = writeln!(out, "| nats-server | {} |\n", m.nats_server);

    let _ = writeln!(out, "## Raw limits (same run, monolith stopped)\n");
    let l = &s.limits;
    let _ = writeln!(out, "| limit | rate | p50 | p99 |\n|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| PostgreSQL commit, one connection (INSERT, autocommit) | {:.0}/s | {:.2} ms | {:.2} ms |",
        l.pg_commits_per_s, l.pg_commit.p50_ms, l.pg_commit.p99_ms
    );
    let _ = writeln!(
        out,
        "| JetStream publish + ack, one at a time (file storage) | {:.0}/s | {:.2} ms | {:.2} ms |\n",
        l.js_publish_ack_per_s, l.js_publish_ack.p50_ms, l.js_publish_ack.p99_ms
    );

    let _ = writeln!(out, "## Order life cycle over REST\n");
    let _ = writeln!(
        out,
        "Each shopper: `POST /api/payments`, `POST /api/baskets`, 1–4 × `addItem`, `checkout`, then \
         `GET /api/ordering/{{id}}` until `approved`, pausing a twentieth of the time waited so far (2–20 ms; per-order deadline 10 s); the \
         fulfil run goes on with depot assign/complete, invoice pay (retried while 404) and polls \
         until `completed`. checkout→approved is measured from sending the checkout request. \
         Rates: events divided by the time from the start to the last such event. Setup (4 \
         stores × 5 products, 50 customers) is not measured.\n"
    );
    let _ = writeln!(
        out,
        "| run | length | checkouts/s | approved/s | checkout→approved p50 / p95 / p99 (ms) | checkout→completed p50 / p95 / p99 (ms) | errors | unfinished | status polls per checkout | commits per checkout (with polls / without) | RSS max (MiB) |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for level in &s.levels {
        let r = &level.report;
        let e2e = |name: &str| {
            r.e2e(name).map_or("–".to_owned(), |x| {
                format!("{:.1} / {:.1} / {:.1}", x.p50_ms, x.p95_ms, x.p99_ms)
            })
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} s | {:.1} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {:.1} |",
            level.label(),
            r.requested_duration_s.unwrap_or(r.elapsed_s),
            r.checkouts_per_s,
            r.approved_per_s,
            e2e(CHECKOUT_TO_APPROVED),
            e2e(CHECKOUT_TO_COMPLETED),
            r.errors_total,
            r.unfinished_total,
            r.calls(STATUS_ROUTE) as f64 / r.checkouts.max(1) as f64,
            match (
                level.commits_per_checkout(idle_rate, 0.0),
                level.commits_per_checkout(idle_rate, s.commits_per_status_poll),
            ) {
                (Some(gross), Some(net)) => format!("{gross:.1} / {net:.1}"),
                _ => "–".into(),
            },
            mib(level.rss.max_kib),
        );
    }
    let _ = writeln!(
        out,
        "\nCommits per checkout: `xact_commit` delta of the monolith's database in `pg_stat_database` \
         over the run (+{:.1} s for the statistics to settle), minus the idle rate ({:.1} commits/s \
         measured for {:.0} s before the runs), divided by the checkouts; read-only transactions \
         (every autocommit query) count too. \"Without\" also subtracts the status polls: one \
         `GET /api/ordering/{{id}}` costs {:.2} commits (measured with 200 polls after the first run). \
         The fulfil run adds the depot, invoice and completion transactions (and invoice-pay retries).\n",
        STATS_SETTLE.as_secs_f64(),
        idle_rate,
        s.idle.seconds,
        s.commits_per_status_poll
    );
    let _ = writeln!(
        out,
        "| run | monolith CPU (s) | CPU ms per checkout | commits | rollbacks | rows inserted | rows updated | rows deleted | per checkout: inserted / updated / deleted |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for level in &s.levels {
        let d = &level.db;
        let n = level.report.checkouts.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} |",
            level.label(),
            level.monolith_cpu_s,
            level.monolith_cpu_s * 1000.0 / n,
            d.xact_commit,
            d.xact_rollback,
            d.tup_inserted,
            d.tup_updated,
            d.tup_deleted,
            d.tup_inserted as f64 / n,
            d.tup_updated as f64 / n,
            d.tup_deleted as f64 / n
        );
    }

    let _ = writeln!(out, "\n## Targets (issue 9)\n");
    let _ = writeln!(out, "| target | measured | |\n|---|---|---|");
    let by_c = |c: usize| {
        s.levels
            .iter()
            .find(|l| l.report.concurrency == c && !l.report.fulfil)
    };
    if let Some(l) = by_c(1)
        && let Some(e) = l.report.e2e(CHECKOUT_TO_APPROVED)
    {
        let _ = writeln!(
            out,
            "| c=1: checkout→approved p50 ≤ 25 ms | {:.1} ms | {} |",
            e.p50_ms,
            verdict(e.p50_ms <= 25.0)
        );
        let _ = writeln!(
            out,
            "| c=1: checkout→approved p99 ≤ 60 ms | {:.1} ms | {} |",
            e.p99_ms,
            verdict(e.p99_ms <= 60.0)
        );
    }
    if let Some(l) = by_c(32) {
        let r = &l.report;
        let _ = writeln!(
            out,
            "| c=32: ≥ 100 checkouts/s sustained | {:.1}/s | {} |",
            r.checkouts_per_s,
            verdict(r.checkouts_per_s >= 100.0)
        );
        let _ = writeln!(
            out,
            "| c=32: 0 unfinished orders | {} | {} |",
            r.unfinished_total,
            verdict(r.unfinished_total == 0)
        );
        if let Some(e) = r.e2e(CHECKOUT_TO_APPROVED) {
            let _ = writeln!(
                out,
                "| c=32: checkout→approved p99 ≤ 250 ms | {:.1} ms | {} |",
                e.p99_ms,
                verdict(e.p99_ms <= 250.0)
            );
        }
    }
    let growth = mib(s.rss_after_kib) - mib(s.rss_ready_kib);
    let _ = writeln!(
        out,
        "| monolith RSS < 150 MiB | peak {:.1} MiB | {} |",
        mib(s.rss_peak_kib),
        verdict(mib(s.rss_peak_kib) < 150.0)
    );
    match s.levels.iter().find(|l| l.soak) {
        Some(soak) => {
            let start = mib(soak.rss.first_kib);
            let end = mib(soak.rss.last_kib);
            let _ = writeln!(
                out,
                "| no RSS growth over a {:.0}-minute run ({}) | {start:.1} MiB at its start → {end:.1} MiB at its end ({:+.1} MiB; max {:.1} MiB) | {} |\n",
                soak.report
                    .requested_duration_s
                    .unwrap_or(soak.report.elapsed_s)
                    / 60.0,
                soak.label(),
                end - start,
                mib(soak.rss.max_kib),
                verdict(end - start <= SOAK_GROWTH_MIB)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| no RSS growth | ready {:.1} MiB → after the runs {:.1} MiB ({growth:+.1} MiB); no soak run (--soak-length 0s) | not measured |\n",
                mib(s.rss_ready_kib),
                mib(s.rss_after_kib)
            );
        }
    }

    let _ = writeln!(out, "## Resident memory (VmRSS, sampled every 250 ms)\n");
    let _ = writeln!(out, "| phase | first | max | last |\n|---|---:|---:|---:|");
    let _ = writeln!(out, "| ready, idle | | | {:.1} MiB |", mib(s.rss_ready_kib));
    for level in &s.levels {
        let _ = writeln!(
            out,
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            level.label(),
            mib(level.rss.first_kib),
            mib(level.rss.max_kib),
            mib(level.rss.last_kib)
        );
    }
    let _ = writeln!(
        out,
        "| 3 s after the runs | | | {:.1} MiB |\n\nGraceful shutdown (SIGTERM): {:.2} s, {}.\n",
        mib(s.rss_after_kib),
        s.shutdown_s,
        if s.shutdown_clean {
            "exit status 0"
        } else {
            "**not clean**"
        }
    );

    let _ = writeln!(out, "## REST calls by route (ms)\n");
    for level in &s.levels {
        let r = &level.report;
        let _ = writeln!(
            out,
            "### {}\n\n| route | count | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|",
            level.label()
        );
        for (route, x) in r.end_to_end.iter().chain(r.routes.iter()) {
            let _ = writeln!(
                out,
                "| {route} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                x.count, x.p50_ms, x.p95_ms, x.p99_ms, x.max_ms
            );
        }
        if !r.errors.is_empty() {
            let _ = writeln!(out, "\nErrors:\n");
            for (kind, n) in &r.errors {
                let _ = writeln!(out, "- {n} × `{kind}`");
            }
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(
        out,
        "## Reproduce\n\n```sh\nmake bench        # release build, then loadgen bench-suite (≈ 2 min)\n\
         ./target/release/loadgen --url http://127.0.0.1:8080 -c 32 --duration 20s --json-out r.json\n\
         ./target/release/loadgen -c 8 --count 500 --fulfil\n./target/release/loadgen limits\n```\n\n\
         Per-run JSON reports and the monolith's log are in `target/loadgen/`."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Summary;
    use std::collections::BTreeMap;

    #[test]
    fn notes_survive_regeneration() {
        let old = format!("# Benchmarks\nold numbers\n\n{NOTES_MARKER}\n## Analysis\nmine\n");
        assert_eq!(
            preserved_notes(&old),
            Some(format!("{NOTES_MARKER}\n## Analysis\nmine\n").as_str())
        );
        assert_eq!(preserved_notes("# Benchmarks\nno notes\n"), None);
    }

    #[test]
    fn cpu_ticks_are_read() {
        let stat = "4242 (mallbots (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 25 0 0 20 0 9 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(175));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn vm_rss_is_read() {
        let status = "Name:\tmallbots\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(51_234));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    fn level(c: usize, checkouts: u64, p99: f64) -> Level {
        let mut end_to_end = BTreeMap::new();
        end_to_end.insert(
            CHECKOUT_TO_APPROVED.to_owned(),
            Summary {
                count: checkouts as usize,
                mean_ms: 20.0,
                p50_ms: 18.0,
                p95_ms: 30.0,
                p99_ms: p99,
                max_ms: p99,
            },
        );
        Level {
            report: Report {
                url: "http://127.0.0.1:1".into(),
                concurrency: c,
                fulfil: false,
                requested_duration_s: Some(20.0),
                requested_count: None,
                setup_s: 1.0,
                elapsed_s: 20.1,
                checkouts,
                approved: checkouts,
                completed: 0,
                rejected: 0,
                checkouts_per_s: checkouts as f64 / 20.0,
                approved_per_s: checkouts as f64 / 20.0,
                completed_per_s: 0.0,
                errors_total: 0,
                errors: BTreeMap::new(),
                error_samples: Vec::new(),
                unfinished_total: 0,
                unfinished: Vec::new(),
                end_to_end,
                routes: BTreeMap::new(),
                sample_order: None,
            },
            db: DbActivity {
                xact_commit: 2_000 + 25 * checkouts as i64,
                seconds: 20.0,
                ..DbActivity::default()
            },
            rss: Rss {
                first_kib: 40_960,
                max_kib: 51_200,
                last_kib: 50_000,
            },
            monolith_cpu_s: 10.0,
            soak: false,
        }
    }

    #[test]
    fn commits_per_checkout_subtracts_idle() {
        let l = level(1, 100, 40.0);
        // 2000 idle commits over 20 s = 100/s.
        assert!((l.commits_per_checkout(100.0, 0.0).unwrap() - 25.0).abs() < 1e-9);
        assert!(level(1, 0, 40.0).commits_per_checkout(0.0, 0.0).is_none());
        // 1000 polls at 2 commits each take 20 commits off each of the 100 checkouts.
        let mut polled = level(1, 100, 40.0);
        polled.report.routes.insert(
            STATUS_ROUTE.to_owned(),
            Summary::from_micros(&vec![1_000; 1000]).unwrap(),
        );
        assert!((polled.commits_per_checkout(100.0, 2.0).unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn markdown_has_the_numbers_and_verdicts() {
        let suite = Suite {
            date: "2026-01-01 00:00 UTC".into(),
            git_commit: "abc1234".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".into(),
                memory_mib: 4096,
                ..Machine::default()
            },
            levels: vec![level(1, 400, 40.0), level(32, 2_400, 300.0)],
            idle: DbActivity {
                xact_commit: 500,
                seconds: 5.0,
                ..DbActivity::default()
            },
            commits_per_status_poll: 0.0,
            rss_ready_kib: 40_960,
            rss_peak_kib: 51_200,
            rss_after_kib: 45_000,
            shutdown_s: 0.4,
            shutdown_clean: true,
            limits: Limits {
                pg_commits_per_s: 900.0,
                pg_commit: Summary::from_micros(&[1_000]).unwrap(),
                js_publish_ack_per_s: 5_000.0,
                js_publish_ack: Summary::from_micros(&[200]).unwrap(),
            },
        };
        let md = markdown(&suite);
        assert!(md.contains("| CPUs (nproc) | 2 |"), "{md}");
        assert!(md.contains("Test CPU"));
        assert!(md.contains("| 900/s |"), "{md}");
        assert!(
            md.contains("c=1: checkout→approved p50 ≤ 25 ms | 18.0 ms | met"),
            "{md}"
        );
        assert!(
            md.contains("c=32: checkout→approved p99 ≤ 250 ms | 300.0 ms | **missed**"),
            "{md}"
        );
        assert!(
            md.contains("c=32: ≥ 100 checkouts/s sustained | 120.0/s | met"),
            "{md}"
        );
        assert!(md.contains("peak 50.0 MiB | met"), "{md}");
        // 2000 + 25 × 400 commits, idle 100/s over 20 s → 25 per checkout.
        assert!(md.contains("| 0.0 | 25.0 / 25.0 | 50.0 |"), "{md}");
    }
}
