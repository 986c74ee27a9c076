//! The create-order saga (cosec) as its own process: only wiring.

use order_saga::OrderSagaModule;

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(
        "order-saga",
        "MallBots create-order saga (cosec): orchestrates order creation across services",
        || vec![Box::new(OrderSagaModule::from_env())],
    )
    .await
}
