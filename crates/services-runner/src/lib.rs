//! Runs MallBots as separate processes: one per service instance, each with a database of its
//! own (created if missing, migrated by the service at start), all on one NATS prefix, behind
//! one HTTP entry point that serves the same routes as the monolith. Services find each other
//! only through NATS subjects; the entry point is the only thing that knows their addresses.

pub mod proxy;
pub mod supervisor;
pub mod topology;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection};

use crate::supervisor::{ChildEnv, Supervisor};
use crate::topology::{SERVICES, Service};

/// The runner's settings: the platform's (same names, same defaults) plus its own.
#[derive(Debug, Clone, clap::Parser)]
pub struct RunnerConfig {
    /// Shared settings; DATABASE_URL names the server: each service gets database
    /// `<DATABASE_PREFIX><service>` on it.
    #[command(flatten)]
    pub platform: platform::Config,

    /// Copies per service, e.g. `baskets=2,order-saga=2` (default one of each).
    #[arg(long, env = "SERVICE_REPLICAS", default_value = "", value_parser = parse_replicas)]
    pub replicas: Replicas,

    /// Which services to run, comma separated service or binary names (default: all).
    #[arg(long, env = "SERVICES", value_delimiter = ',')]
    pub services: Option<Vec<String>>,

    /// Prefix of the per-service database names (tests use a unique one).
    #[arg(long, env = "DATABASE_PREFIX", default_value = "")]
    pub database_prefix: String,

    /// Directory holding the service binaries (default: the runner's own directory).
    #[arg(long, env = "SERVICES_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Copies per service name.
#[derive(Debug, Clone, Default)]
pub struct Replicas(pub HashMap<&'static str, usize>);

fn parse_replicas(text: &str) -> Result<Replicas, String> {
    let mut out = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, count) = pair
            .split_once('=')
            .ok_or_else(|| format!("invalid replica pair {pair:?} (want name=count)"))?;
        let service =
            topology::find(name.trim()).ok_or_else(|| format!("unknown service {name:?}"))?;
        let count: usize = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1 && *n <= 16)
            .ok_or_else(|| format!("invalid replica count in {pair:?} (1 to 16)"))?;
        out.insert(service.name, count);
    }
    Ok(Replicas(out))
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| i + authority_start);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Environment variable naming a directory of per-service NATS credentials files
/// (`<dir>/<service>.creds`).
pub const NATS_CREDS_DIR: &str = "NATS_CREDS_DIR";

/// The NATS credentials `service`'s processes get instead of the runner's own (which they
/// inherit otherwise), from the runner's environment as `lookup` reads it:
/// `NATS_PASSWORD_<SERVICE>` (e.g. `NATS_PASSWORD_COSEC`) makes it connect as the user named
/// after the service, as in the generated NATS config (`mallbots-admin nats-config`); else a
/// `<NATS_CREDS_DIR>/<service>.creds` file is its credentials file. `None`: nothing of its own.
/// The returned changes set (`Some`) or remove (`None`) variables, so inherited credentials of
/// the other kind cannot conflict.
pub fn nats_credentials(
    service: &Service,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<Vec<(String, Option<String>)>> {
    let set = |k: &str, v: String| (k.to_owned(), Some(v));
    let unset = |k: &str| (k.to_owned(), None);
    if let Some(password) = lookup(&contracts::topology::password_var(service.name)) {
        return Some(vec![
            set("NATS_USER", service.name.to_owned()),
            set("NATS_PASSWORD", password),
            unset("NATS_CREDS"),
        ]);
    }
    let creds = PathBuf::from(lookup(NATS_CREDS_DIR)?).join(format!("{}.creds", service.name));
    creds.is_file().then(|| {
        vec![
            set("NATS_CREDS", creds.display().to_string()),
            unset("NATS_USER"),
            unset("NATS_PASSWORD"),
        ]
    })
}

/// A port for an instance, free now and chosen where nothing else is likely to take it before
/// the instance binds it: below the kernel's ephemeral range, from which every "port 0" bind
/// (another runner's entry point, a test's server) and every outgoing connection draw theirs.
/// A port picked with `bind(0)` went back to that pool until the child bound it, and once
/// another process got it first: the instance could not start, and the readiness probe and
/// the proxy reached that other process instead.
fn free_local_addr() -> anyhow::Result<SocketAddr> {
    let ephemeral_low = ephemeral_low();
    let low = ephemeral_low.saturating_sub(EPHEMERAL_GAP).max(1024);
    let span = u64::from(ephemeral_low.saturating_sub(low));
    if span > 0 {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        for attempt in 0..64u64 {
            let port = low + ((seed.wrapping_add(attempt.wrapping_mul(7919))) % span) as u16;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok(listener.local_addr()?);
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?)
}

/// How many ports below the ephemeral range instances are placed in.
const EPHEMERAL_GAP: u16 = 12_000;

/// Where the kernel's ephemeral port range starts (Linux's default where it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(admin_url).await.with_context(|| {
        format!("connect to PostgreSQL (DATABASE_URL) to create database {name}")
    })?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', ""));
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await
        {
            // Another runner may have created it between the check and here.
            let raced: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .fetch_optional(&mut conn)
                    .await?;
            if raced.is_none() {
                return Err(e).with_context(|| format!("create database {name}"));
            }
        }
    }
    Ok(())
}

/// The running system: the supervised processes and the entry point's listener.
#[derive(Debug)]
pub struct Runner {
    supervisor: Supervisor,
    listener: tokio::net::TcpListener,
    shutdown_timeout: Duration,
}

impl Runner {
    /// Creates the databases, starts every instance and binds the entry point.
    pub async fn start(config: RunnerConfig) -> anyhow::Result<Runner> {
        let platform = &config.platform;
        let bin_dir = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .context("the runner's directory")?,
        };
        for service in SERVICES {
            if !bin_dir.join(service.binary).exists() {
                bail!(
                    "service binary {} not found in {} (run `cargo build --bins` or set SERVICES_BIN_DIR)",
                    service.binary,
                    bin_dir.display()
                );
            }
        }
        let listener = tokio::net::TcpListener::bind(platform.http_addr)
            .await
            .with_context(|| format!("cannot bind HTTP_ADDR {}", platform.http_addr))?;
        let mut selected: Vec<&'static Service> = SERVICES.iter().collect();
        if let Some(names) = &config.services {
            for name in names {
                if topology::find(name.trim()).is_none() {
                    bail!("SERVICES names unknown service {name:?}");
                }
            }
            selected.retain(|s| names.iter().any(|n| topology::find(n.trim()) == Some(*s)));
        }
        let mut plan: Vec<(&'static Service, usize, SocketAddr, String)> = Vec::new();
        for service in selected {
            let database = format!("{}{}", config.database_prefix, service.name);
            ensure_database(&platform.database_url, &database).await?;
            let url = with_database(&platform.database_url, &database);
            let copies = config.replicas.0.get(service.name).copied().unwrap_or(1);
            for copy in 1..=copies {
                plan.push((service, copy, free_local_addr()?, url.clone()));
            }
        }
        let vars = vec![
            ("NATS_URL".to_owned(), platform.nats_url.clone()),
            ("NATS_PREFIX".to_owned(), platform.nats_prefix.clone()),
            (
                "NATS_STREAM_REPLICAS".to_owned(),
                platform.nats_stream_replicas.to_string(),
            ),
            ("LOG_LEVEL".to_owned(), platform.log_level.clone()),
            ("LOG_FORMAT".to_owned(), platform.log_format.to_string()),
            (
                "SHUTDOWN_TIMEOUT".to_owned(),
                format!("{}ms", platform.shutdown_timeout.as_millis()),
            ),
        ];
        let mut service_vars = HashMap::new();
        for (service, ..) in &plan {
            let lookup = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
            if let Some(vars) = nats_credentials(service, lookup) {
                service_vars.insert(service.name, vars);
            }
        }
        let supervisor = Supervisor::start(
            plan,
            ChildEnv {
                bin_dir,
                vars,
                service_vars,
            },
        );
        Ok(Runner {
            supervisor,
            listener,
            shutdown_timeout: platform.shutdown_timeout,
        })
    }

    /// The entry point's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The running instances.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Serves the entry point until `stop` completes, then stops every service (SIGTERM, then
    /// SIGKILL after the shutdown budget).
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let proxy = proxy::Proxy::new(self.supervisor.instances().to_vec());
        tracing::info!(addr = %self.listener.local_addr()?, "entry point listening");
        let served = axum::serve(self.listener, proxy.router())
            .with_graceful_shutdown(stop)
            .await;
        self.supervisor.stop(self.shutdown_timeout).await;
        served.context("entry point failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ports_are_free_and_outside_the_ephemeral_range() {
        let low = ephemeral_low();
        let addrs: Vec<SocketAddr> = (0..20).map(|_| free_local_addr().unwrap()).collect();
        for addr in &addrs {
            assert!(
                addr.port() < low,
                "{addr} is in the ephemeral range from {low}"
            );
            // Still free: the instance can bind it.
            TcpListener::bind(addr).unwrap();
        }
        // Spread over the range, not one port over and over.
        let distinct: std::collections::HashSet<u16> = addrs.iter().map(|a| a.port()).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn replicas_parse_by_service_or_binary_name() {
        let r = parse_replicas("baskets=2, order-saga=3").unwrap();
        assert_eq!(r.0.get("baskets"), Some(&2));
        assert_eq!(r.0.get("cosec"), Some(&3));
        assert!(parse_replicas("nope=2").is_err());
        assert!(parse_replicas("baskets=0").is_err());
        assert!(parse_replicas("baskets").is_err());
        assert!(parse_replicas("").unwrap().0.is_empty());
    }

    #[test]
    fn a_service_gets_its_own_nats_user_when_its_password_is_set() {
        let saga = topology::find("order-saga").unwrap();
        let env = |key: &str| (key == "NATS_PASSWORD_COSEC").then(|| "pw-cosec".to_owned());
        let vars = nats_credentials(saga, env).expect("credentials for cosec");
        assert!(vars.contains(&("NATS_USER".to_owned(), Some("cosec".to_owned()))));
        assert!(vars.contains(&("NATS_PASSWORD".to_owned(), Some("pw-cosec".to_owned()))));
        assert!(vars.contains(&("NATS_CREDS".to_owned(), None)));
        // Nothing configured: the default stays (inherited settings, no auth).
        assert!(nats_credentials(topology::find("stores").unwrap(), env).is_none());

        let dir = std::env::temp_dir().join(format!("runner-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stores.creds"), "creds").unwrap();
        let in_dir = |key: &str| (key == NATS_CREDS_DIR).then(|| dir.display().to_string());
        let vars = nats_credentials(topology::find("stores").unwrap(), in_dir).unwrap();
        assert_eq!(
            vars[0],
            (
                "NATS_CREDS".to_owned(),
                Some(dir.join("stores.creds").display().to_string())
            )
        );
        assert!(nats_credentials(topology::find("depot").unwrap(), in_dir).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "stores"),
            "postgres://u@h:5432/stores"
        );
        assert_eq!(
            with_database("postgres://h/x?sslmode=disable", "y"),
            "postgres://h/y?sslmode=disable"
        );
    }
}
