//! The harness service crates use in their API tests (feature `testing`): the real host with the
//! given modules on port 0, a fresh database and a unique NATS prefix, an HTTP client, and a tap
//! that records every message published under the prefix. Everything is removed on drop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use messaging::{Bus, Envelope, header};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{App, Config, Module};

/// How long the harness waits for asynchronous outcomes before failing the test.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running app for one test.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The listening address.
    pub addr: SocketAddr,
    /// The app's bus (publish test messages, send queries).
    pub bus: Bus,
    /// The prefix (also the stream name).
    pub prefix: String,
    /// The test database (dropped with the app).
    pub db: TestDatabase,
    client: reqwest::Client,
    tap: Arc<Mutex<Vec<Envelope>>>,
    stop: CancellationToken,
    server: Option<JoinHandle<Result<(), crate::Error>>>,
    nats_url: String,
}

impl TestApp {
    /// Starts `modules` on a fresh database and prefix and waits until `/readyz` says ready.
    pub async fn spawn(label: &str, modules: Vec<Box<dyn Module>>) -> TestApp {
        let db = TestDatabase::create(label).await;
        Self::spawn_on(db, label, modules).await
    }

    /// Like [`spawn`](Self::spawn) on a database the test created (to start a second app on it).
    pub async fn spawn_on(db: TestDatabase, label: &str, modules: Vec<Box<dyn Module>>) -> TestApp {
        let prefix = testkit::unique_prefix(label);
        Self::spawn_with(db, &prefix, modules).await
    }

    /// Starts on a given database and prefix.
    pub async fn spawn_with(
        db: TestDatabase,
        prefix: &str,
        modules: Vec<Box<dyn Module>>,
    ) -> TestApp {
        let nats_url = testkit::nats_url();
        let config = Config {
            nats_url: nats_url.clone(),
            database_url: db.url().to_owned(),
            http_addr: "127.0.0.1:0".parse().expect("loopback address"),
            nats_prefix: prefix.to_owned(),
            shutdown_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        // The tap subscribes before anything is published.
        let tap: Arc<Mutex<Vec<Envelope>>> = Arc::default();
        let client = async_nats_client(&nats_url).await;
        let mut sub = client
            .subscribe(format!("{prefix}.>"))
            .await
            .expect("tap subscription");
        client.flush().await.expect("flush tap subscription");
        let t = tap.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Some(env) = envelope_of(&msg) {
                    t.lock().unwrap_or_else(|e| e.into_inner()).push(env);
                }
            }
        });
        let app = App::build(config, modules).await.expect("the app starts");
        let addr = app.local_addr();
        let bus = app.bus().clone();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let server = tokio::spawn(app.run_until_stopped(async move { s.cancelled().await }));
        let this = TestApp {
            base: format!("http://{addr}"),
            addr,
            bus,
            prefix: prefix.to_owned(),
            db,
            client: reqwest::Client::new(),
            tap,
            stop,
            server: Some(server),
            nats_url,
        };
        testkit::eventually(WAIT, "the app reports ready", || async {
            let (status, _) = this.get("/readyz").await;
            (status == StatusCode::OK).then_some(())
        })
        .await;
        this
    }

    /// Sends a request with a JSON body (or none) and returns the status and the JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends raw bytes as the body (invalid JSON, wrong types).
    pub async fn call_raw(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(&body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Every message published under the prefix so far (dead letters included).
    pub fn published(&self) -> Vec<Envelope> {
        self.tap.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Messages named `name` (fully qualified, e.g. `stores.v1.StoreCreated`) published so far.
    pub fn published_named(&self, name: &str) -> Vec<Envelope> {
        self.published()
            .into_iter()
            .filter(|e| e.name == name)
            .collect()
    }

    /// Waits until a message named `name` matching `check` is published, and returns it.
    pub async fn wait_for<F>(&self, name: &str, check: F) -> Envelope
    where
        F: Fn(&Envelope) -> bool,
    {
        let what = format!("a published {name}");
        testkit::eventually(WAIT, &what, || {
            let found = self.published_named(name).into_iter().find(|e| check(e));
            async move { found }
        })
        .await
    }

    /// Waits for a message named `name` and decodes it as `M`.
    pub async fn wait_for_message<M, F>(&self, name: &str, check: F) -> M
    where
        M: messaging::Message,
        F: Fn(&M) -> bool,
    {
        let env = self
            .wait_for(name, |e| {
                e.decode::<M>().map(|m| check(&m)).unwrap_or(false)
            })
            .await;
        env.decode::<M>().expect("decodes")
    }

    /// Messages on dead-letter subjects so far (a test that expects none asserts this is empty).
    pub fn dead_letters(&self) -> Vec<Envelope> {
        let prefix = format!("{}.deadletter.", self.prefix);
        self.published()
            .into_iter()
            .filter(|e| e.subject.starts_with(&prefix))
            .collect()
    }

    /// The NATS URL the app uses.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Stops the app gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        let url = self.nats_url.clone();
        let stream = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(stream)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn async_nats_client(url: &str) -> async_nats::Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to NATS at {url}: {e}"))
}

/// The envelope of a tapped NATS message (None for anything that is not one of ours).
fn envelope_of(msg: &async_nats::Message) -> Option<Envelope> {
    let headers = msg.headers.as_ref()?;
    let id = uuid::Uuid::parse_str(headers.get(header::NATS_MSG_ID)?.as_str()).ok()?;
    let name = headers.get(header::NAME)?.as_str().to_owned();
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in headers.iter() {
        let k: &str = k.as_ref();
        if k != header::NATS_MSG_ID
            && k != header::NAME
            && let Some(v) = v.first()
        {
            map.insert(k.to_owned(), v.as_str().to_owned());
        }
    }
    Some(Envelope {
        id,
        name,
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers: map,
    })
}
