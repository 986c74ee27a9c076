//! PostgreSQL persistence shared by the services.
//!
//! - [`event_store`]: event-sourced aggregates with optimistic concurrency and snapshots;
//! - [`outbox`] and [`relay`]: integration messages written in the same transaction as the state
//!   change, then published with broker confirmation (a crash may duplicate, never lose);
//! - [`inbox`]: consumers record handled message ids in the handler's transaction;
//! - [`saga`]: saga instances with versioned updates and deadlines;
//! - [`migrate`](mod@migrate): a tiny migrations runner that lets several components share one
//!   schema.
//!
//! Every module lives in its own PostgreSQL schema: the monolith puts every schema in one
//! database, microservices use a database each, with the same migrations. Pools are connected
//! with `search_path` set to the module's schema ([`connect`]) and all SQL uses unqualified
//! table names. Functions that belong inside a caller's transaction take `&mut PgConnection`
//! (pass `&mut tx`); housekeeping functions take the pool.

mod error;
pub mod event_store;
pub mod inbox;
mod listener;
pub mod migrate;
pub mod outbox;
pub mod relay;
pub mod saga;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use error::{Error, Result};
pub use event_store::{Aggregate, DomainEvent, EventData, EventStore, Loaded, SnapshotPolicy};
pub use listener::OutboxListener;
pub use migrate::{Migration, migrate, migrate_common};
pub use relay::{OutboxRelay, RelayConfig, RelayStats};
pub use saga::Saga;

/// Connection options for `url` whose sessions resolve unqualified names in `schema` only.
///
/// Only that schema (plus `pg_catalog`, always searched) is on the path: a table missing from the
/// module's schema is an error rather than a silent read of `public` or another module's table.
pub fn connect_options(url: &str, schema: &str) -> Result<PgConnectOptions> {
    migrate::check_identifier(schema)?;
    let options: PgConnectOptions = url.parse()?;
    Ok(options.options([("search_path", schema)]))
}

/// How long a pooled connection must have been idle before it is checked with a ping.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connections of a pool from [`connect`]: enough for a service process of its own.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// A pool on `url` for the module that owns `schema` (see [`connect`] and [`connect_options`]),
/// with the default size.
pub async fn connect(url: &str, schema: &str) -> Result<PgPool> {
    connect_sized(url, schema, DEFAULT_POOL_SIZE).await
}

/// A pool of at most `max_connections` on `url` for the module that owns `schema`.
///
/// Bounded (5 s to acquire): a stalled database makes callers fail fast instead of queueing
/// without limit. An outbox relay uses a pooled connection while it publishes a batch; its
/// `LISTEN` connection is its [`OutboxListener`]'s own.
pub async fn connect_sized(url: &str, schema: &str, max_connections: u32) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every idle connection before handing it out: one more round trip per
        // transaction, on every hop of every message. Ping only connections idle long enough
        // to have been cut (a server restart, a network drop); a busy pool reuses its
        // connections within milliseconds and skips it.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        // Idle connections go back to the server: the monolith holds nine of these pools, and
        // PostgreSQL's default limit is 100 connections for every process on the machine.
        .min_connections(0)
        .idle_timeout(Duration::from_secs(30))
        .connect_with(connect_options(url, schema)?)
        .await?;
    Ok(pool)
}

/// Runs a housekeeping `DELETE` (binding `$1` = `retention` in seconds, `$2` = the chunk size)
/// until a chunk comes back short; returns the rows deleted. Chunks keep each statement's locks
/// and WAL small; `SKIP LOCKED` in the statement lets instances prune side by side.
pub(crate) async fn delete_in_chunks(
    pool: &PgPool,
    sql: &'static str,
    retention: Duration,
) -> Result<u64> {
    const CHUNK: i64 = 5000;
    let mut total = 0;
    loop {
        let deleted = sqlx::query(sql)
            .bind(retention.as_secs_f64())
            .bind(CHUNK)
            .execute(pool)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < CHUNK as u64 {
            return Ok(total);
        }
    }
}
