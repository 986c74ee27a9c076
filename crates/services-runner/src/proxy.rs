//! The one HTTP entry point in front of the separate service processes: `/api/<root>/...` goes
//! to an instance of the service owning that root (round robin over its copies), `/readyz` is
//! ready only when every instance is, `/healthz` and `/liveness` answer for the proxy itself,
//! `/_runner/instances` lists the instances with their process ids (for fault-injection tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::supervisor::Instance;
use crate::topology;

/// Requests larger than this are refused before they reach a service.
const BODY_LIMIT: usize = 1024 * 1024;

/// Shared by the handlers.
#[derive(Clone)]
pub struct Proxy {
    instances: Arc<Vec<Arc<Instance>>>,
    next: Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("instances", &self.instances.len())
            .finish()
    }
}

impl Proxy {
    /// A proxy over `instances`.
    pub fn new(instances: Vec<Arc<Instance>>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Proxy {
            instances: Arc::new(instances),
            next: Arc::default(),
            client,
        }
    }

    /// The entry point's routes.
    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"status": "alive"})) }),
            )
            .route(
                "/liveness",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], ".") }),
            )
            .route("/readyz", get(readyz))
            .route("/_runner/instances", get(instances))
            .fallback(forward)
            .with_state(self)
    }

    fn pick(&self, service: &'static topology::Service) -> Option<Arc<Instance>> {
        let copies: Vec<&Arc<Instance>> = self
            .instances
            .iter()
            .filter(|i| i.service.name == service.name)
            .collect();
        if copies.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(copies[n % copies.len()].clone())
    }
}

/// Each instance with its current process id (0 while restarting) and restart count: what a
/// fault-injection test needs to kill one service process and see the runner replace it.
async fn instances(State(proxy): State<Proxy>) -> axum::Json<Value> {
    let list: Vec<Value> = proxy
        .instances
        .iter()
        .map(|i| {
            json!({
                "instance": i.label(),
                "service": i.service.name,
                "pid": i.pid(),
                "restarts": i.restarts(),
            })
        })
        .collect();
    axum::Json(json!({ "instances": list }))
}

async fn readyz(State(proxy): State<Proxy>) -> Response {
    let checks = proxy.instances.iter().map(|instance| {
        let client = proxy.client.clone();
        let instance = instance.clone();
        async move {
            let url = format!("http://{}/readyz", instance.addr);
            let state = match client.get(url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => json!({"ok": true}),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    json!({"ok": false, "error": format!("readyz answered {status}"), "detail": body})
                }
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            (instance.label(), state)
        }
    });
    let results = futures_join(checks).await;
    let ready = results.iter().all(|(_, s)| s["ok"] == json!(true));
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": results.into_iter().collect::<serde_json::Map<String, Value>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn futures_join<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn not_found(path: &str) -> Response {
    if path.starts_with("/api/") || path == "/api" {
        let body = json!({"code": 5, "message": "Not Found", "details": []});
        (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found").into_response()
    }
}

/// Hop-by-hop headers are the connection's, not the message's (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(service) = topology::route(&path) else {
        return not_found(&path);
    };
    let Some(instance) = proxy.pick(service) else {
        return not_found(&path);
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or(path);
    let url = format!("http://{}{}", instance.addr, path_and_query);
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let body = json!({"code": 3, "message": "request body too large", "details": []});
            return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
        }
    };
    let mut outgoing = proxy.client.request(method, url).body(body);
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        outgoing = outgoing.header(name, value);
    }
    match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut builder = Response::builder().status(status);
            for (name, value) in answer.headers().iter().filter(|(n, _)| !hop_by_hop(n)) {
                builder = builder.header(name, value);
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            builder
                .body(Body::from(bytes))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => {
            tracing::warn!(instance = %instance.label(), error = %e, "service unreachable");
            let body = json!({
                "code": 14,
                "message": format!("service {} unavailable", service.name),
                "details": []
            });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}
