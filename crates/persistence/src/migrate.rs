//! A tiny migrations runner. sqlx's `Migrator` keeps one history per schema, so two components
//! (this crate's common tables and a service's own tables) could not share one; here the history
//! is keyed by component. Each run happens in one transaction under a transaction-scoped advisory
//! lock, so several instances starting at once apply each migration exactly once.

use std::collections::HashMap;

use sqlx::{Connection, PgPool};

use crate::error::{Error, Result};

/// One migration of a component: applied once, in version order, never edited afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Position in the component's history (strictly increasing).
    pub version: i64,
    /// Short description, recorded and checked: renaming an applied migration is an error.
    pub name: &'static str,
    /// The SQL, one or more statements, with unqualified table names.
    pub sql: &'static str,
}

/// The component name under which this crate's common tables are recorded.
pub const COMMON_COMPONENT: &str = "persistence";

/// This crate's tables: event store, outbox, inbox, sagas.
pub const COMMON: &[Migration] = &[
    Migration {
        version: 1,
        name: "event store",
        sql: include_str!("../migrations/0001_event_store.sql"),
    },
    Migration {
        version: 2,
        name: "outbox",
        sql: include_str!("../migrations/0002_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "inbox",
        sql: include_str!("../migrations/0003_inbox.sql"),
    },
    Migration {
        version: 4,
        name: "sagas",
        sql: include_str!("../migrations/0004_sagas.sql"),
    },
    Migration {
        version: 5,
        name: "outbox notifications name their rows",
        sql: include_str!("../migrations/0005_outbox_notify_ids.sql"),
    },
];

/// Creates this crate's tables in `schema` (see [`migrate`]).
pub async fn migrate_common(pool: &PgPool, schema: &str) -> Result<()> {
    migrate(pool, schema, COMMON_COMPONENT, COMMON).await
}

/// Applies the migrations of `component` that `schema` lacks, creating the schema if missing.
///
/// Everything runs in one transaction with `search_path` set to `schema`, so a failure applies
/// nothing and the SQL's unqualified names land in the right schema whatever the pool's
/// settings. Already-applied migrations are checked by name; a database ahead of the code (an
/// applied version the code does not know) is accepted, so an older instance can still start
/// during a rolling upgrade.
pub async fn migrate(
    pool: &PgPool,
    schema: &str,
    component: &str,
    migrations: &[Migration],
) -> Result<()> {
    check_identifier(schema)?;
    check_identifier(component)?;
    let fail = |m: &Migration, reason: String| Error::Migration {
        component: component.to_owned(),
        version: m.version,
        name: m.name.to_owned(),
        reason,
    };
    for pair in migrations.windows(2) {
        if pair[1].version <= pair[0].version {
            return Err(fail(&pair[1], "versions must increase".to_owned()));
        }
    }

    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    // Keyed by schema: CREATE SCHEMA IF NOT EXISTS itself races, and two components migrating
    // one schema at once may depend on each other's tables.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('persistence.migrate'), hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_migrations (
             component  text        NOT NULL,
             version    bigint      NOT NULL,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (component, version)
         );"
    )))
    .execute(&mut *tx)
    .await?;

    let applied: HashMap<i64, String> =
        sqlx::query_as("SELECT version, name FROM schema_migrations WHERE component = $1")
            .bind(component)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let mut ran = 0;
    for m in migrations {
        if let Some(name) = applied.get(&m.version) {
            if name != m.name {
                return Err(fail(m, format!("applied under the name {name:?}")));
            }
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(m, e.to_string()))?;
        sqlx::query("INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)")
            .bind(component)
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(
            schema,
            component,
            version = m.version,
            name = m.name,
            "migration applied"
        );
        ran += 1;
    }
    tx.commit().await?;
    if ran == 0 {
        tracing::debug!(schema, component, "migrations up to date");
    }
    Ok(())
}

/// Schema and component names are written into SQL and channel names: plain identifiers only.
pub(crate) fn check_identifier(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_lower_case() {
        for ok in ["ordering", "_x", "t_abc_123"] {
            assert!(check_identifier(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Ordering",
            "1abc",
            "a-b",
            "a\"b",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn common_versions_increase() {
        assert!(COMMON.windows(2).all(|w| w[0].version < w[1].version));
    }
}
