//! Command line: the load run (default), the raw limits and the `make bench` suite, with the
//! validation that turns flags into a [`RunPlan`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

/// Requested run length when neither `--duration` nor `--count` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// Load generator for the MallBots REST API.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Raw limits of the machine: PostgreSQL single-connection commit rate and JetStream
    /// publish-with-ack rate.
    Limits(LimitsArgs),
    /// The `make bench` suite: starts the monolith on a fresh database and prefix, runs the
    /// load at several concurrencies, measures the raw limits and writes BENCHMARKS.md.
    BenchSuite(SuiteArgs),
}

/// One load run against a running system.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Base URL of the system (only loopback unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Allow a URL that is not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// Concurrent shoppers.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    /// How long shoppers start new orders (e.g. 20s, 500ms, 2m); default 30s without --count.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How many checkouts in total (the run stops at whichever of --duration/--count comes first).
    #[arg(long)]
    pub count: Option<u64>,
    /// Safety cap on the whole run, setup and final wait included.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Stores set up before the run.
    #[arg(long, default_value_t = 4)]
    pub stores: usize,
    /// Products per store.
    #[arg(long, default_value_t = 5)]
    pub products: usize,
    /// Customers registered before the run.
    #[arg(long, default_value_t = 50)]
    pub customers: usize,
    /// Follow each order through depot assign/complete and invoice payment to `completed`.
    #[arg(long)]
    pub fulfil: bool,
    /// Shortest interval between order status polls. A client waiting for an order polls
    /// every twentieth of the time it has waited so far, between this and --poll-max: the
    /// measured checkout→approved time is then at most ~5 % (or --poll-interval) late, and
    /// slow orders are not hammered with polls that load the system under test.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Longest interval between order status polls.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub poll_max: Duration,
    /// How long one order may take to finish after its checkout (also the final wait).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub order_timeout: Duration,
    /// Timeout of one HTTP request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Raw limits.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// PostgreSQL server (a scratch database is created on it and dropped).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// NATS server (a scratch stream is created and deleted).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// Length of each measurement.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub length: Duration,
}

/// The bench suite.
#[derive(Debug, Clone, Args)]
pub struct SuiteArgs {
    /// PostgreSQL server; the monolith gets a fresh database on it.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// NATS server; the monolith gets a unique prefix.
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// The monolith binary.
    #[arg(long, default_value = "target/release/mallbots")]
    pub mallbots_bin: PathBuf,
    /// Concurrency levels, comma separated.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    pub levels: Vec<usize>,
    /// Length of each level's run.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub run_length: Duration,
    /// Length of the extra run with --fulfil (0s: none).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub fulfil_length: Duration,
    /// Concurrency of the --fulfil run.
    #[arg(long, default_value_t = 8)]
    pub fulfil_concurrency: usize,
    /// Length of the last run, which checks that resident memory does not grow (0s: none).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub soak_length: Duration,
    /// Concurrency of the soak run.
    #[arg(long, default_value_t = 8)]
    pub soak_concurrency: usize,
    /// Markdown output.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Directory for the JSON reports and the monolith's log.
    #[arg(long, default_value = "target/loadgen")]
    pub work_dir: PathBuf,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// A validated load run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Base URL without a trailing slash.
    pub base: String,
    pub concurrency: usize,
    /// When shoppers stop starting orders (None: only --count / --max-duration stop them).
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub max_duration: Duration,
    pub stores: usize,
    pub products: usize,
    pub customers: usize,
    pub fulfil: bool,
    pub poll_interval: Duration,
    pub poll_max: Duration,
    pub order_timeout: Duration,
    pub request_timeout: Duration,
    pub json_out: Option<PathBuf>,
    pub progress: bool,
}

impl RunArgs {
    /// Checks the flags; every refusal names the flag.
    pub fn validate(&self) -> Result<RunPlan> {
        let base = check_url(&self.url, self.allow_remote)?;
        if self.concurrency == 0 || self.concurrency > 1024 {
            bail!("--concurrency must be between 1 and 1024");
        }
        if self.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            bail!("--duration must be positive");
        }
        if self.max_duration.is_zero() {
            bail!("--max-duration must be positive");
        }
        if let Some(d) = self.duration
            && d > self.max_duration
        {
            bail!(
                "--duration ({d:?}) exceeds --max-duration ({:?})",
                self.max_duration
            );
        }
        if self.stores == 0 || self.products == 0 || self.customers == 0 {
            bail!("--stores, --products and --customers must each be at least 1");
        }
        if self.poll_interval < Duration::from_millis(1) {
            bail!("--poll-interval must be at least 1ms");
        }
        if self.poll_max < self.poll_interval {
            bail!("--poll-max must be at least --poll-interval");
        }
        if self.order_timeout.is_zero() || self.request_timeout.is_zero() {
            bail!("--order-timeout and --request-timeout must be positive");
        }
        let duration = match (self.duration, self.count) {
            (None, None) => Some(DEFAULT_DURATION.min(self.max_duration)),
            (d, _) => d,
        };
        Ok(RunPlan {
            base,
            concurrency: self.concurrency,
            duration,
            count: self.count,
            max_duration: self.max_duration,
            stores: self.stores,
            products: self.products,
            customers: self.customers,
            fulfil: self.fulfil,
            poll_interval: self.poll_interval,
            poll_max: self.poll_max,
            order_timeout: self.order_timeout,
            request_timeout: self.request_timeout,
            json_out: self.json_out.clone(),
            progress: !self.quiet,
        })
    }
}

/// Validates the target URL: http(s), a host, loopback unless `allow_remote`. Returns it
/// without a trailing slash.
pub fn check_url(url: &str, allow_remote: bool) -> Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url {url:?}: only http and https are supported");
    }
    let Some(host) = parsed.host_str() else {
        bail!("--url {url:?}: no host");
    };
    if !allow_remote && !is_loopback_host(host) {
        bail!(
            "--url {url:?} is not a loopback address; pass --allow-remote to load another machine"
        );
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
    }
    let lower = bare.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

/// `250ms`, `20s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 20s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Cli {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("100000h").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "[::1]",
            "::1",
            "a.localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "example.com",
            "0.0.0.0",
            "[2001:db8::1]",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn remote_urls_are_refused_unless_allowed() {
        assert_eq!(
            check_url("http://127.0.0.1:8080/", false).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("http://[::1]:8080", false).is_ok());
        let refused = check_url("http://shop.example.com:8080", false).unwrap_err();
        assert!(refused.to_string().contains("--allow-remote"), "{refused}");
        assert!(check_url("http://shop.example.com:8080", true).is_ok());
        assert!(check_url("ftp://127.0.0.1", false).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn defaults_validate() {
        let cli = args(&[]);
        assert!(cli.command.is_none());
        let plan = cli.run.validate().unwrap();
        assert_eq!(plan.base, "http://127.0.0.1:8080");
        assert_eq!(plan.concurrency, 8);
        assert_eq!(plan.duration, Some(DEFAULT_DURATION));
        assert_eq!(plan.count, None);
        assert_eq!(plan.poll_interval, Duration::from_millis(2));
        assert_eq!(plan.poll_max, Duration::from_millis(20));
        assert!(!plan.fulfil);
        assert!(plan.progress);
    }

    #[test]
    fn count_alone_has_no_duration() {
        let plan = args(&["--count", "100", "-c", "4", "--fulfil", "--quiet"])
            .run
            .validate()
            .unwrap();
        assert_eq!(plan.count, Some(100));
        assert_eq!(plan.duration, None);
        assert_eq!(plan.concurrency, 4);
        assert!(plan.fulfil);
        assert!(!plan.progress);
    }

    #[test]
    fn bad_flags_are_refused() {
        let refuse = |extra: &[&str], needle: &str| {
            let err = args(extra).run.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        };
        refuse(&["-c", "0"], "--concurrency");
        refuse(&["-c", "5000"], "--concurrency");
        refuse(&["--count", "0"], "--count");
        refuse(&["--duration", "0s"], "--duration");
        refuse(
            &["--duration", "10m", "--max-duration", "1m"],
            "--max-duration",
        );
        refuse(&["--stores", "0"], "--stores");
        refuse(&["--poll-interval", "0ms"], "--poll-interval");
        refuse(&["--poll-interval", "30ms"], "--poll-max");
        refuse(&["--url", "http://192.0.2.1:8080"], "--allow-remote");
        assert!(Cli::try_parse_from(["loadgen", "--duration", "soon"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = args(&["bench-suite", "--levels", "1,4", "--run-length", "5s"]);
        match cli.command {
            Some(Command::BenchSuite(s)) => {
                assert_eq!(s.levels, vec![1, 4]);
                assert_eq!(s.run_length, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            args(&["limits", "--length", "1s"]).command,
            Some(Command::Limits(_))
        ));
    }
}
