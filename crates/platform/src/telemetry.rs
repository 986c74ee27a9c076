//! Logs and metrics for the whole process: a `tracing` subscriber configured from
//! `LOG_LEVEL` / `LOG_FORMAT`, and the one Prometheus recorder every `metrics` macro reports to.
//!
//! Both are process-global, so both are idempotent: tests build several apps in one process and
//! each may call these again.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Latency buckets (seconds) for every histogram; spans the spec's 10 ms … 5 s and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global `tracing` subscriber. Returns `false` (and changes nothing) when one is
/// already installed, e.g. by an earlier test in the same process.
pub fn init(config: &Config) -> bool {
    // The config parser validated the filter already; fall back to `info` rather than fail.
    let filter = EnvFilter::builder()
        .parse(&config.log_level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    }
    .is_ok();
    if installed && let Some(endpoint) = &config.otel_exporter_otlp_endpoint {
        // Reserved for the OpenTelemetry exporter; say so instead of silently ignoring it.
        tracing::warn!(%endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT is set but trace export is not built in yet");
    }
    installed
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
