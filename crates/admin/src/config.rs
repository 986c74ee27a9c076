//! Connection settings shared by every command, and where each schema's database is.

use anyhow::Context as _;
use messaging::jetstream::{JetStream, JetStreamConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The schemas of a deployment (docs/SERVICES.md): one per service, all in one database in the
/// monolith, one database each for microservices.
pub const SCHEMAS: &[&str] = &[
    "stores",
    "customers",
    "baskets",
    "ordering",
    "payments",
    "depot",
    "notifications",
    "search",
    "cosec",
];

/// Global flags (each also an environment variable, like the service binaries).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection and output")]
pub struct Settings {
    /// NATS server URL(s), comma separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,

    /// Subject prefix and stream of the deployment.
    #[arg(long, env = "NATS_PREFIX", default_value = "mallbots", global = true)]
    pub nats_prefix: String,

    /// NATS user (with `NATS_PASSWORD`); on a secured server, the `admin` user.
    #[arg(long, env = "NATS_USER", requires = "nats_password", global = true)]
    pub nats_user: Option<String>,

    /// Password of `NATS_USER`.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user",
        global = true
    )]
    pub nats_password: Option<String>,

    /// NATS credentials file (`.creds`), instead of a user and password.
    #[arg(long, env = "NATS_CREDS", conflicts_with = "nats_user", global = true)]
    pub nats_creds: Option<std::path::PathBuf>,

    /// PEM file of the CA certificate(s) the NATS server's certificate must chain to; requires TLS.
    #[arg(long, env = "NATS_TLS_CA", global = true)]
    pub nats_tls_ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for a NATS server that verifies clients; needs `NATS_TLS_KEY`.
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key", global = true)]
    pub nats_tls_cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of `NATS_TLS_CERT`.
    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert", global = true)]
    pub nats_tls_key: Option<std::path::PathBuf>,

    /// PostgreSQL URL. Without `--database-prefix` / `--db-for`, every schema is read from this
    /// database (the monolith's layout).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Microservices layout as `run-services` creates it: schema `<s>` lives in database
    /// `<prefix><s>` on the `DATABASE_URL` server.
    #[arg(long, env = "DATABASE_PREFIX", global = true)]
    pub database_prefix: Option<String>,

    /// Where one schema lives, `schema=postgres://…/db` (repeatable; wins over the others).
    #[arg(long = "db-for", value_name = "SCHEMA=URL", value_parser = parse_db_for, global = true)]
    pub db_for: Vec<(String, String)>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_db_for(text: &str) -> Result<(String, String), String> {
    let (schema, url) = text
        .split_once('=')
        .ok_or_else(|| "expected SCHEMA=URL, e.g. cosec=postgres://host/cosec".to_owned())?;
    let schema = schema.trim();
    if schema.is_empty() || url.trim().is_empty() {
        return Err("expected SCHEMA=URL, e.g. cosec=postgres://host/cosec".to_owned());
    }
    Ok((schema.to_owned(), url.trim().to_owned()))
}

impl Settings {
    /// The database URL holding `schema`.
    pub fn database_for(&self, schema: &str) -> String {
        if let Some((_, url)) = self.db_for.iter().rev().find(|(s, _)| s == schema) {
            return url.clone();
        }
        match self.database_prefix.as_deref() {
            Some(prefix) if !prefix.is_empty() => {
                replace_database(&self.database_url, &format!("{prefix}{schema}"))
            }
            _ => self.database_url.clone(),
        }
    }

    /// A small pool on `schema`'s database whose sessions resolve names in `schema`.
    pub async fn pool(&self, schema: &str) -> anyhow::Result<PgPool> {
        let url = self.database_for(schema);
        let options = persistence::connect_options(&url, schema)
            .with_context(|| format!("database settings for schema {schema}"))?;
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the database of schema {schema}"))
    }

    /// The JetStream connection of the deployment (the stream is created if it is missing,
    /// as every service does at start-up).
    pub async fn jetstream(&self) -> anyhow::Result<JetStream> {
        let mut config = JetStreamConfig::new(self.nats_url.clone(), self.nats_prefix.clone());
        config.connection_name = "mallbots-admin".to_owned();
        config.user_password = self.nats_user.clone().zip(self.nats_password.clone());
        config.credentials_file = self.nats_creds.clone();
        config.tls_ca_file = self.nats_tls_ca.clone();
        config.tls_client_cert = self.nats_tls_cert.clone().zip(self.nats_tls_key.clone());
        JetStream::connect(config)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.nats_url))
    }
}

/// `url` with its database name replaced (query string kept).
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| i + after_scheme)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        let mut all = vec![
            "x",
            "--database-url",
            "postgres://u@h:5432/main?sslmode=disable",
        ];
        all.extend_from_slice(args);
        Wrap::parse_from(all).settings
    }

    #[test]
    fn schemas_map_to_databases() {
        let mono = settings(&[]);
        assert_eq!(
            mono.database_for("cosec"),
            "postgres://u@h:5432/main?sslmode=disable"
        );
        let micro = settings(&["--database-prefix", "mb_"]);
        assert_eq!(
            micro.database_for("cosec"),
            "postgres://u@h:5432/mb_cosec?sslmode=disable"
        );
        let explicit = settings(&[
            "--database-prefix",
            "mb_",
            "--db-for",
            "cosec=postgres://other/sagas",
        ]);
        assert_eq!(explicit.database_for("cosec"), "postgres://other/sagas");
        assert_eq!(
            explicit.database_for("stores"),
            "postgres://u@h:5432/mb_stores?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "d"), "postgres://h/d");
    }
}
