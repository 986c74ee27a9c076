//! The search service as its own process: only wiring, the behaviour is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(
        "search",
        "MallBots search: the order search read model",
        || vec![Box::new(search::SearchModule::default())],
    )
    .await
}
