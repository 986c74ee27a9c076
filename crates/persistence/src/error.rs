//! The crate's one error type. Callers branch on the kind: a version conflict means "reload and
//! retry the command", corruption means "stop and alert", a database error is usually transient.

/// Errors of the persistence crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another writer appended to the stream since it was loaded.
    #[error("stream {stream}: expected version {expected}, found {actual}")]
    Conflict {
        /// `<type>/<id>`.
        stream: String,
        /// The version the caller loaded.
        expected: i64,
        /// The version in the store.
        actual: i64,
    },
    /// Another writer changed the saga since it was loaded (or, for an insert, it already exists).
    #[error("saga {saga}: expected version {expected}, found {}", display_version(*.actual))]
    SagaConflict {
        /// `<type>/<id>`.
        saga: String,
        /// The version the caller loaded (0 for an insert).
        expected: i64,
        /// The version in the store, `None` if the saga does not exist.
        actual: Option<i64>,
    },
    /// A stored event or snapshot cannot be read: unknown name, undecodable payload, no upcaster.
    #[error("stream {stream} version {version} cannot be read: {reason}")]
    Corrupt {
        /// `<type>/<id>`.
        stream: String,
        /// The event's version (for a snapshot, the version it was taken at).
        version: i64,
        /// What went wrong.
        reason: String,
    },
    /// Saga data does not (de)serialize.
    #[error("saga {saga} data: {reason}")]
    SagaData {
        /// `<type>/<id>`.
        saga: String,
        /// The serde error.
        reason: String,
    },
    /// The database failed or refused a statement.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The broker did not confirm a publish ([`OutboxRelay::flush`](crate::OutboxRelay::flush)).
    #[error("publish: {0}")]
    Publish(#[from] messaging::Error),
    /// A migration failed; nothing of that run was applied.
    #[error("migration {component} {version} ({name}): {reason}")]
    Migration {
        /// The component owning the migration.
        component: String,
        /// Its version.
        version: i64,
        /// Its name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A schema, component or channel name that is not a plain lower-case identifier.
    #[error("invalid name {0:?}: use lower-case letters, digits and '_' (at most 63)")]
    InvalidName(String),
}

fn display_version(actual: Option<i64>) -> String {
    actual.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

impl Error {
    /// Whether running the whole unit of work again (reload, decide, write) may succeed:
    /// concurrency conflicts and transient database or broker failures. Corruption, bad names
    /// and failed migrations need a human.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Conflict { .. } | Error::SagaConflict { .. } => true,
            Error::Publish(e) => e.is_transient(),
            Error::Database(e) => is_transient_db(e),
            Error::Corrupt { .. }
            | Error::SagaData { .. }
            | Error::Migration { .. }
            | Error::InvalidName(_) => false,
        }
    }
}

/// Connection trouble, pool exhaustion, serialization failures and deadlocks pass; constraint
/// violations and syntax errors do not.
fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some("40001" | "40P01" | "55P03" | "57P01" | "08006")
            )
        }
        _ => false,
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
