//! Logs and metrics for the whole process: a `tracing` subscriber configured from
//! `LOG_LEVEL` / `LOG_FORMAT`, and the one Prometheus recorder every `metrics` macro reports to.
//!
//! Both are process-global, so both are idempotent: tests build several apps in one process and
//! each may call these again.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// Latency buckets (seconds) for every histogram; spans the spec's 10 ms … 5 s and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global `tracing` subscriber. Returns `false` (and changes nothing) when one is
/// already installed, e.g. by an earlier test in the same process.
///
/// Spans get OpenTelemetry contexts (so a message's handler continues the trace of its
/// `traceparent` and messages published inside it carry that trace); they are exported over
/// OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(config: &Config) -> bool {
    let endpoint = config
        .otel_exporter_otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let mut provider = SdkTracerProvider::builder().with_resource(resource());
    let mut export_error = None;
    if let Some(endpoint) = endpoint {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
        {
            Ok(exporter) => provider = provider.with_batch_exporter(exporter),
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let installed = install(config, provider.build());
    if installed {
        match (endpoint, export_error) {
            (Some(endpoint), None) => tracing::info!(%endpoint, "exporting traces over OTLP"),
            (Some(endpoint), Some(error)) => {
                tracing::warn!(%endpoint, %error, "cannot export traces; continuing without")
            }
            (None, _) => {}
        }
    }
    installed
}

/// Like [`init`], exporting every finished span to `exporter` at once (tests collect spans
/// in memory with it). Returns `false` when a subscriber is installed already.
pub fn init_with_exporter<E>(config: &Config, exporter: E) -> bool
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_simple_exporter(exporter)
        .build();
    install(config, provider)
}

fn resource() -> opentelemetry_sdk::Resource {
    let name = std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mallbots".to_owned());
    opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build()
}

/// Spans handed to OpenTelemetry: ours down to debug (publish, relay batch), nothing of the
/// exporter's own stack (it would trace its own exports).
const TRACE_FILTER: &str = "info,messaging=debug,persistence=debug,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

fn install(config: &Config, provider: SdkTracerProvider) -> bool {
    // The config parser validated the filter already; fall back to `info` rather than fail.
    let filter = EnvFilter::builder()
        .parse(&config.log_level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer();
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    let tracer = provider.tracer("mallbots");
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(EnvFilter::new(TRACE_FILTER));
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if installed {
        // Kept for the life of the process; its batch processor flushes on drop at exit.
        let _ = PROVIDER.set(provider);
        messaging::install_trace_hooks(messaging::TraceHooks {
            current: current_trace,
            adopt: adopt_trace,
        });
    }
    installed
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Flushes spans not yet exported (called at shutdown; a no-op without an exporter).
pub fn flush_traces() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// The current span's OpenTelemetry context as a W3C trace parent.
fn current_trace() -> Option<messaging::TraceParent> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(messaging::TraceParent {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        flags: sc.trace_flags().to_u8(),
    })
}

/// Makes `span` a child of the remote span `parent`.
pub(crate) fn adopt_trace(span: &tracing::Span, parent: messaging::TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id.to_be_bytes()),
        SpanId::from_bytes(parent.span_id.to_be_bytes()),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The process's Prometheus recorder, installed on first use.
///
/// If something else already installed a global recorder, a private one is returned so
/// `/metrics` still answers (with only what is recorded through it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("latency buckets are not empty")
        };
        builder().install_recorder().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics shows a private one");
            builder().build_recorder().handle()
        })
    })
}

/// Renders the Prometheus text exposition, doing the recorder's upkeep first (it has no
/// background task of its own without the exporter's HTTP listener).
pub fn render_metrics() -> String {
    let handle = prometheus();
    handle.run_upkeep();
    handle.render()
}

/// How often recorded histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Does the recorder's upkeep every `interval` until `shutdown`. The recorder queues every
/// histogram sample until upkeep folds it into the buckets; `/metrics` does that on each
/// scrape, but a process nobody scrapes kept every sample: the monolith grew by ~0.7 KiB per
/// checkout (≈ 3 MiB a minute at 50 checkouts/s) until this ran on its own.
pub async fn run_metrics_upkeep(
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    every(interval, shutdown, || async { prometheus().run_upkeep() }).await;
}

/// Runs `work` now and then every `interval` until `shutdown`; a late run delays the next
/// rather than bunching them up.
async fn every<F, Fut>(
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        work().await;
    }
}

/// How often the broker-side gauges (consumer pending counts, dead-letter depths) are refreshed.
pub const BROKER_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Refreshes, every `interval` until `shutdown`, the gauges only the broker knows:
/// - `messaging_consumer_pending{consumer}`: messages of the durable's subject not yet delivered;
/// - `messaging_consumer_ack_pending{consumer}`: delivered, not yet acknowledged;
/// - `messaging_dead_letters{consumer}`: dead letters stored on `<prefix>.deadletter.<consumer>`.
///
/// Every consumer registered with `readiness` gets all three series (zero included), so
/// dashboards and alerts see them before anything goes wrong. A failed query leaves the last
/// values and is logged at debug level: the broker being away is readiness's business.
pub async fn report_broker_metrics(
    jetstream: messaging::jetstream::JetStream,
    readiness: crate::Readiness,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    every(interval, shutdown, || {
        let (jetstream, readiness) = (jetstream.clone(), readiness.clone());
        async move { refresh_broker_metrics(&jetstream, &readiness).await }
    })
    .await;
}

/// One refresh of [`report_broker_metrics`].
async fn refresh_broker_metrics(
    jetstream: &messaging::jetstream::JetStream,
    readiness: &crate::Readiness,
) {
    let durables: Vec<String> = readiness
        .consumers()
        .iter()
        .map(|c| c.durable.clone())
        .collect();
    for durable in &durables {
        match jetstream.consumer_lag(durable).await {
            Ok((pending, ack_pending)) => {
                metrics::gauge!("messaging_consumer_pending", "consumer" => durable.clone())
                    .set(pending as f64);
                metrics::gauge!("messaging_consumer_ack_pending", "consumer" => durable.clone())
                    .set(ack_pending as f64);
            }
            Err(e) => {
                tracing::debug!(consumer = %durable, error = %e, "consumer lag unavailable")
            }
        }
    }
    match jetstream.dead_letter_counts().await {
        Ok(counts) => {
            let mut names: std::collections::BTreeSet<&String> = durables.iter().collect();
            names.extend(counts.keys());
            for name in names {
                let depth = counts.get(name).copied().unwrap_or(0);
                metrics::gauge!("messaging_dead_letters", "consumer" => name.clone())
                    .set(depth as f64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "dead-letter depths unavailable"),
    }
}
