//! The stores service on its own: only wiring; the behaviour is in the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "stores",
        "MallBots stores service: stores, product catalogues and their events",
        || vec![Box::new(stores::StoresModule::default())],
    )
    .await
}
