//! End-to-end harness: starts the whole system as real processes — the `mallbots` monolith, or
//! every service as its own process behind `run-services` — on a fresh database and NATS prefix,
//! and drives it over REST exactly as a client written from the spec would. The scenarios live
//! in [`scenarios`] and run unchanged against both deployments.

pub mod faults;
pub mod scenarios;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::TestDatabase;

/// How long a scenario waits for asynchronous outcomes (saga, read models) before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// How the system runs.
#[derive(Debug, Clone)]
pub enum Deployment {
    /// `mallbots`: every module in one process.
    Monolith,
    /// `run-services`: one process per service (copies per service, e.g. `baskets=2`).
    Services {
        /// `SERVICE_REPLICAS` value.
        replicas: String,
    },
}

/// Options for one system.
#[derive(Debug, Clone)]
pub struct Options {
    /// Monolith or separate processes.
    pub deployment: Deployment,
    /// Extra environment (e.g. `SAGA_STEP_TIMEOUT`, `MALLBOTS_MODULES`, `SERVICES`).
    pub env: Vec<(String, String)>,
    /// NATS server(s) to use instead of the shared one (a test-owned server or cluster).
    pub nats_url: Option<String>,
    /// Admin URL of a PostgreSQL server to use instead of the shared one (a test-owned cluster).
    pub postgres_url: Option<String>,
    /// Append the system's stdout and stderr (its JSON log) to this file instead of inheriting
    /// them, so a test can read what the system logged (e.g. every SMS sent).
    pub log_file: Option<PathBuf>,
}

impl Options {
    /// The monolith with default settings.
    pub fn monolith() -> Self {
        Options {
            deployment: Deployment::Monolith,
            env: Vec::new(),
            nats_url: None,
            postgres_url: None,
            log_file: None,
        }
    }

    /// Separate processes, two copies of baskets and of the saga (competing consumers).
    pub fn services() -> Self {
        Options {
            deployment: Deployment::Services {
                replicas: "baskets=2,order-saga=2".into(),
            },
            env: Vec::new(),
            nats_url: None,
            postgres_url: None,
            log_file: None,
        }
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the system on these NATS server(s) (comma separated) rather than the shared one.
    pub fn on_nats(mut self, url: &str) -> Self {
        self.nats_url = Some(url.to_owned());
        self
    }

    /// Runs the system on the PostgreSQL server behind this admin URL rather than the shared one.
    pub fn on_postgres(mut self, admin_url: &str) -> Self {
        self.postgres_url = Some(admin_url.to_owned());
        self
    }

    /// Sends the system's output to `path` (appended, across restarts).
    pub fn log_to(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_path_buf());
        self
    }
}

/// A running system and a client for it. Stopped (SIGTERM, then SIGKILL) and cleaned up on drop.
pub struct System {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    client: reqwest::Client,
    child: Option<Child>,
    launch: Launch,
    prefix: String,
    _databases: Vec<TestDatabase>,
    database_prefix: Option<String>,
    nats_url: String,
    admin_url: String,
    database_url: String,
}

/// How the system's process is started (kept to start it again after a stop).
#[derive(Debug, Clone)]
struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_file: Option<PathBuf>,
}

impl Launch {
    fn spawn(&self) -> Child {
        // The system logs warnings and errors only (E2E_LOG_LEVEL); the test runner keeps them
        // and shows them when the test fails.
        let mut command = Command::new(&self.binary);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        if let Some(path) = &self.log_file {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open log file {}: {e}", path.display()));
            let second = file.try_clone().expect("duplicate the log file handle");
            command.stdout(file).stderr(second);
        }
        command.spawn().expect("start the system")
    }
}

/// Where cargo put the workspace's binaries (next to this test binary's `deps` folder).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("target dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`; `make test` does)",
        path.display()
    );
    path
}

impl System {
    /// Starts the system and waits (bounded) until its `/readyz` says ready.
    pub async fn start(label: &str, options: Options) -> System {
        let prefix = testkit::unique_prefix(label);
        let port = testkit::free_port();
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
        let mut databases = Vec::new();
        let mut database_prefix = None;
        let nats_url = options.nats_url.clone().unwrap_or_else(testkit::nats_url);
        let admin_url = options
            .postgres_url
            .clone()
            .unwrap_or_else(testkit::database_url);
        let database_url;
        let binary_path = match &options.deployment {
            Deployment::Monolith => {
                let db = TestDatabase::create_on(&admin_url, label).await;
                database_url = db.url().to_owned();
                set("DATABASE_URL", database_url.clone());
                databases.push(db);
                binary("mallbots")
            }
            Deployment::Services { replicas } => {
                // run-services creates `<prefix><service>` databases; they are dropped on drop.
                let db_prefix = format!("{prefix}_");
                database_url = admin_url.clone();
                set("DATABASE_URL", admin_url.clone());
                set("DATABASE_PREFIX", db_prefix.clone());
                set("SERVICE_REPLICAS", replicas.clone());
                database_prefix = Some(db_prefix);
                binary("run-services")
            }
        };
        set("NATS_URL", nats_url.clone());
        set("NATS_PREFIX", prefix.clone());
        set("HTTP_ADDR", format!("127.0.0.1:{port}"));
        set("LOG_FORMAT", "json".into());
        set(
            "LOG_LEVEL",
            std::env::var("E2E_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        );
        set("SHUTDOWN_TIMEOUT", "10s".into());
        for (k, v) in &options.env {
            set(k, v.clone());
        }
        let launch = Launch {
            binary: binary_path,
            env,
            log_file: options.log_file.clone(),
        };
        let child = launch.spawn();
        let mut system = System {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            child: Some(child),
            launch,
            prefix,
            _databases: databases,
            database_prefix,
            nats_url,
            admin_url,
            database_url,
        };
        system.wait_ready().await;
        system
    }

    async fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the system exited during start-up ({status}); its log is above");
            }
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the system did not become ready in 90 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a request and returns status and JSON body (`Null` if empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request that must succeed (200); returns the body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path} answered {status}: {value}"
        );
        value
    }

    /// `GET` that must succeed.
    pub async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    /// `POST` that must succeed and return `{"id"}`; returns the id.
    pub async fn create(&self, path: &str, body: Value) -> String {
        let value = self.ok(Method::POST, path, Some(body)).await;
        value["id"]
            .as_str()
            .unwrap_or_else(|| panic!("POST {path} returned no id: {value}"))
            .to_owned()
    }

    /// `PUT` that must succeed.
    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.ok(Method::PUT, path, Some(body)).await
    }

    /// Polls `GET path` until `check` accepts the body; fails with `what` after [`WAIT`].
    pub async fn wait_until<F>(&self, path: &str, what: &str, check: F) -> Value
    where
        F: Fn(&Value) -> bool,
    {
        let deadline = std::time::Instant::now() + WAIT;
        let mut last = (StatusCode::OK, Value::Null);
        while std::time::Instant::now() < deadline {
            last = self.call(Method::GET, path, None).await;
            if last.0 == StatusCode::OK && check(&last.1) {
                return last.1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out after {WAIT:?} waiting for {what}; last GET {path} answered {}: {}",
            last.0, last.1
        );
    }

    /// The order's status, as `GET /api/ordering/{id}` reports it.
    pub async fn wait_for_order_status(&self, order: &str, status: &str) -> Value {
        let path = format!("/api/ordering/{order}");
        self.wait_until(&path, &format!("order {order} to be {status}"), |v| {
            v["order"]["status"] == json!(status)
        })
        .await
    }

    /// The NATS prefix the system runs on.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The NATS server(s) the system runs on (comma separated).
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The URL of the database holding `schema` (a module's schema name, e.g. `ordering`,
    /// `cosec`): the one database of the monolith, or that service's own database under
    /// `run-services`. The schema has the same name in both, so queries qualify tables with it.
    pub fn database_url_for(&self, schema: &str) -> String {
        match &self.database_prefix {
            Some(prefix) => {
                testkit::replace_database(&self.admin_url, &format!("{prefix}{schema}"))
            }
            None => self.database_url.clone(),
        }
    }

    /// Kills the system's top process with SIGKILL (no shutdown, nothing flushed) and reaps it:
    /// the monolith's crash. (Under `run-services` this would kill only the runner; kill a
    /// service's own process instead, see `faults::runner_instances`.)
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same process again on the same database and prefix (after [`System::kill`])
    /// and waits until it is ready.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again needs a stopped system");
        self.child = Some(self.launch.spawn());
        self.wait_ready().await;
    }

    /// Stops the system gracefully (SIGTERM) and asserts it exits successfully in time.
    pub fn stop(mut self) {
        if let Some(child) = self.child.take() {
            assert!(
                terminate(child, Duration::from_secs(30)),
                "the system did not stop cleanly"
            );
        }
    }

    /// SIGTERM, asserting a clean exit within the shutdown budget, then the same process
    /// again on the same database and prefix; waits until it is ready.
    pub async fn restart(&mut self) {
        if let Some(child) = self.child.take() {
            assert!(
                terminate(child, Duration::from_secs(30)),
                "the system did not stop cleanly on SIGTERM"
            );
        }
        self.child = Some(self.launch.spawn());
        self.wait_ready().await;
    }
}

/// SIGTERM, wait up to `budget`, SIGKILL. True when it exited by itself with success.
fn terminate(mut child: Child, budget: Duration) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + budget;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(15));
        }
        let nats = self.nats_url.clone();
        let stream = self.prefix.clone();
        let admin = self.admin_url.clone();
        let database_prefix = self.database_prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                testkit::delete_stream(&nats, &stream).await;
                if let Some(p) = database_prefix {
                    testkit::drop_databases_with_prefix(&admin, &p).await;
                }
            });
        })
        .join();
    }
}
