//! The customers service on its own: only wiring, the behaviour is in the library.

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "customers",
        "MallBots customers: registration, SMS numbers, enable/disable, authorization",
        || vec![Box::new(customers::CustomersModule::new())],
    )
    .await
}
