//! The readiness registry behind `GET /readyz`: the host registers NATS and PostgreSQL, modules
//! register their consumers and any check of their own (their database schema, a warm cache).
//!
//! A process is ready only when every registered check passes, so a load balancer or an
//! orchestrator stops sending work to an instance whose consumers have stopped or whose
//! database is unreachable, instead of letting requests fail one by one.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging::ConsumerStatus;
use serde::Serialize;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Probe = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;

#[derive(Clone)]
enum Check {
    Consumer(Arc<ConsumerStatus>),
    Probe(Probe),
}

/// A shared, cloneable set of named readiness checks.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, Check>>>,
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            checks: Arc::default(),
            timeout: CHECK_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.names())
            .finish()
    }
}

impl Readiness {
    /// An empty registry whose checks time out after [`CHECK_TIMEOUT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry with another per-check timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Readiness {
            timeout,
            ..Self::default()
        }
    }

    /// Registers a durable consumer as `consumer:<durable>`: ready while it is fetching.
    pub fn add_consumer(&self, status: Arc<ConsumerStatus>) {
        let name = format!("consumer:{}", status.durable);
        self.insert(name, Check::Consumer(status));
    }

    /// Registers a named asynchronous check, run on every `/readyz` within the timeout.
    ///
    /// The check gets no arguments: capture what it needs (a pool, a client) in the closure.
    /// Its error text is shown in the `/readyz` body, so keep secrets out of it.
    pub fn add_check<F, Fut, E>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let probe: Probe = Arc::new(move || {
            let fut = check();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        self.insert(name.into(), Check::Probe(probe));
    }

    /// The registered consumers (for per-consumer metrics).
    pub fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        self.lock()
            .values()
            .filter_map(|c| match c {
                Check::Consumer(status) => Some(status.clone()),
                Check::Probe(_) => None,
            })
            .collect()
    }

    /// The registered check names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Runs every check concurrently and reports each one's state.
    pub async fn check(&self) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let timeout = self.timeout;
        let results =
            futures_util::future::join_all(checks.into_iter().map(|(name, check)| async move {
                let state = match check {
                    Check::Consumer(status) => {
                        if status.is_running() {
                            CheckState::ok()
                        } else {
                            let reason = status
                                .last_error()
                                .unwrap_or_else(|| "not running".to_owned());
                            CheckState::failed(reason)
                        }
                    }
                    Check::Probe(probe) => match tokio::time::timeout(timeout, probe()).await {
                        Ok(Ok(())) => CheckState::ok(),
                        Ok(Err(e)) => CheckState::failed(e),
                        Err(_) => CheckState::failed(format!("no answer within {timeout:?}")),
                    },
                };
                (name, state)
            }))
            .await;
        let checks: BTreeMap<String, CheckState> = results.into_iter().collect();
        ReadinessReport {
            ready: checks.values().all(|c| c.ok),
            checks,
        }
    }

    fn insert(&self, name: String, check: Check) {
        if self.lock().insert(name.clone(), check).is_some() {
            tracing::warn!(check = %name, "readiness check registered twice; the last one wins");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Check>> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The outcome of one `/readyz` evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    /// Whether every check passed.
    pub ready: bool,
    /// Each check by name.
    pub checks: BTreeMap<String, CheckState>,
}

impl Serialize for ReadinessReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            status: &'static str,
            checks: &'a BTreeMap<String, CheckState>,
        }
        let status = if self.ready { "ready" } else { "not ready" };
        Body {
            status,
            checks: &self.checks,
        }
        .serialize(serializer)
    }
}

/// The state of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckState {
    /// Whether it passed.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckState {
    fn ok() -> Self {
        CheckState {
            ok: true,
            error: None,
        }
    }

    fn failed(error: impl Into<String>) -> Self {
        CheckState {
            ok: false,
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_every_check_passes() {
        let readiness = Readiness::new();
        assert!(
            readiness.check().await.ready,
            "no checks means nothing is failing"
        );

        readiness.add_check("db", || async { Ok::<_, String>(()) });
        let report = readiness.check().await;
        assert!(report.ready);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"status": "ready", "checks": {"db": {"ok": true}}})
        );

        readiness.add_check("cache", || async { Err("cold") });
        let report = readiness.check().await;
        assert!(!report.ready);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "status": "not ready",
                "checks": {"db": {"ok": true}, "cache": {"ok": false, "error": "cold"}}
            })
        );
        assert_eq!(readiness.names(), ["cache", "db"]);
    }

    #[tokio::test]
    async fn a_hanging_check_fails_after_the_timeout() {
        let readiness = Readiness::with_timeout(Duration::from_millis(50));
        readiness.add_check("slow", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, String>(())
        });
        let report = readiness.check().await;
        assert!(!report.checks["slow"].ok);
        assert!(
            report.checks["slow"]
                .error
                .as_deref()
                .unwrap()
                .contains("50ms")
        );
    }
}
