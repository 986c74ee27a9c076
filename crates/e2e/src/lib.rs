//! End-to-end harness: starts the whole system as real processes — the `mallbots` monolith, or
//! every service as its own process behind `run-services` — on a fresh database and NATS prefix,
//! and drives it over REST exactly as a client written from the spec would. The scenarios live
//! in [`scenarios`] and run unchanged against both deployments.

pub mod scenarios;

use std::path::PathBuf;
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
}

impl Options {
    /// The monolith with default settings.
    pub fn monolith() -> Self {
        Options {
            deployment: Deployment::Monolith,
            env: Vec::new(),
        }
    }

    /// Separate processes, two copies of baskets and of the saga (competing consumers).
    pub fn services() -> Self {
        Options {
            deployment: Deployment::Services {
                replicas: "baskets=2,order-saga=2".into(),
            },
            env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
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
}

/// How the system's process is started (kept to start it again after a stop).
#[derive(Debug, Clone)]
struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
}

impl Launch {
    fn spawn(&self) -> Child {
        // The system logs warnings and errors only (E2E_LOG_LEVEL); the test runner keeps them
        // and shows them when the test fails.
        let mut command = Command::new(&self.binary);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
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
        let binary_path = match &options.deployment {
            Deployment::Monolith => {
                let db = TestDatabase::create(label).await;
                set("DATABASE_URL", db.url().to_owned());
                databases.push(db);
                binary("mallbots")
            }
            Deployment::Services { replicas } => {
                // run-services creates `<prefix><service>` databases; they are dropped on drop.
                let db_prefix = format!("{prefix}_");
                set("DATABASE_URL", testkit::database_url());
                set("DATABASE_PREFIX", db_prefix.clone());
                set("SERVICE_REPLICAS", replicas.clone());
                database_prefix = Some(db_prefix);
                binary("run-services")
            }
        };
        set("NATS_URL", testkit::nats_url());
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
        let nats = testkit::nats_url();
        let stream = self.prefix.clone();
        let admin = testkit::database_url();
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
