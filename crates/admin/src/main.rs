//! `mallbots-admin`: the operator's tool for what the services cannot fix by themselves.
//!
//! - `dlq list|show|replay|purge`: dead letters (`<prefix>.deadletter.<durable>` in the stream);
//! - `saga list|show|retry|abort`: create-order saga rows and their command log (schema `cosec`);
//! - `outbox`: unsent outbox rows and the age of the oldest, per schema;
//! - `lag`: per durable consumer, messages pending and awaiting acknowledgement;
//! - `nats-config`: the NATS server's per-service users and permissions (`make nats-config`).
//!
//! Configured like every other binary (`NATS_URL`, `NATS_PREFIX`, `NATS_USER`/`NATS_PASSWORD` or
//! `NATS_CREDS`, `DATABASE_URL`, each also a flag). Tables for humans by default, `--json` for
//! scripts. Exit status 0 on success, 1 when the operation failed, 2 for a usage error.

mod config;
mod dlq;
mod known;
mod natsconf;
mod output;
mod saga;
mod stats;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// Operator CLI for a MallBots deployment: dead letters, sagas, outbox backlogs, consumer lag.
#[derive(Debug, Parser)]
#[command(name = "mallbots-admin", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dead letters: list, show, replay to their original subject, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Saga instances (schema `cosec`): list, show, retry a stuck step, abort.
    #[command(subcommand)]
    Saga(saga::SagaCommand),
    /// Outbox backlog per schema: unsent rows and the age of the oldest.
    Outbox(stats::OutboxArgs),
    /// Per durable consumer of the stream: pending, awaiting ack, redelivered, dead letters.
    Lag(stats::LagArgs),
    /// Print the NATS server's authorization block: a user per service with only its subjects.
    NatsConfig(natsconf::NatsConfigArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command {
        Command::Dlq(cmd) => dlq::run(&settings, cmd).await,
        Command::Saga(cmd) => saga::run(&settings, cmd).await,
        Command::Outbox(args) => stats::outbox(&settings, args).await,
        Command::Lag(args) => stats::lag(&settings, args).await,
        Command::NatsConfig(args) => natsconf::run(&settings.nats_prefix, args),
    }
}
