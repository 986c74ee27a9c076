//! The notifications service as its own process: only wiring, the behaviour is in the library.

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(
        "notifications",
        "MallBots notifications: SMS to customers about their orders",
        || vec![Box::new(notifications::NotificationsModule::default())],
    )
    .await
}
