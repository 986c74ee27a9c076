//! The seam between the host and the services: every service crate implements [`Module`], and
//! the host (the monolith, or a service's own binary) starts modules with a [`ModuleContext`].
//!
//! A module owns its piece of the system end to end: it connects its own database pool (its
//! schema as `search_path`), runs its migrations, starts its consumers, relays and responders
//! under the shared shutdown token and task tracker, and hands back its HTTP routes. The host
//! owns only what is shared: the NATS connection, the listener, health, metrics and shutdown.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use messaging::{Bus, ConsumerStatus, Subscription};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::readiness::Readiness;

/// How often handled-message records older than the inbox retention are deleted.
const INBOX_PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// One service, as the host sees it.
///
/// ```ignore
/// struct Baskets;
///
/// #[async_trait::async_trait]
/// impl platform::Module for Baskets {
///     fn name(&self) -> &'static str { "baskets" }
///
///     async fn start(&self, ctx: platform::ModuleContext) -> anyhow::Result<axum::Router> {
///         let pool = connect_and_migrate(&ctx.database_url, "baskets").await?;
///         ctx.readiness.add_check("postgres:baskets", { let pool = pool.clone(); move || ping(pool.clone()) });
///         ctx.subscribe(products_subscription(pool.clone())).await?;
///         Ok(routes(pool, ctx.bus.clone()))
///     }
/// }
/// ```
#[async_trait]
pub trait Module: Send + Sync {
    /// Short, stable name (`baskets`, `customers`…): used in logs, errors and durable names.
    fn name(&self) -> &'static str;

    /// Prepares the module and starts its background work; returns its routes.
    ///
    /// Called once, before the server accepts requests; modules start in the order the host
    /// lists them. An error aborts start-up (work already started is shut down). Background
    /// work must be spawned on `ctx.tasks` (or through [`ModuleContext::subscribe`] /
    /// [`ModuleContext::track`]) and must stop when `ctx.shutdown` is cancelled, finishing what
    /// it has in hand. The router carries its state (`with_state`), holds the module's routes
    /// under its own API root (e.g. `/api/baskets`) and sets no fallback: the host owns that.
    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router>;

    /// The OpenAPI paths (and their schemas) of the routes `start` returns, merged by the host
    /// into `/openapi.json`. Derive it from the handlers (`#[utoipa::path]` on each,
    /// `#[derive(utoipa::OpenApi)]` listing them). Default: nothing (a module without REST).
    fn openapi(&self) -> utoipa::openapi::OpenApi {
        crate::openapi::empty()
    }
}

/// What the host gives a module to start with. Cheap to clone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModuleContext {
    /// The message bus on the deployment's prefix.
    pub bus: Bus,
    /// The PostgreSQL URL; the module connects its own pool with its schema as `search_path`.
    pub database_url: String,
    /// Most connections of the module's pool ([`ModuleContext::open_database`]).
    pub database_pool_size: u32,
    /// Cancelled when the process shuts down: stop fetching, finish in-flight work, return.
    pub shutdown: CancellationToken,
    /// Where background tasks live; the host waits for them (bounded) at shutdown.
    pub tasks: TaskTracker,
    /// Where the module registers what must hold for the process to be ready.
    pub readiness: Readiness,
    /// The one `LISTEN` connection the outbox relays of every module share (see
    /// [`persistence::OutboxListener`] for why one).
    pub(crate) outbox_listener: persistence::OutboxListener,
}

impl ModuleContext {
    /// A context with a fresh shutdown token, task tracker and readiness registry: for hosts and
    /// for tests that start a module without the HTTP host (e.g. on the in-memory transport).
    pub fn new(bus: Bus, database_url: impl Into<String>) -> Self {
        let database_url = database_url.into();
        ModuleContext {
            bus,
            outbox_listener: persistence::OutboxListener::new(&database_url),
            database_url,
            database_pool_size: persistence::DEFAULT_POOL_SIZE,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            readiness: Readiness::new(),
        }
    }

    /// Starts a durable consumer under the shared shutdown token, registers it for readiness as
    /// `consumer:<durable>` and tracks its task so shutdown waits for its in-flight messages.
    pub async fn subscribe(
        &self,
        subscription: Subscription,
    ) -> messaging::Result<Arc<ConsumerStatus>> {
        let handle = self
            .bus
            .subscribe(subscription, self.shutdown.clone())
            .await?;
        self.readiness.add_consumer(handle.status.clone());
        self.track(handle.task);
        Ok(handle.status)
    }

    /// Makes shutdown wait for a task spawned elsewhere (e.g. the handle [`Bus::serve`] returns).
    pub fn track(&self, task: JoinHandle<()>) {
        self.tasks.spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "background task panicked");
            }
        });
    }

    /// Opens the module's database, the same way for every service: a pool whose `search_path`
    /// is `schema` (so the monolith's one database and a service's own database run the same
    /// SQL), the common tables (event store, outbox, inbox, sagas) and the module's own
    /// `migrations` (component = `schema`), the inbox pruner, the outbox relay when the module
    /// `publishes`, and a `postgres:<schema>` readiness check. Everything background stops with
    /// the shared shutdown token.
    pub async fn open_database(
        &self,
        schema: &str,
        migrations: &[persistence::Migration],
        publishes: bool,
    ) -> anyhow::Result<sqlx::PgPool> {
        use anyhow::Context as _;
        let pool = persistence::connect_sized(&self.database_url, schema, self.database_pool_size)
            .await
            .with_context(|| format!("connecting to the {schema} database"))?;
        persistence::migrate_common(&pool, schema)
            .await
            .with_context(|| format!("creating the event store, outbox and inbox of {schema}"))?;
        persistence::migrate(&pool, schema, schema, migrations)
            .await
            .with_context(|| format!("migrating the {schema} tables"))?;
        if publishes {
            let relay = persistence::OutboxRelay::new(
                pool.clone(),
                self.bus.transport().clone(),
                persistence::RelayConfig::default(),
            )
            .with_listener(self.outbox_listener.clone());
            let shutdown = self.shutdown.clone();
            self.spawn(async move { relay.run(shutdown).await });
        }
        self.spawn(persistence::inbox::run_pruner(
            pool.clone(),
            persistence::inbox::DEFAULT_RETENTION,
            INBOX_PRUNE_INTERVAL,
            self.shutdown.clone(),
        ));
        let probe = pool.clone();
        self.readiness
            .add_check(format!("postgres:{schema}"), move || {
                let pool = probe.clone();
                async move { sqlx::query("SELECT 1").execute(&pool).await.map(drop) }
            });
        Ok(pool)
    }

    /// Spawns background work on the tracker; `work` must return once `shutdown` is cancelled.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(work)
    }
}
