//! The monolith: every service module in one process, on one HTTP port and one NATS
//! connection. Only wiring lives here; the behaviour is in `platform` and the service crates.

use std::process::ExitCode;

use platform::Module;

/// The modules this process runs, in start order (spec ops.md §1: baskets, customers, depot,
/// notifications, ordering, payments, stores, cosec, search).
fn modules() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(baskets::BasketsModule::new()),
        Box::new(customers::CustomersModule::new()),
        Box::new(depot::DepotModule::new()),
        Box::new(notifications::NotificationsModule::default()),
        Box::new(ordering::OrderingModule::new()),
        Box::new(payments::PaymentsModule::new()),
        Box::new(stores::StoresModule::new()),
        Box::new(order_saga::OrderSagaModule::from_env()),
        Box::new(search::SearchModule::default()),
    ]
}

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    platform::run_binary(
        "mallbots",
        "MallBots: every service module in one process",
        modules,
    )
    .await
}
