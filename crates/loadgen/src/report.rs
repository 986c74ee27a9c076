//! Latency samples, percentiles and the run report (JSON and a text table).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// End-to-end name: checkout request sent → order seen `approved`.
pub const CHECKOUT_TO_APPROVED: &str = "checkout→approved";
/// End-to-end name: checkout request sent → order seen `completed`.
pub const CHECKOUT_TO_COMPLETED: &str = "checkout→completed";

/// The order status poll's route.
pub const STATUS_ROUTE: &str = "GET /api/ordering/{id}";

/// Nearest-rank percentile (`p` in 0..=100) of ascending `sorted`; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency distribution in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Summarises samples in microseconds (any order); `None` when there are none.
    pub fn from_micros(samples: &[u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |p: f64| percentile(&sorted, p).map_or(0.0, ms);
        let total: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        Some(Summary {
            count: sorted.len(),
            mean_ms: total as f64 / sorted.len() as f64 / 1000.0,
            p50_ms: at(50.0),
            p95_ms: at(95.0),
            p99_ms: at(99.0),
            max_ms: sorted.last().copied().map_or(0.0, ms),
        })
    }
}

/// Microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// An order that did not reach its final status in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unfinished {
    pub order_id: String,
    /// Status last seen (`""` when never seen).
    pub last_status: String,
    /// What the shopper was waiting for.
    pub waiting_for: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub url: String,
    pub concurrency: usize,
    pub fulfil: bool,
    pub requested_duration_s: Option<f64>,
    pub requested_count: Option<u64>,
    pub setup_s: f64,
    /// Load phase, from the first shopper's start to the last shopper's end (final wait included).
    pub elapsed_s: f64,
    pub checkouts: u64,
    pub approved: u64,
    pub completed: u64,
    pub rejected: u64,
    /// Checkouts divided by the time from the start to the last checkout.
    pub checkouts_per_s: f64,
    /// Approvals divided by the time from the start to the last approval.
    pub approved_per_s: f64,
    /// Completions divided by the time from the start to the last completion.
    pub completed_per_s: f64,
    pub errors_total: u64,
    /// Errors by route and kind.
    pub errors: BTreeMap<String, u64>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    pub unfinished_total: usize,
    /// The first unfinished orders (at most 50).
    pub unfinished: Vec<Unfinished>,
    /// End-to-end times by name ([`CHECKOUT_TO_APPROVED`], [`CHECKOUT_TO_COMPLETED`]).
    pub end_to_end: BTreeMap<String, Summary>,
    /// Every REST call by route template ("PUT /api/baskets/{id}/checkout").
    pub routes: BTreeMap<String, Summary>,
    /// One approved order (for calibrations).
    #[serde(default)]
    pub sample_order: Option<String>,
}

impl Report {
    /// The end-to-end summary called `name`.
    pub fn e2e(&self, name: &str) -> Option<&Summary> {
        self.end_to_end.get(name)
    }

    /// How many times a route was called.
    pub fn calls(&self, route: &str) -> usize {
        self.routes.get(route).map_or(0, |s| s.count)
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = if self.fulfil {
            "checkout → approved → completed"
        } else {
            "checkout → approved"
        };
        let _ = writeln!(
            out,
            "loadgen: {} shoppers against {} ({mode}); setup {:.1}s, load {:.1}s",
            self.concurrency, self.url, self.setup_s, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "checkouts {} ({:.1}/s)  approved {} ({:.1}/s)  completed {} ({:.1}/s)  rejected {}  errors {}  unfinished {}",
            self.checkouts,
            self.checkouts_per_s,
            self.approved,
            self.approved_per_s,
            self.completed,
            self.completed_per_s,
            self.rejected,
            self.errors_total,
            self.unfinished_total
        );
        let _ = writeln!(
            out,
            "\n{:<44} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "mean", "p50", "p95", "p99", "max"
        );
        let rows = self
            .end_to_end
            .iter()
            .chain(self.routes.iter())
            .map(|(name, s)| {
                format!(
                    "{name:<44} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    s.count, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
                )
            });
        for row in rows {
            let _ = writeln!(out, "{row}");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nerrors");
            for (kind, n) in &self.errors {
                let _ = writeln!(out, "  {n:>6}  {kind}");
            }
            for sample in &self.error_samples {
                let _ = writeln!(out, "  e.g. {sample}");
            }
        }
        if !self.unfinished.is_empty() {
            let _ = writeln!(out, "\nunfinished orders ({})", self.unfinished_total);
            for u in self.unfinished.iter().take(10) {
                let _ = writeln!(
                    out,
                    "  {}  last status {:?}, waiting for {}",
                    u.order_id, u.last_status, u.waiting_for
                );
            }
        }
        out
    }
}

/// Rate over a span; 0 when nothing happened.
pub fn rate(events: u64, span: Option<Duration>) -> f64 {
    match span {
        Some(d) if events > 0 && !d.is_zero() => events as f64 / d.as_secs_f64(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten values: p50 is the 5th, p95 and p99 the 10th.
        let ten: Vec<u64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 95.0), Some(100));
        assert_eq!(percentile(&ten, 99.0), Some(100));
        assert_eq!(percentile(&ten, 90.0), Some(90));
    }

    #[test]
    fn summary_of_unsorted_micros() {
        let samples = [3_000, 1_000, 2_000, 4_000];
        let s = Summary::from_micros(&samples).unwrap();
        assert_eq!(s.count, 4);
        assert!((s.mean_ms - 2.5).abs() < 1e-9);
        assert!((s.p50_ms - 2.0).abs() < 1e-9);
        assert!((s.p99_ms - 4.0).abs() < 1e-9);
        assert!((s.max_ms - 4.0).abs() < 1e-9);
        assert!(Summary::from_micros(&[]).is_none());
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0, Some(Duration::from_secs(1))), 0.0);
        assert_eq!(rate(10, None), 0.0);
        assert_eq!(rate(10, Some(Duration::ZERO)), 0.0);
        assert!((rate(50, Some(Duration::from_millis(500))) - 100.0).abs() < 1e-9);
    }

    fn sample_report() -> Report {
        let mut routes = BTreeMap::new();
        routes.insert(
            "PUT /api/baskets/{id}/checkout".to_owned(),
            Summary::from_micros(&[1_000, 2_000]).unwrap(),
        );
        let mut end_to_end = BTreeMap::new();
        end_to_end.insert(
            CHECKOUT_TO_APPROVED.to_owned(),
            Summary::from_micros(&[20_000, 30_000]).unwrap(),
        );
        let mut errors = BTreeMap::new();
        errors.insert("PUT /api/baskets/{id}/checkout: 500".to_owned(), 1);
        Report {
            url: "http://127.0.0.1:8080".into(),
            concurrency: 2,
            fulfil: false,
            requested_duration_s: Some(1.0),
            requested_count: None,
            setup_s: 0.5,
            elapsed_s: 1.2,
            checkouts: 2,
            approved: 2,
            completed: 0,
            rejected: 0,
            checkouts_per_s: 2.0,
            approved_per_s: 1.8,
            completed_per_s: 0.0,
            errors_total: 1,
            errors,
            error_samples: vec!["boom".into()],
            unfinished_total: 1,
            unfinished: vec![Unfinished {
                order_id: "o-1".into(),
                last_status: "pending".into(),
                waiting_for: "approved".into(),
            }],
            end_to_end,
            routes,
            sample_order: Some("o-2".into()),
        }
    }

    #[test]
    fn report_round_trips_through_json() {
        let report = sample_report();
        let json = serde_json::to_string_pretty(&report).unwrap();
        assert!(json.contains("\"checkout→approved\""), "{json}");
        assert!(json.contains("\"p99_ms\""), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn table_lists_routes_errors_and_unfinished() {
        let table = sample_report().table();
        assert!(table.contains("checkouts 2 (2.0/s)"), "{table}");
        assert!(table.contains("PUT /api/baskets/{id}/checkout"), "{table}");
        assert!(table.contains(CHECKOUT_TO_APPROVED), "{table}");
        assert!(table.contains("unfinished orders (1)"), "{table}");
        assert!(table.contains("o-1"), "{table}");
        assert!(table.contains("e.g. boom"), "{table}");
    }
}
