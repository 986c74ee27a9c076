//! The baskets service on its own: only wiring (configuration, logging, HTTP host, shutdown
//! come from `platform`).

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "baskets",
        "MallBots baskets service: shopping baskets and checkout",
        || vec![Box::new(baskets::BasketsModule::new())],
    )
    .await
}
