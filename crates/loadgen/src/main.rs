//! `loadgen`: drives the MallBots REST API with concurrent shoppers (see `--help`), measures
//! the raw limits of the machine (`loadgen limits`) and runs the `make bench` suite
//! (`loadgen bench-suite`).

mod args;
mod limits;
mod report;
mod run;
mod suite;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Some(Command::Limits(args)) => limits::command(args).await?,
        Some(Command::BenchSuite(args)) => suite::command(args).await?,
        None => {
            let plan = match cli.run.validate() {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!("loadgen: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let report = run::run(&plan).await?;
            println!("{}", report.table());
            if let Some(path) = &plan.json_out {
                eprintln!("loadgen: JSON report in {}", path.display());
            }
            // Unfinished orders or errors fail the run, so scripts notice.
            if report.unfinished_total > 0 || report.errors_total > 0 {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
