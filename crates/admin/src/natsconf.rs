//! `nats-config`: prints (or writes) the `authorization` block of a `nats-server` configuration
//! that gives every service its own user, allowed only the subjects it uses — computed by
//! `contracts::topology` from the catalogue and the services' consumers, never hand-written.

use std::path::PathBuf;

use anyhow::Context as _;

/// Arguments of `nats-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsConfigArgs {
    /// Subject prefix (and stream) the permissions are for; default: `NATS_PREFIX`.
    #[arg(long)]
    prefix: Option<String>,

    /// Write the configuration to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Renders the configuration for `args.prefix` (else `default_prefix`) and prints or writes it.
pub fn run(default_prefix: &str, args: NatsConfigArgs) -> anyhow::Result<()> {
    let prefix = args.prefix.as_deref().unwrap_or(default_prefix);
    let valid_token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !prefix.split('.').all(valid_token) {
        anyhow::bail!(
            "--prefix {prefix:?}: expected dot-separated tokens of letters, digits, `-` and `_`"
        );
    }
    let config = contracts::topology::nats_config(prefix);
    match args.out {
        Some(path) => {
            std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{config}"),
    }
    Ok(())
}
