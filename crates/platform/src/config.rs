//! Process configuration: one typed struct read from CLI flags and environment variables, with
//! the defaults written here, validated before anything starts.
//!
//! Every setting is a flag (`--http-addr`) and an environment variable (`HTTP_ADDR`); the flag
//! wins. A bad value stops the process with clap's usage error (exit code 2) naming the setting,
//! before any connection is attempted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// Default `HTTP_BODY_LIMIT`: the API's bodies are a few hundred bytes, a large order a few KiB.
pub const DEFAULT_HTTP_BODY_LIMIT: &str = "64KiB";

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

    /// NATS user name, with `NATS_PASSWORD`: the server's authorization config decides which
    /// subjects it may use (each service has its own user, see `mallbots-admin nats-config`).
    #[arg(
        long,
        env = "NATS_USER",
        requires = "nats_password",
        conflicts_with = "nats_creds"
    )]
    pub nats_user: Option<String>,

    /// Password of `NATS_USER`.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user",
        value_parser = parse_secret
    )]
    pub nats_password: Option<Secret>,

    /// NATS credentials file (user JWT and nkey seed, `.creds`), instead of a user and password.
    #[arg(long, env = "NATS_CREDS", value_parser = parse_readable_file)]
    pub nats_creds: Option<PathBuf>,

    /// PEM file of the CA certificate(s) the NATS server's certificate must chain to (besides
    /// the system's roots); setting it requires TLS.
    #[arg(long, env = "NATS_TLS_CA", value_parser = parse_readable_file)]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for a NATS server that verifies clients; needs `NATS_TLS_KEY`.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key", value_parser = parse_readable_file)]
    pub nats_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `NATS_TLS_CERT`.
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert", value_parser = parse_readable_file)]
    pub nats_tls_key: Option<PathBuf>,

    /// PostgreSQL URL. Each module connects with its own schema; `/readyz` checks this server.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_parser = parse_database_url
    )]
    pub database_url: String,

    /// Most connections each module's pool opens (the monolith has one pool per module, all
    /// on one server whose `max_connections` is shared by every process). Default: 10 for a
    /// process hosting one module, 4 per module when it hosts several. The process opens one
    /// more, shared by its outbox relays, for `LISTEN`.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub database_pool_size: Option<u32>,

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

    /// Largest request body accepted (`65536`, `64KiB`, `1MiB`); a larger one is answered with
    /// 413 before any handler reads it.
    #[arg(long, env = "HTTP_BODY_LIMIT", default_value = DEFAULT_HTTP_BODY_LIMIT, value_parser = parse_size)]
    pub http_body_limit: usize,

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
            nats_user: None,
            nats_password: None,
            nats_creds: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_pool_size: None,
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("default address is valid"),
            nats_prefix: DEFAULT_NATS_PREFIX.to_owned(),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_format: LogFormat::Pretty,
            shutdown_timeout: duration(DEFAULT_SHUTDOWN_TIMEOUT),
            http_request_timeout: duration(DEFAULT_HTTP_REQUEST_TIMEOUT),
            http_body_limit: parse_size(DEFAULT_HTTP_BODY_LIMIT).expect("default size is valid"),
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

/// A value that must not end up in logs: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (the connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
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

fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() {
        return Err("empty password".to_owned());
    }
    Ok(Secret::new(s))
}

/// The file must exist now: a typo should stop the process here, not at the first reconnect.
fn parse_readable_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s.trim());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
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

/// Parses a byte count: `65536`, `64KiB`, `1MiB` (also `KB`/`MB`, meaning the same powers of
/// two, as people usually do for limits). Zero is refused: it would reject every body.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let invalid = || format!("`{s}` is not a size (e.g. 65536, 64KiB, 1MiB)");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let value: usize = s[..digits].parse().map_err(|_| invalid())?;
    let unit: usize = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        _ => return Err(invalid()),
    };
    match value.checked_mul(unit) {
        Some(0) => Err("the limit must be above zero".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(invalid()),
    }
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
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size(" 2 KB "), Ok(2048));
        assert_eq!(Config::default().http_body_limit, 64 * 1024);
        for bad in [
            "",
            "0",
            "KiB",
            "-1",
            "1.5MiB",
            "1GiB",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let err = load(&["--http-body-limit", "big"]).unwrap_err().to_string();
        assert!(err.contains("HTTP_BODY_LIMIT"), "{err}");
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
            ("--nats-creds", "/nonexistent/x.creds", "NATS_CREDS"),
            ("--nats-tls-ca", "/nonexistent/ca.pem", "NATS_TLS_CA"),
            ("--nats-password", "", "NATS_PASSWORD"),
        ] {
            let err = load(&[flag, value]).expect_err(value).to_string();
            assert!(err.contains(name), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn nats_credentials_come_in_pairs_and_stay_out_of_debug_output() {
        let config = load(&["--nats-user", "stores", "--nats-password", "s3cret"]).unwrap();
        assert_eq!(config.nats_user.as_deref(), Some("stores"));
        assert_eq!(
            config.nats_password.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));

        let err = load(&["--nats-user", "stores"]).unwrap_err().to_string();
        assert!(err.contains("NATS_PASSWORD"), "{err}");
        let err = load(&["--nats-password", "x"]).unwrap_err().to_string();
        assert!(err.contains("NATS_USER"), "{err}");

        let creds = tempfile_path();
        std::fs::write(&creds, "not checked until connecting").unwrap();
        let config = load(&["--nats-creds", creds.to_str().unwrap()]).unwrap();
        assert_eq!(config.nats_creds.as_deref(), Some(creds.as_path()));
        let err = load(&[
            "--nats-creds",
            creds.to_str().unwrap(),
            "--nats-user",
            "a",
            "--nats-password",
            "b",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("NATS_CREDS") || err.contains("nats-creds"),
            "{err}"
        );
        // A client certificate needs its key.
        let err = load(&["--nats-tls-cert", creds.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NATS_TLS_KEY"), "{err}");
        let _ = std::fs::remove_file(creds);
    }

    fn tempfile_path() -> PathBuf {
        std::env::temp_dir().join(format!(
            "platform-config-{}-{:?}.creds",
            std::process::id(),
            std::thread::current().id()
        ))
    }
}
