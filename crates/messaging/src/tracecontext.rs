//! The seam between envelopes and the process's tracing integration. The messaging crate knows
//! W3C trace contexts ([`TraceParent`]) but not OpenTelemetry; the host installs two hooks
//! (platform does, with tracing-opentelemetry) so that
//! - a new envelope carries the trace of the span it is created in (a REST request, a handler),
//! - the span that handles or publishes a message continues the trace of its `traceparent`.
//!
//! Without hooks, envelopes start a new trace or continue their cause's, as before.

use std::sync::OnceLock;

use crate::envelope::TraceParent;

/// What the host's tracing integration provides.
#[derive(Debug, Clone, Copy)]
pub struct TraceHooks {
    /// The current span's trace context (its trace id, its span id as the parent), if any.
    pub current: fn() -> Option<TraceParent>,
    /// Makes the not yet entered `span` a child of the remote span `parent`.
    pub adopt: fn(&tracing::Span, TraceParent),
}

static HOOKS: OnceLock<TraceHooks> = OnceLock::new();

/// Installs the hooks for the whole process; `false` if some were installed already.
pub fn install_trace_hooks(hooks: TraceHooks) -> bool {
    HOOKS.set(hooks).is_ok()
}

/// The current span's trace context, when a tracing integration is installed and knows one.
pub fn current_trace() -> Option<TraceParent> {
    HOOKS.get().and_then(|h| (h.current)())
}

/// Parents `span` on the trace context `parent` returns (no-op without hooks, for a disabled
/// span, or without a parent). `parent` is only called when it matters: parsing the
/// `traceparent` of every message cost measurable throughput where nothing traces.
pub(crate) fn adopt(span: &tracing::Span, parent: impl FnOnce() -> Option<TraceParent>) {
    if let Some(hooks) = HOOKS.get()
        && !span.is_disabled()
        && let Some(parent) = parent()
    {
        (hooks.adopt)(span, parent);
    }
}
