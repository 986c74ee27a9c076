//! `fuzz-rest` (`make fuzz-rest`): starts the built `mallbots` monolith on a fresh database and
//! NATS prefix (the end-to-end harness), runs schemathesis against its `/openapi.json`, and
//! cleans up. Exits with schemathesis's status, so a 5xx, a response that does not match the
//! document or a wrong content type fails the target.
//!
//! Settings (environment): `SCHEMATHESIS` (the executable; default the venv `make` installs),
//! `FUZZ_EXAMPLES` (examples per operation, default 25), `FUZZ_SEED` (replay a run),
//! `FUZZ_REPORT_DIR` (JUnit report, default `target/fuzz-rest`). schemathesis runs inside the
//! report directory, so its `.schemathesis/` store (crashes for `st replay`) lands there too.

use std::process::ExitCode;

use e2e::{Options, System};

/// What schemathesis checks. `response_schema_conformance` holds where our document is exact:
/// every operation declares its 200 body and a `default` error body of the API's error shape.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

#[tokio::main]
async fn main() -> ExitCode {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let examples = env("FUZZ_EXAMPLES", "25");
    let report_dir = std::path::PathBuf::from(env("FUZZ_REPORT_DIR", "target/fuzz-rest"));
    if let Err(e) = std::fs::create_dir_all(&report_dir) {
        eprintln!("fuzz-rest: cannot create {}: {e}", report_dir.display());
        return ExitCode::from(2);
    }
    // A path relative to here stays valid once the command runs inside the report directory.
    let schemathesis = env("SCHEMATHESIS", "target/schemathesis/bin/schemathesis");
    let schemathesis =
        std::fs::canonicalize(&schemathesis).map_or(schemathesis, |p| p.display().to_string());
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/schemathesis.toml"
    );

    // Errors only: the server's own account of a failure (a logged 500 cause, a panic) shows
    // beside schemathesis's report, without a line per request.
    let options = Options::monolith().with_env("LOG_LEVEL", "error,tower_http=off");
    let system = System::start("fuzz_rest", options).await;
    eprintln!("fuzz-rest: monolith ready at {}", system.base);

    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .args(["--config-file", config, "run"])
        .arg(format!("{}/openapi.json", system.base))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples])
        // One worker: with more, Hypothesis (under schemathesis 4.32) sometimes fails with
        // "AST constructor recursion depth mismatch", a race in its own code, not ours.
        .args(["--workers", "1"])
        .args(["--report", "junit", "--report-dir", "."])
        .current_dir(&report_dir);
    if let Ok(seed) = std::env::var("FUZZ_SEED") {
        command.args(["--seed", &seed]);
    }
    let status = match command.status().await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("fuzz-rest: cannot run {schemathesis}: {e} (`make fuzz-rest` installs it)");
            return ExitCode::from(2);
        }
    };
    // Stops the monolith and drops its database and stream.
    drop(system);
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
