//! The search service as its own process: only wiring, the behaviour is in the library.

/// mimalloc instead of glibc's allocator: see `platform::Allocator`.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(
        "search",
        "MallBots search: the order search read model",
        || vec![Box::new(search::SearchModule::default())],
    )
    .await
}
