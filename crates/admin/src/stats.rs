//! `outbox` (unsent rows per schema) and `lag` (per durable consumer).

use anyhow::Context as _;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::config::{SCHEMAS, Settings};
use crate::output::{Table, human_duration, or_dash, print_json};

/// `outbox` options.
#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    /// Only these schemas (repeatable; default: every service's schema).
    #[arg(long = "schema")]
    pub schemas: Vec<String>,
}

/// `lag` options.
#[derive(Debug, clap::Args)]
pub struct LagArgs {
    /// Only this durable consumer.
    #[arg(long)]
    pub consumer: Option<String>,
}

/// One schema's outbox, or why it could not be read.
async fn outbox_of(settings: &Settings, schema: &str) -> Value {
    let database = redact(&settings.database_for(schema));
    let mut row = json!({"schema": schema, "database": database});
    let pool = match settings.pool(schema).await {
        Ok(pool) => pool,
        Err(e) => {
            row["status"] = json!("unreachable");
            row["error"] = json!(e.root_cause().to_string());
            return row;
        }
    };
    let exists: Result<Option<String>, _> =
        sqlx::query_scalar("SELECT to_regclass('outbox')::text")
            .fetch_one(&pool)
            .await;
    match exists {
        Ok(Some(_)) => {}
        Ok(None) => {
            row["status"] = json!("no outbox table");
            pool.close().await;
            return row;
        }
        Err(e) => {
            row["status"] = json!("error");
            row["error"] = json!(e.to_string());
            pool.close().await;
            return row;
        }
    }
    match persistence::outbox::backlog(&pool).await {
        Ok(backlog) => {
            row["status"] = json!("ok");
            row["unsent"] = json!(backlog.count);
            row["oldestUnsentAgeSeconds"] = json!(backlog.oldest_age.map(|a| a.as_secs_f64()));
            row["oldestUnsentAge"] = json!(backlog.oldest_age.map(human_duration));
            let failing: Result<(i64, Option<String>), _> = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE last_error IS NOT NULL),
                        (SELECT last_error FROM outbox
                         WHERE sent_at IS NULL AND last_error IS NOT NULL
                         ORDER BY seq DESC LIMIT 1)
                 FROM outbox WHERE sent_at IS NULL",
            )
            .fetch_one(&pool)
            .await;
            if let Ok((retrying, last_error)) = failing {
                row["retrying"] = json!(retrying);
                row["lastError"] = json!(last_error);
            }
        }
        Err(e) => {
            row["status"] = json!("error");
            row["error"] = json!(e.to_string());
        }
    }
    pool.close().await;
    row
}

/// A URL without its password, for display.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = user_info.split(':').next().unwrap_or_default();
            let hidden = if user_info.contains(':') { ":***" } else { "" };
            format!("{}{user}{hidden}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Runs `outbox`.
pub async fn outbox(settings: &Settings, args: OutboxArgs) -> anyhow::Result<()> {
    let schemas: Vec<String> = if args.schemas.is_empty() {
        SCHEMAS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.schemas
    };
    let rows: Vec<Value> =
        futures_util::future::join_all(schemas.iter().map(|s| outbox_of(settings, s))).await;
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r["status"].as_str(), Some("unreachable" | "error")))
        .filter_map(|r| r["schema"].as_str())
        .collect();
    print_outbox(settings, &rows);
    if !failed.is_empty() {
        anyhow::bail!("could not read the outbox of {}", failed.join(", "));
    }
    Ok(())
}

fn print_outbox(settings: &Settings, rows: &[Value]) {
    if settings.json {
        print_json(&Value::Array(rows.to_vec()));
        return;
    }
    let mut table = Table::new(&[
        "SCHEMA",
        "UNSENT",
        "OLDEST UNSENT",
        "RETRYING",
        "STATUS",
        "DATABASE",
    ]);
    for r in rows {
        let status = match r["error"].as_str() {
            Some(e) => format!("{}: {e}", r["status"].as_str().unwrap_or("error")),
            None => r["status"].as_str().unwrap_or_default().to_owned(),
        };
        table.row(vec![
            r["schema"].as_str().unwrap_or_default().to_owned(),
            r["unsent"]
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            or_dash(r["oldestUnsentAge"].as_str()),
            r["retrying"]
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            status,
            r["database"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    print!("{}", table.render());
}

/// Runs `lag`.
pub async fn lag(settings: &Settings, args: LagArgs) -> anyhow::Result<()> {
    let js = settings.jetstream().await?;
    let stream = js
        .context()
        .get_stream(js.stream_name())
        .await
        .with_context(|| format!("stream {}", js.stream_name()))?;
    // Dead letters per consumer, from the stream's per-subject counts.
    let dead_prefix = format!("{}.deadletter.", settings.nats_prefix);
    let mut dead = std::collections::BTreeMap::<String, u64>::new();
    let mut subjects = stream
        .info_with_subjects(format!("{dead_prefix}>"))
        .await
        .context("stream subject counts")?;
    while let Some(entry) = subjects.next().await {
        let (subject, n) = entry.context("stream subject counts")?;
        if let Some(durable) = subject.strip_prefix(&dead_prefix) {
            *dead.entry(durable.to_owned()).or_default() += n as u64;
        }
    }

    let mut rows = Vec::new();
    let mut consumers = stream.consumers();
    while let Some(info) = consumers.next().await {
        let info = info.context("listing consumers")?;
        if args.consumer.as_deref().is_some_and(|c| c != info.name) {
            continue;
        }
        let filter = info.config.filter_subject.clone();
        rows.push(json!({
            "consumer": info.name,
            "durable": info.config.durable_name.is_some(),
            "filter": filter,
            "pending": info.num_pending,
            "ackPending": info.num_ack_pending,
            "redelivered": info.num_redelivered,
            "waiting": info.num_waiting,
            "deadLetters": dead.get(&info.name).copied().unwrap_or(0),
        }));
    }
    if let Some(c) = &args.consumer
        && rows.is_empty()
    {
        anyhow::bail!("no consumer {c} on stream {}", js.stream_name());
    }
    rows.sort_by(|a, b| a["consumer"].as_str().cmp(&b["consumer"].as_str()));
    if settings.json {
        print_json(&Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no consumers on stream {}", js.stream_name());
        return Ok(());
    }
    let mut table = Table::new(&[
        "CONSUMER",
        "PENDING",
        "ACK PENDING",
        "REDELIVERED",
        "DEAD LETTERS",
        "FILTER",
    ]);
    for r in &rows {
        table.row(vec![
            r["consumer"].as_str().unwrap_or_default().to_owned(),
            r["pending"].to_string(),
            r["ackPending"].to_string(),
            r["redelivered"].to_string(),
            r["deadLetters"].to_string(),
            r["filter"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
