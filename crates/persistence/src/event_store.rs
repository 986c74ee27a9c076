//! The event store: each aggregate instance is a stream of events with consecutive versions.
//!
//! Appends carry the version the writer loaded; if another writer got there first the append
//! fails with [`Error::Conflict`] and the caller reloads and decides again (the original system
//! surfaced this as a primary-key violation and an HTTP 500). Events are stored as protobuf
//! bytes with their name and schema version, so history written by older code stays readable
//! through the aggregate's upcaster. Snapshots, taken every N events per aggregate type, cut the
//! replay; they are a cache: one in an older format is ignored, never trusted.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// An event as stored: which type and format the payload has, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    /// Fully qualified event name, e.g. `ordering.OrderCreated`.
    pub name: String,
    /// Payload format version of that name (1 for a new type; bump on an incompatible change).
    pub schema_version: i32,
    /// Protobuf encoding.
    pub payload: Bytes,
}

impl EventData {
    /// Data of `name` in format `schema_version`.
    pub fn new(name: impl Into<String>, schema_version: i32, payload: impl Into<Bytes>) -> Self {
        EventData {
            name: name.into(),
            schema_version,
            payload: payload.into(),
        }
    }
}

/// A stored event with its position in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// 1 for the first event of the stream.
    pub version: i64,
    /// Name, format and payload.
    pub data: EventData,
    /// When it was appended.
    pub recorded_at: OffsetDateTime,
}

/// A service's domain events (typically an enum over the aggregate's protobuf event messages).
pub trait DomainEvent: Sized + Send + Sync {
    /// Name, current schema version and protobuf bytes of this event.
    fn encode(&self) -> EventData;

    /// Reads an event in its current format. Unknown names and undecodable payloads are errors:
    /// the store reports them with the stream and version and never skips the event.
    fn decode(data: &EventData) -> Result<Self, String>;

    /// Rewrites an event stored by older code (a renamed type, an older payload format) into
    /// the current form before [`decode`](Self::decode). The default keeps it as it is.
    fn upcast(data: EventData) -> Result<EventData, String> {
        Ok(data)
    }
}

/// An event-sourced aggregate: pure state, rebuilt by applying its events in order.
pub trait Aggregate: Default + Send + Sync + Sized {
    /// The stream type, e.g. `ordering.Order`; with the id it names the stream.
    const TYPE: &'static str;
    /// Format version of [`snapshot`](Self::snapshot)'s bytes. Bump it when the encoding changes:
    /// snapshots in another format are ignored and the state is replayed from the events.
    const SNAPSHOT_VERSION: i32 = 1;
    /// Its events.
    type Event: DomainEvent;

    /// Applies one event. Infallible: the event was valid when it was decided.
    fn apply(&mut self, event: &Self::Event);

    /// The state as bytes, for aggregates that take snapshots. `None` (the default) takes none.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// The state back from [`snapshot`](Self::snapshot)'s bytes.
    fn restore(_payload: &[u8]) -> Result<Self, String> {
        Err(format!("{} takes no snapshots", Self::TYPE))
    }
}

/// An aggregate's state with the version it was loaded at (0: the stream does not exist yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The aggregate id (the stream id).
    pub id: String,
    /// The stream's version the state reflects; the next append expects it.
    pub version: i64,
    /// The state.
    pub state: A,
}

impl<A> Loaded<A> {
    /// Whether the stream has any event (commands on unknown ids should fail, not create one).
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// When to snapshot an aggregate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Always replay every event (short-lived aggregates such as baskets).
    #[default]
    Never,
    /// Write a snapshot whenever an append crosses a multiple of N events.
    Every(u32),
}

impl SnapshotPolicy {
    /// Whether an append that moved the stream from `before` to `after` should snapshot.
    fn crossed(self, before: i64, after: i64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Every(n) => {
                let n = i64::from(n.max(1));
                after / n > before / n
            }
        }
    }
}

/// Reads and appends streams. Holds only the snapshot policies; the connection is the caller's,
/// so appends join the transaction that also writes the outbox.
#[derive(Debug, Clone, Default)]
pub struct EventStore {
    policies: Arc<HashMap<String, SnapshotPolicy>>,
}

impl EventStore {
    /// A store that takes no snapshots until told to.
    pub fn new() -> Self {
        EventStore::default()
    }

    /// Sets the snapshot policy of one aggregate type.
    pub fn with_snapshots(mut self, aggregate_type: &str, policy: SnapshotPolicy) -> Self {
        Arc::make_mut(&mut self.policies).insert(aggregate_type.to_owned(), policy);
        self
    }

    /// The snapshot policy of `aggregate_type`.
    pub fn policy(&self, aggregate_type: &str) -> SnapshotPolicy {
        self.policies
            .get(aggregate_type)
            .copied()
            .unwrap_or_default()
    }

    /// Loads aggregate `id`: the latest usable snapshot, then the events after it.
    ///
    /// One round trip: every command and every read of an aggregate starts here, so the
    /// snapshot and the events after it come back from a single statement (the snapshot row
    /// first, flagged; an old-format snapshot is returned but not used, and then every event
    /// follows it).
    pub async fn load<A: Aggregate>(&self, conn: &mut PgConnection, id: &str) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            id: id.to_owned(),
            version: 0,
            state: A::default(),
        };
        if self.policy(A::TYPE) == SnapshotPolicy::Never {
            self.apply_events(conn, &mut loaded).await?;
            return Ok(loaded);
        }
        let rows: Vec<LoadRow> = sqlx::query_as(
            "WITH snap AS (
                 SELECT version, schema_version, payload, taken_at FROM snapshots
                 WHERE stream_type = $1 AND stream_id = $2
             )
             SELECT true, version, NULL::text, schema_version, payload, taken_at FROM snap
             UNION ALL
             SELECT false, version, name, schema_version, payload, recorded_at FROM events
             WHERE stream_type = $1 AND stream_id = $2
               AND version > coalesce((SELECT version FROM snap WHERE schema_version = $3), 0)
             ORDER BY 1 DESC, 2",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(A::SNAPSHOT_VERSION)
        .fetch_all(&mut *conn)
        .await?;
        let stream = || stream_name(A::TYPE, id);
        let mut events = Vec::with_capacity(rows.len());
        for (is_snapshot, version, name, format, payload, recorded_at) in rows {
            if !is_snapshot {
                events.push((
                    version,
                    name.unwrap_or_default(),
                    format,
                    payload,
                    recorded_at,
                ));
            } else if format == A::SNAPSHOT_VERSION {
                loaded.state = A::restore(&payload).map_err(|reason| Error::Corrupt {
                    stream: stream(),
                    version,
                    reason: format!("snapshot: {reason}"),
                })?;
                loaded.version = version;
            } else {
                tracing::debug!(
                    stream = %stream(), version, format, current = A::SNAPSHOT_VERSION,
                    "snapshot in an old format ignored"
                );
            }
        }
        let recorded = checked(A::TYPE, id, loaded.version, events)?;
        apply(&mut loaded, recorded)?;
        Ok(loaded)
    }

    /// Rebuilds aggregate `id` from all of its events, ignoring snapshots (checks and tooling).
    pub async fn replay<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        id: &str,
    ) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            id: id.to_owned(),
            version: 0,
            state: A::default(),
        };
        self.apply_events(conn, &mut loaded).await?;
        Ok(loaded)
    }

    async fn apply_events<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        loaded: &mut Loaded<A>,
    ) -> Result<()> {
        let recorded = self.read(conn, A::TYPE, &loaded.id, loaded.version).await?;
        apply(loaded, recorded)
    }

    /// Appends `events` to `aggregate`'s stream, applies them to its state and snapshots it if
    /// the policy says so. On [`Error::Conflict`] nothing was written and the state is untouched.
    pub async fn save<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        aggregate: &mut Loaded<A>,
        events: &[A::Event],
    ) -> Result<()> {
        let data: Vec<EventData> = events.iter().map(DomainEvent::encode).collect();
        let before = aggregate.version;
        let after = self
            .append(conn, A::TYPE, &aggregate.id, before, &data)
            .await?;
        for event in events {
            aggregate.state.apply(event);
        }
        aggregate.version = after;
        if self.policy(A::TYPE).crossed(before, after)
            && let Some(payload) = aggregate.state.snapshot()
        {
            sqlx::query(
                "INSERT INTO snapshots (stream_type, stream_id, version, schema_version, payload)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (stream_type, stream_id) DO UPDATE
                 SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
                     payload = EXCLUDED.payload, taken_at = now()
                 WHERE snapshots.version < EXCLUDED.version",
            )
            .bind(A::TYPE)
            .bind(&aggregate.id)
            .bind(after)
            .bind(A::SNAPSHOT_VERSION)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Appends `events` to stream (`stream_type`, `stream_id`) if its version is still
    /// `expected` (0: the stream must not exist); returns the new version.
    ///
    /// The check is a compare-and-set on the stream's row, so a lost race updates nothing and
    /// the caller's transaction stays usable (no unique violation aborts it).
    pub async fn append(
        &self,
        conn: &mut PgConnection,
        stream_type: &str,
        stream_id: &str,
        expected: i64,
        events: &[EventData],
    ) -> Result<i64> {
        if events.is_empty() {
            return Ok(expected);
        }
        let claim = if expected == 0 {
            "INSERT INTO streams (stream_type, stream_id, version)
             VALUES ($1, $2, $3 + cardinality($4::text[]))
             ON CONFLICT DO NOTHING RETURNING version"
        } else {
            "UPDATE streams SET version = $3 + cardinality($4::text[]), updated_at = now()
             WHERE stream_type = $1 AND stream_id = $2 AND version = $3 RETURNING version"
        };
        let sql = format!(
            "WITH claimed AS ({claim})
             INSERT INTO events (stream_type, stream_id, version, name, schema_version, payload)
             SELECT $1, $2, $3 + e.n, e.name, e.schema_version, e.payload
             FROM claimed,
                  UNNEST($4::text[], $5::int4[], $6::bytea[])
                      WITH ORDINALITY AS e(name, schema_version, payload, n)"
        );
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let formats: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_ref()).collect();
        let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_type)
            .bind(stream_id)
            .bind(expected)
            .bind(&names)
            .bind(&formats)
            .bind(&payloads)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if inserted == events.len() as u64 {
            return Ok(expected + inserted as i64);
        }
        let actual: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM streams WHERE stream_type = $1 AND stream_id = $2",
        )
        .bind(stream_type)
        .bind(stream_id)
        .fetch_optional(&mut *conn)
        .await?;
        Err(Error::Conflict {
            stream: stream_name(stream_type, stream_id),
            expected,
            actual: actual.unwrap_or(0),
        })
    }

    /// The events of a stream after version `after`, in order, as stored (not upcast).
    /// A gap in the versions is reported as corruption.
    pub async fn read(
        &self,
        conn: &mut PgConnection,
        stream_type: &str,
        stream_id: &str,
        after: i64,
    ) -> Result<Vec<RecordedEvent>> {
        let rows: Vec<(i64, String, i32, Vec<u8>, OffsetDateTime)> = sqlx::query_as(
            "SELECT version, name, schema_version, payload, recorded_at FROM events
             WHERE stream_type = $1 AND stream_id = $2 AND version > $3 ORDER BY version",
        )
        .bind(stream_type)
        .bind(stream_id)
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        checked(stream_type, stream_id, after, rows)
    }
}

/// The events of a stream read after version `after`, checked to follow it without a gap.
fn checked(
    stream_type: &str,
    stream_id: &str,
    after: i64,
    rows: Vec<(i64, String, i32, Vec<u8>, OffsetDateTime)>,
) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::with_capacity(rows.len());
    for (expected, (version, name, schema_version, payload, recorded_at)) in (after + 1..).zip(rows)
    {
        if version != expected {
            return Err(Error::Corrupt {
                stream: stream_name(stream_type, stream_id),
                version: expected,
                reason: format!("missing: the next stored version is {version}"),
            });
        }
        out.push(RecordedEvent {
            version,
            data: EventData::new(name, schema_version, payload),
            recorded_at,
        });
    }
    Ok(out)
}

/// Applies recorded events (upcast, decoded) to a loaded aggregate.
fn apply<A: Aggregate>(loaded: &mut Loaded<A>, recorded: Vec<RecordedEvent>) -> Result<()> {
    for recorded in recorded {
        let corrupt = |reason: String| Error::Corrupt {
            stream: stream_name(A::TYPE, &loaded.id),
            version: recorded.version,
            reason,
        };
        let data = A::Event::upcast(recorded.data).map_err(&corrupt)?;
        let event = A::Event::decode(&data).map_err(|reason| {
            corrupt(format!(
                "{} (schema {}): {reason}",
                data.name, data.schema_version
            ))
        })?;
        loaded.state.apply(&event);
        loaded.version = recorded.version;
    }
    Ok(())
}

/// A row of [`EventStore::load`]'s query: snapshot flag, version, event name (events only),
/// schema version, payload, time.
type LoadRow = (bool, i64, Option<String>, i32, Vec<u8>, OffsetDateTime);

/// How errors name a stream.
fn stream_name(stream_type: &str, stream_id: &str) -> String {
    format!("{stream_type}/{stream_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_taken_when_an_append_crosses_a_multiple() {
        let every3 = SnapshotPolicy::Every(3);
        assert!(!every3.crossed(0, 2));
        assert!(every3.crossed(2, 3));
        assert!(every3.crossed(0, 7));
        assert!(!every3.crossed(3, 5));
        assert!(every3.crossed(5, 6));
        assert!(!SnapshotPolicy::Never.crossed(0, 100));
        assert!(
            SnapshotPolicy::Every(0).crossed(4, 5),
            "0 is treated as every event"
        );
    }
}
