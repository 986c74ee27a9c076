//! The depot service on its own: only wiring, the behaviour is in the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "depot",
        "MallBots depot service: shopping lists for the robots",
        || vec![Box::new(depot::DepotModule::new())],
    )
    .await
}
