//! The notifications service as its own process: only wiring, the behaviour is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(
        "notifications",
        "MallBots notifications: SMS to customers about their orders",
        || vec![Box::new(notifications::NotificationsModule::default())],
    )
    .await
}
