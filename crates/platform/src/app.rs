//! The host: builds a process from a [`Config`] and a list of modules, serves it, and stops it
//! gracefully.
//!
//! [`App::build`] does everything that can fail at start-up — bind the listener, connect NATS
//! and provision the stream, start each module — so a misconfigured process dies before it
//! reports ready. [`App::run_until_stopped`] serves until the given future completes, then
//! stops in order: no new HTTP connections and in-flight requests finish (while consumers and
//! query responders still run, since a request may need another module's answer), then the
//! shared token is cancelled (consumers stop fetching and settle what they hold), every
//! tracked task is awaited, and NATS is drained — all within one `SHUTDOWN_TIMEOUT` budget.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{Bus, Transport};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::module::{Module, ModuleContext};
use crate::readiness::Readiness;
use crate::{http, telemetry};

/// Connections per module pool when one process hosts several modules (the monolith): nine
/// pools of four stay well inside PostgreSQL's default 100 connections, and two cores gain
/// nothing from more concurrent transactions per module.
pub const MONOLITH_POOL_SIZE: u32 = 4;

/// Why the host could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP listener could not be bound.
    #[error("cannot bind HTTP_ADDR {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// NATS could not be reached, or the stream could not be provisioned.
    #[error(transparent)]
    Nats(#[from] messaging::Error),
    /// `DATABASE_URL` does not parse (only when `Config` was built by hand).
    #[error("invalid DATABASE_URL: {0}")]
    DatabaseUrl(String),
    /// A module's `start` failed; what had started was shut down.
    #[error("module {module} failed to start: {cause:#}")]
    Module {
        /// The module's name.
        module: &'static str,
        /// Its error, with context.
        cause: anyhow::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// Background work was still running when the shutdown budget ran out.
    #[error("shutdown did not finish within {0:?}; remaining work was abandoned")]
    ShutdownTimedOut(Duration),
}

/// A built process, ready to serve.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    jetstream: JetStream,
    bus: Bus,
    readiness: Readiness,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.local_addr)
            .field("bus", &self.bus)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Binds `HTTP_ADDR`, connects NATS (provisioning the stream), registers the `nats` and
    /// `postgres` readiness checks and starts `modules` in order, merging their routes.
    ///
    /// Panics if two modules register the same route: that is a wiring bug, found by the first
    /// start in any test.
    pub async fn build(config: Config, modules: Vec<Box<dyn Module>>) -> Result<App, Error> {
        // Before any module runs, so metrics they record at start-up are kept.
        telemetry::prometheus();

        let pg_options = PgConnectOptions::from_str(&config.database_url)
            .map_err(|e| Error::DatabaseUrl(e.to_string()))?
            .application_name("mallbots-readiness");

        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.http_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.http_addr,
            source,
        })?;

        let names: Vec<&str> = modules.iter().map(|m| m.name()).collect();
        let jetstream = JetStream::connect(JetStreamConfig {
            // Shown by the server's monitoring: which deployment, which modules.
            connection_name: format!("{}:{}", config.nats_prefix, names.join(",")),
            replicas: usize::from(config.nats_stream_replicas),
            user_password: config
                .nats_user
                .clone()
                .zip(config.nats_password.as_ref().map(|p| p.expose().to_owned())),
            credentials_file: config.nats_creds.clone(),
            tls_ca_file: config.nats_tls_ca.clone(),
            tls_client_cert: config
                .nats_tls_cert
                .clone()
                .zip(config.nats_tls_key.clone()),
            ..JetStreamConfig::new(&config.nats_url, &config.nats_prefix)
        })
        .await?;
        tracing::info!(url = %config.nats_url, prefix = %config.nats_prefix, "message stream started");
        let bus = Bus::new(Arc::new(jetstream.clone()));

        let readiness = Readiness::new();
        let transport = jetstream.clone();
        readiness.add_check("nats", move || {
            let connected = transport.is_connected();
            async move {
                if connected {
                    Ok(())
                } else {
                    Err("not connected")
                }
            }
        });
        let postgres = Arc::new(PostgresProbe::new(pg_options));
        readiness.add_check("postgres", move || {
            let probe = postgres.clone();
            async move { probe.ping().await }
        });

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut routes = Router::new();
        let mut docs = Vec::with_capacity(modules.len());
        let database_pool_size = config.database_pool_size.unwrap_or(if modules.len() > 1 {
            MONOLITH_POOL_SIZE
        } else {
            persistence::DEFAULT_POOL_SIZE
        });
        // One context, cloned per module: the modules share the bus, shutdown, tasks,
        // readiness and the outbox LISTEN connection.
        let shared = ModuleContext {
            database_pool_size,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            readiness: readiness.clone(),
            ..ModuleContext::new(bus.clone(), config.database_url.clone())
        };
        for module in modules {
            docs.push(module.openapi());
            let ctx = shared.clone();
            let started = std::time::Instant::now();
            match module.start(ctx).await {
                Ok(router) => {
                    tracing::info!(module = module.name(), elapsed = ?started.elapsed(), "module started");
                    routes = routes.merge(router);
                }
                Err(cause) => {
                    tracing::error!(
                        module = module.name(),
                        error = format!("{cause:#}"),
                        "module failed to start"
                    );
                    let budget = config.shutdown_timeout;
                    stop_background(&shutdown, &tasks, &jetstream, Instant::now() + budget).await;
                    return Err(Error::Module {
                        module: module.name(),
                        cause,
                    });
                }
            }
        }

        tasks.spawn(telemetry::run_metrics_upkeep(
            telemetry::METRICS_UPKEEP_INTERVAL,
            shutdown.clone(),
        ));
        tasks.spawn(telemetry::report_broker_metrics(
            jetstream.clone(),
            readiness.clone(),
            telemetry::BROKER_METRICS_INTERVAL,
            shutdown.clone(),
        ));
        let router = http::router(
            routes,
            readiness.clone(),
            crate::openapi::document(docs),
            config.http_request_timeout,
            config.http_body_limit,
        );
        tracing::info!(modules = ?names, "started mallbots application");
        Ok(App {
            listener,
            local_addr,
            router,
            jetstream,
            bus,
            readiness,
            shutdown,
            tasks,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address (the real port when `HTTP_ADDR` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bus the modules use (tests publish through it).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The NATS transport (tests inspect consumers through it).
    pub fn jetstream(&self) -> &JetStream {
        &self.jetstream
    }

    /// The readiness registry `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The token cancelled at shutdown; cancelling it stops the app as a signal would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `stop` completes (or something cancels the shutdown token), then shuts
    /// down gracefully within `SHUTDOWN_TIMEOUT`.
    ///
    /// Returns [`Error::ShutdownTimedOut`] if work was still running when the budget ran out:
    /// the process may exit, but the caller should know it was not clean.
    pub async fn run_until_stopped<F>(self, stop: F) -> Result<(), Error>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let App {
            listener,
            local_addr,
            router,
            jetstream,
            shutdown,
            tasks,
            shutdown_timeout,
            ..
        } = self;
        let stop_http = CancellationToken::new();
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(stop_http.clone().cancelled_owned());
        let mut server = tokio::spawn(server.into_future());
        tracing::info!(addr = %local_addr, "web server started; listening at http://{local_addr}");

        let ended_early = tokio::select! {
            () = stop => None,
            () = shutdown.cancelled() => {
                tracing::warn!("shutdown requested from inside the process");
                None
            }
            ended = &mut server => Some(ended),
        };

        tracing::info!(budget = ?shutdown_timeout, "shutting down");
        let deadline = Instant::now() + shutdown_timeout;
        stop_http.cancel();
        let http = match ended_early {
            Some(ended) => Some(ended),
            None => tokio::time::timeout_at(deadline, &mut server).await.ok(),
        };
        let result = match http {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(Error::Serve(e)),
            Some(Err(join)) => Err(Error::Serve(std::io::Error::other(join))),
            None => {
                server.abort();
                Err(Error::ShutdownTimedOut(shutdown_timeout))
            }
        };
        let clean = stop_background(&shutdown, &tasks, &jetstream, deadline).await;
        telemetry::flush_traces();
        tracing::info!("stopped");
        match result {
            Ok(()) if !clean => Err(Error::ShutdownTimedOut(shutdown_timeout)),
            other => other,
        }
    }
}

/// Cancels the token, waits for the tracked tasks until `deadline`, then drains NATS (with at
/// least a short grace, so a late drain still flushes what it can). Returns whether every task
/// finished in time.
async fn stop_background(
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    jetstream: &JetStream,
    deadline: Instant,
) -> bool {
    shutdown.cancel();
    tasks.close();
    let clean = tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_ok();
    if !clean {
        tracing::warn!(
            still_running = tasks.len(),
            "background tasks did not finish in time; abandoning them"
        );
    }
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    match tokio::time::timeout(grace, jetstream.client().drain()).await {
        Ok(Ok(())) => tracing::debug!("NATS drained"),
        Ok(Err(e)) => tracing::warn!(error = %e, "NATS drain failed"),
        Err(_) => tracing::warn!("NATS drain timed out"),
    }
    clean
}

/// `SELECT 1` on one cached connection: reconnects after a failure, and keeps probes from
/// opening a connection (a server process) each time.
struct PostgresProbe {
    options: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PostgresProbe {
    fn new(options: PgConnectOptions) -> Self {
        PostgresProbe {
            options,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn ping(&self) -> Result<(), String> {
        let mut slot = self.conn.lock().await;
        let conn = match slot.as_mut() {
            Some(conn) => conn,
            None => slot.insert(
                PgConnection::connect_with(&self.options)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        if let Err(e) = sqlx::query("SELECT 1").execute(&mut *conn).await {
            *slot = None;
            return Err(e.to_string());
        }
        Ok(())
    }
}
