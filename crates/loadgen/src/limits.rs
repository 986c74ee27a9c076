//! Raw limits of the machine the system runs on: how fast one PostgreSQL connection can commit
//! and how fast one client can publish to JetStream waiting for each ack.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};

use crate::args::LimitsArgs;
use crate::report::{Summary, micros};

/// The raw limits measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Single connection, `INSERT` in autocommit (one durable commit each).
    pub pg_commits_per_s: f64,
    pub pg_commit: Summary,
    /// One publish at a time, each awaited for its PubAck (file storage).
    pub js_publish_ack_per_s: f64,
    pub js_publish_ack: Summary,
}

/// Replaces the database of a `postgres://` URL, keeping the query string.
pub fn with_database(url: &str, database: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A scratch name: `<what>_<10 hex>`.
pub fn scratch_name(what: &str) -> String {
    format!(
        "{what}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Commits on one connection to `database_url` for `length`.
pub async fn pg_commit_rate(database_url: &str, length: Duration) -> Result<(f64, Summary)> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .context("connect to PostgreSQL")?;
    conn.execute("CREATE TABLE IF NOT EXISTS loadgen_raw_commits (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .await?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < length {
        let t = Instant::now();
        sqlx::query("INSERT INTO loadgen_raw_commits (payload) VALUES ($1)")
            .bind("raw commit")
            .execute(&mut conn)
            .await?;
        samples.push(micros(t.elapsed()));
    }
    let took = started.elapsed();
    conn.execute("DROP TABLE loadgen_raw_commits").await?;
    let _ = conn.close().await;
    let summary = Summary::from_micros(&samples).context("no commits")?;
    Ok((samples.len() as f64 / took.as_secs_f64(), summary))
}

/// Publishes with ack, one at a time, to a scratch stream for `length`; deletes the stream.
pub async fn js_publish_rate(nats_url: &str, length: Duration) -> Result<(f64, Summary)> {
    let client = async_nats::connect(nats_url)
        .await
        .context("connect to NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = scratch_name("loadgen_raw");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{stream}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create stream {stream}: {e}"))?;
    let subject = format!("{stream}.events.Tick");
    let payload = bytes::Bytes::from(vec![7u8; 256]);
    let mut samples = Vec::new();
    let started = Instant::now();
    let outcome = async {
        while started.elapsed() < length {
            let t = Instant::now();
            js.publish(subject.clone(), payload.clone())
                .await
                .map_err(|e| anyhow::anyhow!("publish: {e}"))?
                .await
                .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            samples.push(micros(t.elapsed()));
        }
        Ok::<_, anyhow::Error>(started.elapsed())
    }
    .await;
    let _ = js.delete_stream(&stream).await;
    let _ = client.drain().await;
    let took = outcome?;
    let summary = Summary::from_micros(&samples).context("no publishes")?;
    Ok((samples.len() as f64 / took.as_secs_f64(), summary))
}

/// Both limits; PostgreSQL on a scratch database created on `admin_url`'s server and dropped.
pub async fn measure(admin_url: &str, nats_url: &str, length: Duration) -> Result<Limits> {
    let database = scratch_name("loadgen_raw");
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connect to PostgreSQL")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .await?;
    let pg = pg_commit_rate(&with_database(admin_url, &database), length).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .await?;
    let (pg_commits_per_s, pg_commit) = pg?;
    let (js_publish_ack_per_s, js_publish_ack) = js_publish_rate(nats_url, length).await?;
    Ok(Limits {
        pg_commits_per_s,
        pg_commit,
        js_publish_ack_per_s,
        js_publish_ack,
    })
}

/// `loadgen limits`.
pub async fn command(args: &LimitsArgs) -> Result<()> {
    let limits = measure(&args.database_url, &args.nats_url, args.length).await?;
    println!(
        "PostgreSQL commits, one connection   {:>8.0}/s  (p50 {:.2} ms, p99 {:.2} ms)",
        limits.pg_commits_per_s, limits.pg_commit.p50_ms, limits.pg_commit.p99_ms
    );
    println!(
        "JetStream publish+ack, one at a time {:>8.0}/s  (p50 {:.2} ms, p99 {:.2} ms)",
        limits.js_publish_ack_per_s, limits.js_publish_ack.p50_ms, limits.js_publish_ack.p99_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn scratch_names_are_unique_identifiers() {
        let a = scratch_name("bench");
        assert!(a.starts_with("bench_") && a.len() == 16, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_ne!(a, scratch_name("bench"));
    }
}
