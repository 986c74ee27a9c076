//! The host end to end on the machine's NATS and PostgreSQL: an app on port 0 with a test
//! module (a route, a consumer, a readiness check, a background task), its built-in endpoints,
//! error shapes, readiness failures and graceful shutdown. Each test has its own prefix and
//! deletes its stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{Empty, Envelope, Subscription};
use platform::{ApiError, ApiJson, App, Config, Module, ModuleContext};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CONSUMER: &str = "test-pings";
const SUBJECT: &str = "test.events.Ping";

/// Registers a route, a consumer, a named check, and a task that needs a moment to finish
/// after shutdown is requested (to prove shutdown waits for it).
#[derive(Default)]
struct TestModule {
    handled: Arc<AtomicU64>,
    finished_after_cancel: Arc<AtomicBool>,
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Item {
    #[serde(default, deserialize_with = "platform::de_string_lenient")]
    name: String,
    #[serde(default, deserialize_with = "platform::de_f64_lenient")]
    price: f64,
    #[serde(default, deserialize_with = "platform::de_i32_lenient")]
    quantity: i32,
}

#[platform::async_trait]
impl Module for TestModule {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        let handled = self.handled.clone();
        ctx.subscribe(Subscription::new(CONSUMER, SUBJECT).on(move |_: Empty, _| {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }))
        .await?;
        ctx.readiness
            .add_check("test:custom", || async { Ok::<_, String>(()) });

        let shutdown = ctx.shutdown.clone();
        let finished = self.finished_after_cancel.clone();
        ctx.spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            finished.store(true, Ordering::SeqCst);
        });

        Ok(Router::new()
            .route(
                "/api/test/ping",
                get(|| async { ApiJson(json!({"pong": true})) }),
            )
            .route(
                "/api/test/error",
                get(|| async { ApiError::bad_request("the store name cannot be blank") }),
            )
            .route(
                "/api/test/items",
                axum::routing::post(|ApiJson(item): ApiJson<Item>| async move { ApiJson(item) }),
            ))
    }
}

/// Ignores shutdown: the host must give up on it after `SHUTDOWN_TIMEOUT`.
struct Stubborn;

#[platform::async_trait]
impl Module for Stubborn {
    fn name(&self) -> &'static str {
        "stubborn"
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Router> {
        ctx.spawn(tokio::time::sleep(Duration::from_secs(600)));
        Ok(Router::new())
    }
}

struct Failing;

#[platform::async_trait]
impl Module for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    async fn start(&self, _ctx: ModuleContext) -> anyhow::Result<Router> {
        anyhow::bail!("schema migration 3 failed")
    }
}

fn config(prefix: &str) -> Config {
    Config {
        nats_url: testkit::nats_url(),
        database_url: testkit::database_url(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        nats_prefix: prefix.to_owned(),
        shutdown_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// A running app: its address, its stop trigger and its run task.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    run: JoinHandle<Result<(), platform::Error>>,
}

impl Running {
    async fn start(app: App) -> Self {
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Running { addr, stop, run }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers shutdown and returns its result and how long it took.
    async fn stop(self) -> (Result<(), platform::Error>, Duration) {
        let started = Instant::now();
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(30), self.run)
            .await
            .expect("run_until_stopped returned")
            .expect("run task did not panic");
        (result, started.elapsed())
    }
}

/// Deletes the test's stream when dropped, also when the test panics.
struct StreamGuard(String);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // Drop cannot await: use a private runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let config = JetStreamConfig::new(testkit::nats_url(), &prefix);
                if let Ok(js) = JetStream::connect(config).await {
                    let _ = js.delete_stream().await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_errors_then_stops_gracefully() {
    let prefix = testkit::unique_prefix("platform_app");
    let _stream = StreamGuard(prefix.clone());
    let module = TestModule::default();
    let handled = module.handled.clone();
    let finished = module.finished_after_cancel.clone();
    let app = App::build(config(&prefix), vec![Box::new(module)])
        .await
        .unwrap();
    assert_ne!(app.port(), 0, "port 0 resolves to the real port");
    let bus = app.bus().clone();
    let status = app.readiness().names();
    assert_eq!(
        status,
        ["consumer:test-pings", "nats", "postgres", "test:custom"]
    );
    let app = Running::start(app).await;
    let http = reqwest::Client::new();

    let res = http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let res = http.get(app.url("/liveness")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.text().await.unwrap(), ".");

    // Ready once the consumer is fetching, which happens shortly after start.
    let body = testkit::eventually(Duration::from_secs(10), "/readyz answers 200", || {
        let request = http.get(app.url("/readyz")).send();
        async move {
            let res = request.await.ok()?;
            (res.status() == 200).then_some(res.json::<Value>().await.ok()?)
        }
    })
    .await;
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {
            "nats": {"ok": true},
            "postgres": {"ok": true},
            "consumer:test-pings": {"ok": true},
            "test:custom": {"ok": true},
        }})
    );

    // The module's consumer receives what is published on the app's prefix.
    bus.publish(&Envelope::new(bus.subject(SUBJECT), &Empty {}))
        .await
        .unwrap();
    testkit::eventually(
        Duration::from_secs(10),
        "the consumer handled the message",
        || {
            let handled = handled.clone();
            async move { (handled.load(Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;

    // Module routes, with the shared JSON extractor and error shape.
    let res = http.get(app.url("/api/test/ping")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"pong": true}));

    let res = http.get(app.url("/api/test/error")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({
            "code": 3,
            "message": "the store name cannot be blank",
            "details": [{
                "@type": "type.googleapis.com/errors.ErrorType",
                "TypeCode": "BAD_REQUEST", "HTTPCode": "400", "GRPCCode": "3"
            }]
        })
    );

    let res = http
        .post(app.url("/api/test/items"))
        .body(r#"{"name":"Bot","price":"5.5","quantity":null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"name": "Bot", "price": 5.5, "quantity": 0})
    );

    let res = http
        .post(app.url("/api/test/items"))
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request body: "),
        "{body}"
    );

    let res = http
        .post(app.url("/api/test/items"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 413, "bodies over 1 MiB are refused");
    }

    // Router-level errors.
    let res = http
        .get(app.url("/api/unknown/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"code": 5, "message": "Not Found", "details": []})
    );
    let res = http.delete(app.url("/api/test/ping")).send().await.unwrap();
    assert_eq!(res.status(), 501);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"code": 12, "message": "Method Not Allowed", "details": []})
    );
    let res = http.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let res = http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/api/test/ping""#), "{text}");

    let (result, took) = app.stop().await;
    result.expect("a clean shutdown");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown waited for the tracked task"
    );
}

#[tokio::test]
async fn readyz_is_503_naming_postgres_when_the_database_is_unreachable() {
    let prefix = testkit::unique_prefix("platform_pg_down");
    let _stream = StreamGuard(prefix.clone());
    let closed = testkit::free_port();
    let pg_down = Config {
        database_url: format!("postgres://postgres@127.0.0.1:{closed}/postgres"),
        ..config(&prefix)
    };
    let app = Running::start(App::build(pg_down, vec![]).await.unwrap()).await;

    let res = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["checks"]["nats"], json!({"ok": true}));
    assert_eq!(body["checks"]["postgres"]["ok"], false);
    assert!(
        body["checks"]["postgres"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    // Alive all the same: a restart would not bring the database back.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );

    let (result, _) = app.stop().await;
    result.unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_stuck_work_after_the_timeout() {
    let prefix = testkit::unique_prefix("platform_stuck");
    let _stream = StreamGuard(prefix.clone());
    let short = Config {
        shutdown_timeout: Duration::from_secs(1),
        ..config(&prefix)
    };
    let app = Running::start(App::build(short, vec![Box::new(Stubborn)]).await.unwrap()).await;

    let (result, took) = app.stop().await;
    assert!(
        matches!(result, Err(platform::Error::ShutdownTimedOut(_))),
        "stuck work is reported: {result:?}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "waited the budget: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "but not much longer: {took:?}"
    );
}

#[tokio::test]
async fn start_up_failures_name_their_cause() {
    let prefix = testkit::unique_prefix("platform_fail");
    let _stream = StreamGuard(prefix.clone());
    let err = App::build(
        config(&prefix),
        vec![Box::new(TestModule::default()), Box::new(Failing)],
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("failing") && text.contains("schema migration 3 failed"),
        "{text}"
    );

    // A taken port fails before anything connects.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = Config {
        http_addr: taken.local_addr().unwrap(),
        ..config(&prefix)
    };
    let err = App::build(taken_addr, vec![]).await.unwrap_err();
    assert!(matches!(err, platform::Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains("HTTP_ADDR"), "{err}");

    // An unreachable NATS fails with its URL.
    let no_nats = Config {
        nats_url: format!("nats://127.0.0.1:{}", testkit::free_port()),
        ..config(&prefix)
    };
    let err = App::build(no_nats, vec![]).await.unwrap_err();
    assert!(err.to_string().contains("NATS"), "{err}");
}

#[tokio::test]
async fn readyz_names_nats_and_the_stalled_consumer_while_the_broker_is_down() {
    let mut nats = testkit::NatsServer::start().await;
    let prefix = testkit::unique_prefix("platform_nats_down");
    let cfg = Config {
        nats_url: nats.url(),
        ..config(&prefix)
    };
    let app = Running::start(
        App::build(cfg, vec![Box::new(TestModule::default())])
            .await
            .unwrap(),
    )
    .await;
    let ready = |want: u16| {
        let url = app.url("/readyz");
        async move {
            let res = reqwest::get(&url).await.ok()?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.ok()?;
            (status == want).then_some(body)
        }
    };
    testkit::eventually(Duration::from_secs(10), "ready", || ready(200)).await;

    nats.kill();
    let body = testkit::eventually(
        Duration::from_secs(20),
        "503 naming nats and the stalled consumer",
        || {
            let probe = ready(503);
            async move {
                let body = probe.await?;
                let consumer = &body["checks"][format!("consumer:{CONSUMER}")];
                (body["checks"]["nats"]["ok"] == false && consumer["ok"] == false).then_some(body)
            }
        },
    )
    .await;
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["checks"]["postgres"], json!({"ok": true}), "{body}");
    assert!(
        body["checks"]["nats"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    // The broker back: ready again without a restart.
    nats.restart().await;
    testkit::eventually(Duration::from_secs(30), "ready again", || ready(200)).await;
    let (result, _) = app.stop().await;
    result.unwrap();
}

/// A route with a path id whose handler counts its calls, to show refused requests never reach
/// it.
struct Ids {
    calls: Arc<AtomicU64>,
}

#[platform::async_trait]
impl Module for Ids {
    fn name(&self) -> &'static str {
        "ids"
    }

    async fn start(&self, _ctx: ModuleContext) -> anyhow::Result<Router> {
        let calls = self.calls.clone();
        Ok(Router::new().route(
            "/api/ids/{id}",
            axum::routing::put(
                move |axum::extract::Path(id): axum::extract::Path<String>,
                      ApiJson(item): ApiJson<Item>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { ApiJson(json!({"id": id, "name": item.name})) }
                },
            ),
        ))
    }
}

#[tokio::test]
async fn oversized_bodies_and_malformed_path_ids_are_refused_as_json_before_the_handler() {
    let prefix = testkit::unique_prefix("platform_limits");
    let _stream = StreamGuard(prefix.clone());
    let calls = Arc::new(AtomicU64::new(0));
    let config = Config {
        http_body_limit: 1024,
        ..config(&prefix)
    };
    let app = App::build(
        config,
        vec![Box::new(Ids {
            calls: calls.clone(),
        })],
    )
    .await
    .unwrap();
    let app = Running::start(app).await;
    let http = reqwest::Client::new();
    let put = |path: &str, body: String| http.put(app.url(path)).body(body).send();

    let res = put("/api/ids/abc", r#"{"name":"x"}"#.into()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"id": "abc", "name": "x"})
    );
    let longest = "a".repeat(platform::MAX_PATH_ID_LEN);
    let res = put(&format!("/api/ids/{longest}"), String::new())
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "an id of exactly the limit is fine");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // HTTP_BODY_LIMIT: a declared length over it, in the API's shape.
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2048));
    let res = put("/api/ids/abc", big).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], 8);
    assert_eq!(body["message"], "request body too large");
    assert_eq!(body["details"][0]["HTTPCode"], "413");

    for (path, problem) in [
        ("/api/ids/%FF%FE", "UTF-8"),
        ("/api/ids/a%00b", "control character"),
        ("/api/ids/a%0Ab", "control character"),
        ("/api/ids/%7F", "control character"),
        (
            &format!("/api/ids/{longest}b") as &str,
            "longer than 128 characters",
        ),
    ] {
        let res = put(path, r#"{"name":"x"}"#.into()).await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
        assert_eq!(res.headers()["content-type"], "application/json", "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], 3, "{path}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid path: ") && message.contains(problem),
            "{path}: {message}"
        );
    }
    let res = put("/api/ids/abc?x=a%00b", String::new()).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "invalid query string: NUL (%00) is not allowed"
    );
    let res = put("/api/ids/abc?x=%2500", String::new()).await.unwrap();
    assert_eq!(res.status(), 200, "an escaped `%00` is text, not NUL");
    // An empty segment matches no route: the API's 404.
    let res = put("/api/ids/", String::new()).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], 5);

    assert_eq!(calls.load(Ordering::SeqCst), 3, "no refused request ran");
    let (result, _) = app.stop().await;
    result.expect("a clean shutdown");
}
