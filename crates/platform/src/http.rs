//! The HTTP surface the host adds around the modules' routes: health, readiness, metrics, the
//! spec's router-level errors, and the layers every request passes (trace span, metrics,
//! timeout, body limit).

pub mod error;
pub mod json;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::readiness::Readiness;
use crate::telemetry;
use error::{ApiError, ErrorKind};

/// Largest request body accepted: the API's bodies are a few hundred bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The full router: the host's endpoints, the modules' routes, fallbacks and layers.
pub(crate) fn router(
    modules: Router,
    readiness: Readiness,
    openapi: utoipa::openapi::OpenApi,
    request_timeout: Duration,
) -> Router {
    let host = Router::new()
        .route("/healthz", get(healthz))
        .route("/liveness", get(liveness))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    // `/openapi.json` and the browsable UI at `/swagger-ui/` (assets built in).
    let docs: Router = utoipa_swagger_ui::SwaggerUi::new("/swagger-ui")
        .url("/openapi.json", openapi)
        .into();
    host.merge(docs)
        .merge(modules)
        // After the merge, so it reaches the modules' routes too.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let span = tracing::info_span!(
                "http",
                otel.kind = "server",
                otel.name = format!("{} {}", req.method(), route_of(req)),
                method = %req.method(),
                route = route_of(req),
                uri = %req.uri(),
            );
            // A client that sends a W3C `traceparent` gets its trace continued.
            if let Some(parent) = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(messaging::TraceParent::parse)
            {
                telemetry::adopt_trace(&span, parent);
            }
            span
        }))
}

/// The route template (`/api/baskets/{id}`), not the raw path: ids would explode the label
/// sets of metrics.
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
}

/// Alive: the process runs and serves HTTP. Says nothing about dependencies, on purpose — a
/// restart does not fix a database outage.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "alive"}))
}

/// The original's liveness endpoint, byte for byte.
async fn liveness() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], ".")
}

/// 200 when every readiness check passes, else 503; the body names each check.
async fn readyz(State(readiness): State<Readiness>) -> Response {
    let report = readiness.check().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !report.ready {
        let failing: Vec<&str> = report
            .checks
            .iter()
            .filter(|(_, c)| !c.ok)
            .map(|(n, _)| n.as_str())
            .collect();
        tracing::debug!(?failing, "not ready");
    }
    (status, axum::Json(report)).into_response()
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render_metrics(),
    )
}

/// Under an API root, the gateway's JSON 404; elsewhere the plain 404 of a file server.
async fn not_found(uri: Uri) -> Response {
    if is_api(&uri) {
        ApiError::router(ErrorKind::NotFound, "Not Found").into_response()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

/// The original answered a wrong method under an API root with 501, code 12.
async fn method_not_allowed(uri: Uri) -> Response {
    if is_api(&uri) {
        ApiError::router(ErrorKind::MethodNotAllowed, "Method Not Allowed").into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    }
}

fn is_api(uri: &Uri) -> bool {
    let path = uri.path();
    path == "/api" || path.starts_with("/api/")
}

/// Counts requests and their latency per route template, method and status.
async fn record_metrics(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_of(&req).to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
