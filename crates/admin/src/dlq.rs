//! Dead letters: the copies a consumer gave up on, kept in the stream under
//! `<prefix>.deadletter.<durable>` with the original headers plus `Dead-Letter-*`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use messaging::header;
use messaging::jetstream::JetStream;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::known;
use crate::output::{Table, base64, clip, hex, or_dash, print_json};

/// `dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first: sequence, original id, name, consumer, reason, attempts, when.
    List {
        /// Only this durable consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter: every header and the payload (hex, base64, decoded when known).
    Show {
        /// Its stream sequence.
        seq: u64,
    },
    /// Republishes dead letters to their original subject with a fresh `Nats-Msg-Id`, then
    /// deletes each from the stream once the broker confirmed the republish.
    Replay {
        /// The stream sequence of one dead letter.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seq: Option<u64>,
        /// Every dead letter (of `--consumer`, if given).
        #[arg(long)]
        all: bool,
        /// Only this durable consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many republishes per second.
        #[arg(long, default_value_t = 10.0, value_parser = parse_rate)]
        rate: f64,
        /// Keep the original `Nats-Msg-Id` (consumers' inboxes then skip it where it was
        /// already handled; the broker drops it while inside its duplicate window).
        #[arg(long)]
        keep_id: bool,
    },
    /// Deletes dead letters (all, or one consumer's). Refuses without `--yes`.
    Purge {
        /// Only this durable consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim().trim_end_matches("/s");
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err("expected a positive number of messages per second, e.g. 10 or 2.5/s".to_owned()),
    }
}

/// One dead letter as read from the stream.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Stream sequence.
    pub seq: u64,
    /// `<prefix>.deadletter.<durable>`.
    pub subject: String,
    /// Every header, first value of each.
    pub headers: BTreeMap<String, String>,
    /// The original payload.
    pub payload: bytes::Bytes,
    /// When the stream stored it.
    pub stored_at: String,
}

impl DeadLetter {
    fn from_stream(msg: async_nats::jetstream::message::StreamMessage) -> Self {
        DeadLetter {
            seq: msg.sequence,
            subject: msg.subject.to_string(),
            headers: headers_to_map(&msg.headers),
            payload: msg.payload,
            stored_at: msg
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| msg.time.to_string()),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn consumer(&self) -> String {
        self.header(header::DEAD_LETTER_CONSUMER)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                self.subject
                    .rsplit_once(".deadletter.")
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default()
            })
    }

    fn summary(&self) -> Value {
        json!({
            "seq": self.seq,
            "originalId": self.header(header::DEAD_LETTER_ORIGINAL_ID),
            "name": self.header(header::NAME),
            "consumer": self.consumer(),
            "reason": self.header(header::DEAD_LETTER_REASON),
            "attempts": self.header(header::DEAD_LETTER_ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
            "originalSubject": self.header(header::DEAD_LETTER_SUBJECT),
            "deadLetteredAt": self.header(header::DEAD_LETTER_AT).map(str::to_owned).unwrap_or_else(|| self.stored_at.clone()),
        })
    }
}

fn headers_to_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, values)| {
            values
                .first()
                .map(|v| (k.to_string(), v.as_str().to_owned()))
        })
        .collect()
}

/// The subject filter of the dead letters (all, or one consumer's).
fn filter(prefix: &str, consumer: Option<&str>) -> String {
    match consumer {
        Some(durable) => messaging::dead_letter_subject(prefix, durable),
        None => format!("{prefix}.deadletter.>"),
    }
}

async fn stream_of(js: &JetStream) -> anyhow::Result<Stream> {
    js.context()
        .get_stream(js.stream_name())
        .await
        .with_context(|| format!("stream {}", js.stream_name()))
}

/// The dead letters matching `subject_filter`, oldest first, at most `limit`.
pub async fn read(
    stream: &Stream,
    subject_filter: &str,
    limit: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut out = Vec::new();
    let mut next = 1;
    while out.len() < limit {
        match stream
            .get_first_raw_message_by_subject(subject_filter, next)
            .await
        {
            Ok(msg) => {
                next = msg.sequence + 1;
                out.push(DeadLetter::from_stream(msg));
            }
            Err(e) if is_not_found(&e) => break,
            Err(e) => return Err(e).context("reading dead letters"),
        }
    }
    Ok(out)
}

fn is_not_found(e: &async_nats::jetstream::stream::RawMessageError) -> bool {
    match e.kind() {
        LastRawMessageErrorKind::NoMessageFound => true,
        // 10037: "no message found" as a JetStream API error.
        LastRawMessageErrorKind::JetStream(api) => api.error_code().0 == 10037,
        _ => false,
    }
}

/// One dead letter by sequence; an error if the sequence holds another kind of message.
async fn one(stream: &Stream, prefix: &str, seq: u64) -> anyhow::Result<DeadLetter> {
    let msg = stream
        .get_raw_message(seq)
        .await
        .with_context(|| format!("no message with sequence {seq} in the stream"))?;
    let dead = DeadLetter::from_stream(msg);
    if !dead.subject.starts_with(&format!("{prefix}.deadletter.")) {
        bail!(
            "sequence {seq} is not a dead letter (subject {})",
            dead.subject
        );
    }
    Ok(dead)
}

/// Runs a `dlq` subcommand.
pub async fn run(settings: &Settings, command: DlqCommand) -> anyhow::Result<()> {
    let js = settings.jetstream().await?;
    let stream = stream_of(&js).await?;
    let prefix = settings.nats_prefix.as_str();
    match command {
        DlqCommand::List { consumer, limit } => {
            let letters = read(&stream, &filter(prefix, consumer.as_deref()), limit).await?;
            list(settings, &letters);
        }
        DlqCommand::Show { seq } => {
            let dead = one(&stream, prefix, seq).await?;
            show(settings, &dead);
        }
        DlqCommand::Replay {
            seq,
            all,
            consumer,
            rate,
            keep_id,
        } => {
            let letters = match seq {
                Some(seq) if !all => {
                    let dead = one(&stream, prefix, seq).await?;
                    if let Some(c) = &consumer
                        && dead.consumer() != *c
                    {
                        bail!(
                            "dead letter {seq} belongs to consumer {}, not {c}",
                            dead.consumer()
                        );
                    }
                    vec![dead]
                }
                _ => read(&stream, &filter(prefix, consumer.as_deref()), usize::MAX).await?,
            };
            replay(settings, &js, &stream, &letters, rate, keep_id).await?;
        }
        DlqCommand::Purge { consumer, yes } => {
            let subject = filter(prefix, consumer.as_deref());
            let count = count(&stream, &subject).await?;
            if !yes {
                bail!("would delete {count} dead letter(s) on {subject}; add --yes to delete them");
            }
            let purged = stream
                .purge()
                .filter(subject.clone())
                .await
                .with_context(|| format!("purging {subject}"))?;
            if settings.json {
                print_json(&json!({"subject": subject, "purged": purged.purged}));
            } else {
                println!("purged {} dead letter(s) on {subject}", purged.purged);
            }
        }
    }
    Ok(())
}

/// How many messages the stream holds on `subject` (wildcards allowed).
async fn count(stream: &Stream, subject: &str) -> anyhow::Result<u64> {
    use futures_util::StreamExt;
    let mut subjects = stream
        .info_with_subjects(subject)
        .await
        .context("stream subject counts")?;
    let mut total = 0u64;
    while let Some(entry) = subjects.next().await {
        let (_, n) = entry.context("stream subject counts")?;
        total += n as u64;
    }
    Ok(total)
}

fn list(settings: &Settings, letters: &[DeadLetter]) {
    if settings.json {
        print_json(&Value::Array(
            letters.iter().map(DeadLetter::summary).collect(),
        ));
        return;
    }
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    let mut table = Table::new(&[
        "SEQ",
        "ORIGINAL ID",
        "NAME",
        "CONSUMER",
        "ATTEMPTS",
        "WHEN",
        "REASON",
    ]);
    for d in letters {
        table.row(vec![
            d.seq.to_string(),
            or_dash(d.header(header::DEAD_LETTER_ORIGINAL_ID)),
            or_dash(d.header(header::NAME)),
            d.consumer(),
            or_dash(d.header(header::DEAD_LETTER_ATTEMPTS)),
            d.header(header::DEAD_LETTER_AT)
                .map(str::to_owned)
                .unwrap_or_else(|| d.stored_at.clone()),
            clip(d.header(header::DEAD_LETTER_REASON).unwrap_or("-"), 80),
        ]);
    }
    print!("{}", table.render());
}

fn show(settings: &Settings, dead: &DeadLetter) {
    let name = dead.header(header::NAME).unwrap_or_default();
    let decoded = known::render(name, &dead.payload);
    if settings.json {
        let mut value = dead.summary();
        value["subject"] = json!(dead.subject);
        value["storedAt"] = json!(dead.stored_at);
        value["headers"] = json!(dead.headers);
        value["payloadSize"] = json!(dead.payload.len());
        value["payloadBase64"] = json!(base64(&dead.payload));
        value["payloadHex"] = json!(hex(&dead.payload).replace('\n', " "));
        value["decoded"] = match &decoded {
            Some(Ok(text)) => json!(text),
            _ => Value::Null,
        };
        value["decodeError"] = match &decoded {
            Some(Err(e)) => json!(e),
            _ => Value::Null,
        };
        print_json(&value);
        return;
    }
    println!("sequence   {}", dead.seq);
    println!("subject    {}", dead.subject);
    println!("stored at  {}", dead.stored_at);
    println!("\nheaders:");
    let width = dead.headers.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in &dead.headers {
        println!("  {k:width$}  {v}");
    }
    println!("\npayload ({} bytes)", dead.payload.len());
    println!("hex:\n{}", indent(&hex(&dead.payload)));
    println!("base64:\n{}", indent(&base64(&dead.payload)));
    match decoded {
        Some(Ok(text)) => println!("decoded as {name}:\n{}", indent(&text)),
        Some(Err(e)) => println!("does not decode as {name}: {e}"),
        None => println!("{name:?} is not a known contract message; not decoded"),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Headers of the republished message: the original ones without `Dead-Letter-*`, a new
/// `Nats-Msg-Id` (unless `keep_id`), and `Replay-Of` naming the original id.
pub fn replay_headers(dead: &DeadLetter, keep_id: bool) -> anyhow::Result<(HeaderMap, String)> {
    let original = dead
        .header(header::DEAD_LETTER_ORIGINAL_ID)
        .map(str::to_owned);
    let id = match (&original, keep_id) {
        (Some(original), true) => original.clone(),
        (None, true) => bail!(
            "dead letter {} has no {} header; cannot keep the id",
            dead.seq,
            header::DEAD_LETTER_ORIGINAL_ID
        ),
        (_, false) => uuid::Uuid::now_v7().to_string(),
    };
    let mut map = HeaderMap::new();
    for (k, v) in &dead.headers {
        if k.starts_with("Dead-Letter-") || k == header::NATS_MSG_ID {
            continue;
        }
        map.insert(k.as_str(), v.as_str());
    }
    map.insert(header::NATS_MSG_ID, id.as_str());
    if let Some(original) = original.filter(|o| *o != id) {
        map.insert(REPLAY_OF, original.as_str());
    }
    Ok((map, id))
}

/// Header naming the id of the message a replay re-sends.
pub const REPLAY_OF: &str = "Replay-Of";

async fn replay(
    settings: &Settings,
    js: &JetStream,
    stream: &Stream,
    letters: &[DeadLetter],
    rate: f64,
    keep_id: bool,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut results = Vec::new();
    let mut failures = 0usize;
    for dead in letters {
        ticker.tick().await;
        let outcome = replay_one(js, stream, dead, keep_id).await;
        let mut row = json!({
            "seq": dead.seq,
            "originalId": dead.header(header::DEAD_LETTER_ORIGINAL_ID),
            "name": dead.header(header::NAME),
            "subject": dead.header(header::DEAD_LETTER_SUBJECT),
        });
        match outcome {
            Ok((id, new_seq)) => {
                row["newId"] = json!(id);
                row["newSeq"] = json!(new_seq);
                row["replayed"] = json!(true);
            }
            Err(e) => {
                failures += 1;
                row["replayed"] = json!(false);
                row["error"] = json!(format!("{e:#}"));
            }
        }
        results.push(row);
    }
    if settings.json {
        print_json(&Value::Array(results));
    } else if results.is_empty() {
        println!("no dead letters to replay");
    } else {
        let mut table = Table::new(&["SEQ", "NAME", "SUBJECT", "RESULT"]);
        for r in &results {
            let result = if r["replayed"] == json!(true) {
                format!(
                    "replayed as {} (seq {}), dead letter deleted",
                    r["newId"].as_str().unwrap_or_default(),
                    r["newSeq"]
                )
            } else {
                format!("FAILED: {}", r["error"].as_str().unwrap_or_default())
            };
            table.row(vec![
                r["seq"].to_string(),
                r["name"].as_str().unwrap_or("-").to_owned(),
                r["subject"].as_str().unwrap_or("-").to_owned(),
                result,
            ]);
        }
        print!("{}", table.render());
    }
    if failures > 0 {
        bail!(
            "{failures} of {} dead letter(s) not replayed",
            letters.len()
        );
    }
    Ok(())
}

/// Republishes one dead letter and deletes it after the PubAck; returns the id and sequence.
async fn replay_one(
    js: &JetStream,
    stream: &Stream,
    dead: &DeadLetter,
    keep_id: bool,
) -> anyhow::Result<(String, u64)> {
    let subject = dead
        .header(header::DEAD_LETTER_SUBJECT)
        .with_context(|| format!("no {} header", header::DEAD_LETTER_SUBJECT))?
        .to_owned();
    let (headers, id) = replay_headers(dead, keep_id)?;
    let ack = js
        .context()
        .publish_with_headers(subject.clone(), headers, dead.payload.clone())
        .await
        .with_context(|| format!("publishing to {subject}"))?
        .await
        .with_context(|| format!("no PubAck from {subject}"))?;
    if ack.duplicate {
        bail!(
            "the broker dropped it as a duplicate of {id} (inside the duplicate window); \
             try again later or without --keep-id"
        );
    }
    stream.delete_message(dead.seq).await.with_context(|| {
        format!(
            "republished as {id} (seq {}), but deleting dead letter {} failed",
            ack.sequence, dead.seq
        )
    })?;
    Ok((id, ack.sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_headers_drop_dead_letter_fields_and_renew_the_id() {
        let mut headers = BTreeMap::new();
        headers.insert(header::NATS_MSG_ID.to_owned(), "dl-id".to_owned());
        headers.insert(header::NAME.to_owned(), "x.v1.Y".to_owned());
        headers.insert(header::KEY.to_owned(), "k".to_owned());
        headers.insert(header::DEAD_LETTER_REASON.to_owned(), "r".to_owned());
        headers.insert(
            header::DEAD_LETTER_ORIGINAL_ID.to_owned(),
            "orig".to_owned(),
        );
        let dead = DeadLetter {
            seq: 1,
            subject: "p.deadletter.c".into(),
            headers,
            payload: bytes::Bytes::new(),
            stored_at: String::new(),
        };
        let (map, id) = replay_headers(&dead, false).unwrap();
        assert_ne!(id, "orig");
        assert_eq!(map.get(header::NATS_MSG_ID).unwrap().as_str(), id);
        assert_eq!(map.get(header::KEY).unwrap().as_str(), "k");
        assert_eq!(map.get(REPLAY_OF).unwrap().as_str(), "orig");
        assert!(map.get(header::DEAD_LETTER_REASON).is_none());
        let (kept, id) = replay_headers(&dead, true).unwrap();
        assert_eq!(id, "orig");
        assert!(kept.get(REPLAY_OF).is_none());
        assert_eq!(parse_rate("2.5/s"), Ok(2.5));
        assert!(parse_rate("0").is_err());
    }
}
