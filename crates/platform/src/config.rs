//! Process configuration: one typed struct read from CLI flags and environment variables, with
//! the defaults written here, validated before anything starts.
//!
//! Every setting is a flag (`--http-addr`) and an environment variable (`HTTP_ADDR`); the flag
//! wins. A bad value stops the process with clap's usage error (exit code 2) naming the setting,
//! before any connection is attempted.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Default `NATS_URL`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default `DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default `HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// Default `NATS_PREFIX`.
pub const DEFAULT_NATS_PREFIX: &str = "mallbots";
/// Default `LOG_LEVEL`.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default `SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";
/// Default `HTTP_REQUEST_TIMEOUT`.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: &str = "30s";

/// Settings shared by the monolith and every service binary.
///
/// Service binaries that need more settings embed this with `#[command(flatten)]`; tests build
/// it as `Config { http_addr: .., ..Config::default() }` so nothing reads the environment.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(about = "A MallBots process", long_about = None)]
pub struct Config {
    /// NATS server URL(s), comma separated (`nats://host:4222`, `tls://…` or `host:port`).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL, value_parser = parse_nats_url)]
    pub nats_url: String,

    /// PostgreSQL URL. Each module connects with its own schema; `/readyz` checks this server.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_parser = parse_database_url
    )]
    pub database_url: String,

    /// Address the HTTP server binds (REST API, health, metrics); port 0 picks a free port.
    #[arg(long, env = "HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR, value_parser = parse_http_addr)]
    pub http_addr: SocketAddr,

    /// Subject prefix and stream of this deployment; deployments with different prefixes share
    /// a NATS server without seeing each other's messages.
    #[arg(long, env = "NATS_PREFIX", default_value = DEFAULT_NATS_PREFIX, value_parser = parse_nats_prefix)]
    pub nats_prefix: String,

    /// Log filter: a level (`trace`…`error`) or `tracing` directives (`info,sqlx=warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = DEFAULT_LOG_LEVEL, value_parser = parse_log_level)]
    pub log_level: String,

    /// Log line format: `json` for machines, `pretty` for people.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Budget for a graceful shutdown (stop HTTP, finish in-flight messages, flush NATS), e.g.
    /// `30s`, `1m30s`, `500ms`; a bare number means seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest an HTTP request may run before it is answered with 503.
    #[arg(
        long,
        env = "HTTP_REQUEST_TIMEOUT",
        default_value = DEFAULT_HTTP_REQUEST_TIMEOUT,
        value_parser = parse_duration
    )]
    pub http_request_timeout: Duration,

    /// OTLP/gRPC endpoint for trace export; unset means no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// Replicas of the JetStream stream when this process creates it (3 on a three-node cluster).
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_stream_replicas: u8,

    /// Which of the binary's modules to run, comma separated (default: all). Meant for the
    /// monolith, e.g. to run it without one service whose copy runs elsewhere.
    #[arg(long, env = "MALLBOTS_MODULES", value_delimiter = ',')]
    pub modules: Option<Vec<String>>,
}

impl Default for Config {
    /// The documented defaults, without reading flags or the environment.
    fn default() -> Self {
        let duration = |s| parse_duration(s).expect("default duration is valid");
        Config {
            nats_url: DEFAULT_NATS_URL.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("default address is valid"),
            nats_prefix: DEFAULT_NATS_PREFIX.to_owned(),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_format: LogFormat::Pretty,
            shutdown_timeout: duration(DEFAULT_SHUTDOWN_TIMEOUT),
            http_request_timeout: duration(DEFAULT_HTTP_REQUEST_TIMEOUT),
            otel_exporter_otlp_endpoint: None,
            nats_stream_replicas: 1,
            modules: None,
        }
    }
}

impl Config {
    /// Reads flags and environment for the binary `name`; on a bad value or `--help` prints
    /// clap's message and exits (code 2 for errors, 0 for help), as a binary should.
    pub fn load(name: &'static str, about: &'static str) -> Self {
        Self::try_load_from(name, about, std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Like [`Config::load`] but from the given arguments, returning clap's error (tests).
    pub fn try_load_from<I, T>(
        name: &'static str,
        about: &'static str,
        args: I,
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command().name(name).bin_name(name).about(about);
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (production, log shippers).
    Json,
    /// Human-readable lines (development).
    Pretty,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        })
    }
}

fn parse_http_addr(s: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(s.trim())
        .map_err(|_| "expected IP:PORT, e.g. 0.0.0.0:8080 or 127.0.0.1:0".to_owned())
}

/// Accepts what async-nats accepts for one server: `[scheme://][user[:pass]@]host[:port]`.
fn parse_nats_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty URL".to_owned());
    }
    for server in s.split(',') {
        let server = server.trim();
        let rest = match server.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return Err(format!(
                        "unsupported scheme `{scheme}` in `{server}` (nats, tls, ws, wss)"
                    ));
                }
                rest
            }
            None => server,
        };
        let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host_port = host_port.split('/').next().unwrap_or_default();
        let (host, port) = match host_port.strip_prefix('[') {
            // An IPv6 literal: `[::1]:4222`.
            Some(v6) => {
                let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
                (host, after.strip_prefix(':'))
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("missing or invalid host in `{server}`"));
        }
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(format!("invalid port `{port}` in `{server}`"));
        }
    }
    Ok(s.to_owned())
}

fn parse_database_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err("expected postgres://user[:password]@host[:port]/database".to_owned());
    }
    sqlx::postgres::PgConnectOptions::from_str(s)
        .map_err(|e| format!("not a PostgreSQL URL (postgres://user@host:5432/db): {e}"))?;
    Ok(s.to_owned())
}

/// A prefix is one or more subject tokens: it starts every subject and names the stream.
fn parse_nats_prefix(s: &str) -> Result<String, String> {
    let valid_token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if s.split('.').all(valid_token) {
        Ok(s.to_owned())
    } else {
        Err(
            "expected dot-separated tokens of letters, digits, `-` and `_` (e.g. mallbots)"
                .to_owned(),
        )
    }
}

fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map_err(|e| {
            format!("expected a level (trace, debug, info, warn, error) or directives: {e}")
        })?;
    Ok(s.to_owned())
}

/// Parses `30s`, `1m30s`, `500ms`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let invalid = || format!("`{s}` is not a duration (e.g. 30s, 1m30s, 500ms)");
    if s.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let value: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(value * unit).map_err(|_| invalid())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Config::try_load_from("test", "test", argv)
    }

    #[test]
    fn durations_parse_in_go_style() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let defaults = Config::default();
        assert_eq!(defaults.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(defaults.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(defaults.nats_prefix, "mallbots");
        assert_eq!(defaults.log_format, LogFormat::Pretty);
    }

    #[test]
    fn flags_override_and_values_are_validated() {
        let config = load(&[
            "--http-addr",
            "127.0.0.1:0",
            "--nats-prefix",
            "t_1.x-y",
            "--nats-url",
            "nats://a:4222, b:4223",
            "--log-level",
            "INFO,sqlx=warn",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(config.http_addr.port(), 0);
        assert_eq!(config.log_format, LogFormat::Json);

        for (flag, value, name) in [
            ("--http-addr", "localhost", "HTTP_ADDR"),
            ("--nats-prefix", "a b", "NATS_PREFIX"),
            ("--nats-prefix", "a.>", "NATS_PREFIX"),
            ("--nats-url", "http://x:1", "NATS_URL"),
            ("--nats-url", "nats://x:99999", "NATS_URL"),
            ("--database-url", "mysql://x", "DATABASE_URL"),
            ("--log-level", "info,=x=y", "LOG_LEVEL"),
            ("--log-format", "xml", "LOG_FORMAT"),
            ("--shutdown-timeout", "soon", "SHUTDOWN_TIMEOUT"),
        ] {
            let err = load(&[flag, value]).expect_err(value).to_string();
            assert!(err.contains(name), "{flag} {value}: {err}");
        }
    }
}
