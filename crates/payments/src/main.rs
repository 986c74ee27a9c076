//! The payments service on its own: only wiring, the behaviour is in the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "payments",
        "MallBots payments: payment authorizations and invoices",
        || vec![Box::new(payments::PaymentsModule::new())],
    )
    .await
}
