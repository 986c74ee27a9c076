//! The HTTP surface the host adds around the modules' routes: health, readiness, metrics, the
//! spec's router-level errors, and the layers every request passes (trace span, metrics,
//! timeout, body limit, path id check).

pub mod error;
pub mod json;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawPathParams, Request, State};
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

/// Longest id accepted in a path, in characters. Ids are opaque (spec/api.md §1.4) but every
/// one the system hands out is a 36-character UUID; anything far longer is garbage or an
/// attack, and would otherwise travel into queries, event streams and log lines.
pub const MAX_PATH_ID_LEN: usize = 128;

/// The full router: the host's endpoints, the modules' routes, fallbacks and layers.
pub(crate) fn router(
    modules: Router,
    readiness: Readiness,
    openapi: utoipa::openapi::OpenApi,
    request_timeout: Duration,
    body_limit: usize,
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
        // Layers apply per route, after routing: the path parameters are known here.
        .layer(middleware::from_fn(check_path_and_query))
        // What handlers read through axum's extractors (`ApiJson` answers 413 in our shape).
        .layer(DefaultBodyLimit::max(body_limit))
        // Any other body read (a stream without a length) stops at the limit too.
        .layer(RequestBodyLimitLayer::new(body_limit))
        // A declared length over the limit is refused before anything reads the body, with the
        // API's JSON error (tower-http's own answer is plain text).
        .layer(middleware::from_fn_with_state(
            body_limit,
            refuse_large_bodies,
        ))
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

/// 413 in the API's error shape when `Content-Length` exceeds the limit.
async fn refuse_large_bodies(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            ApiError::new(ErrorKind::TooLarge, error::BODY_TOO_LARGE).into_response()
        }
        _ => next.run(req).await,
    }
}

/// Refuses an API request whose path ids are malformed — not UTF-8 once percent-decoded, empty,
/// longer than [`MAX_PATH_ID_LEN`] or holding control characters — or whose query string holds
/// a NUL, with a 400 in the API's shape before any handler runs. Such an id can never name
/// anything, and a NUL would reach PostgreSQL as an error (a 500) rather than a not-found.
/// Paths outside `/api` (the Swagger UI's assets) are not ids and pass unchecked.
async fn check_path_and_query(
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    if !is_api(req.uri()) {
        return next.run(req).await;
    }
    let problem = match &params {
        Ok(params) => params.iter().find_map(|(name, value)| {
            if value.is_empty() {
                Some(format!("`{name}` is empty"))
            } else if value.chars().count() > MAX_PATH_ID_LEN {
                Some(format!(
                    "`{name}` is longer than {MAX_PATH_ID_LEN} characters"
                ))
            } else if value.chars().any(char::is_control) {
                Some(format!("`{name}` contains a control character"))
            } else {
                None
            }
        }),
        // A route without parameters (or the fallback): nothing to check.
        Err(RawPathParamsRejection::MissingPathParams(_)) => None,
        Err(rejection) => Some(rejection.body_text()),
    };
    if let Some(problem) = problem {
        return ApiError::bad_request(format!("invalid path: {problem}")).into_response();
    }
    // A NUL can only arrive percent-encoded (a raw one is not a valid URI), and `%2500` is a
    // literal `%00` text, which this does not match.
    let query = req.uri().query().unwrap_or_default();
    if query
        .as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"%00"))
    {
        return ApiError::bad_request("invalid query string: NUL (%00) is not allowed")
            .into_response();
    }
    next.run(req).await
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
