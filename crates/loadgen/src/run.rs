//! One load run: set up stores, products and customers, then let concurrent shoppers buy and
//! follow their orders, recording every REST call and the end-to-end times.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::args::RunPlan;
use crate::report::{
    CHECKOUT_TO_APPROVED, CHECKOUT_TO_COMPLETED, Report, STATUS_ROUTE, Summary, Unfinished, micros,
    rate,
};

const MAX_ERROR_SAMPLES: usize = 10;
const MAX_UNFINISHED_LISTED: usize = 50;

/// Small xorshift generator: enough to spread shoppers over customers and products.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the run records; shared by the shoppers.
#[derive(Default)]
struct Recorder {
    inner: Mutex<Samples>,
    checkouts: AtomicU64,
    approved: AtomicU64,
    completed: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct Samples {
    routes: HashMap<&'static str, Vec<u64>>,
    end_to_end: HashMap<&'static str, Vec<u64>>,
    errors: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    unfinished: Vec<Unfinished>,
    unfinished_total: usize,
    last_checkout: Option<Instant>,
    last_approved: Option<Instant>,
    last_completed: Option<Instant>,
    first_approved_order: Option<String>,
}

impl Recorder {
    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self, route: &'static str, took: Duration) {
        self.samples()
            .routes
            .entry(route)
            .or_default()
            .push(micros(took));
    }

    fn error(&self, kind: String, detail: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples();
        *s.errors.entry(kind).or_default() += 1;
        if s.error_samples.len() < MAX_ERROR_SAMPLES {
            s.error_samples.push(detail);
        }
    }

    fn checkout(&self) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        self.samples().last_checkout = Some(Instant::now());
    }

    fn reached(&self, name: &'static str, since: Instant, order: &str) {
        let now = Instant::now();
        let mut s = self.samples();
        s.end_to_end
            .entry(name)
            .or_default()
            .push(micros(now - since));
        if name == CHECKOUT_TO_APPROVED {
            s.last_approved = Some(now);
            if s.first_approved_order.is_none() {
                s.first_approved_order = Some(order.to_owned());
            }
            self.approved.fetch_add(1, Ordering::Relaxed);
        } else {
            s.last_completed = Some(now);
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unfinished(&self, order: &str, last_status: &str, waiting_for: &str) {
        let mut s = self.samples();
        s.unfinished_total += 1;
        if s.unfinished.len() < MAX_UNFINISHED_LISTED {
            s.unfinished.push(Unfinished {
                order_id: order.to_owned(),
                last_status: last_status.to_owned(),
                waiting_for: waiting_for.to_owned(),
            });
        }
    }
}

/// Why a call did not give the expected answer (already recorded as an error).
#[derive(Debug)]
struct Failed;

/// The REST client: every call is timed under its route template.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    recorder: Arc<Recorder>,
}

impl Api {
    /// Sends one request; the latency is recorded whatever the status. Transport errors are
    /// recorded as errors.
    async fn call(
        &self,
        method: Method,
        route: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), Failed> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        self.recorder.call(route, started.elapsed());
        match outcome {
            Ok((status, bytes)) => Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )),
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                self.recorder
                    .error(format!("{route}: {kind}"), format!("{route} {path}: {e}"));
                Err(Failed)
            }
        }
    }

    /// A call that must answer 200.
    async fn ok(
        &self,
        method: Method,
        route: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failed> {
        let (status, value) = self.call(method, route, path, body).await?;
        if status == StatusCode::OK {
            Ok(value)
        } else {
            self.recorder.error(
                format!("{route}: {}", status.as_u16()),
                format!("{route} {path}: {status} {value}"),
            );
            Err(Failed)
        }
    }

    /// A `POST` answering `{"id"}`.
    async fn create(&self, route: &'static str, path: &str, body: Value) -> Result<String, Failed> {
        let value = self.ok(Method::POST, route, path, Some(&body)).await?;
        match value["id"].as_str() {
            Some(id) => Ok(id.to_owned()),
            None => {
                self.recorder
                    .error(format!("{route}: no id"), format!("{route}: {value}"));
                Err(Failed)
            }
        }
    }
}

/// The stores, products and customers the shoppers use.
#[derive(Debug, Clone)]
struct Mall {
    /// Product ids by store.
    products: Vec<Vec<String>>,
    customers: Vec<String>,
}

async fn set_up(api: &Api, plan: &RunPlan, tag: &str) -> Result<Mall> {
    let fail = || {
        anyhow::anyhow!(
            "setting up stores, products and customers failed: {}",
            api.recorder.samples().error_samples.join("; ")
        )
    };
    let mut tasks = JoinSet::new();
    for s in 0..plan.stores {
        let api = api.clone();
        let products = plan.products;
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let store = api
                .create(
                    "POST /api/stores",
                    "/api/stores",
                    json!({"name": format!("Loadgen {tag} store {s}"), "location": "Level 1"}),
                )
                .await?;
            let mut ids = Vec::with_capacity(products);
            for p in 0..products {
                let price = 5.0 + ((s * 7 + p * 3) % 700) as f64 / 100.0;
                ids.push(
                    api.create(
                        "POST /api/stores/{id}/products",
                        &format!("/api/stores/{store}/products"),
                        json!({"name": format!("Product {s}-{p}"), "description": "load test",
                               "sku": format!("LG-{s}-{p}"), "price": price}),
                    )
                    .await?,
                );
            }
            Ok::<_, Failed>(ids)
        });
    }
    let mut products = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        products.push(joined?.map_err(|_| fail())?);
    }
    let mut customers = Vec::with_capacity(plan.customers);
    let mut tasks = JoinSet::new();
    for c in 0..plan.customers {
        let api = api.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            api.create(
                "POST /api/customers",
                "/api/customers",
                json!({"name": format!("Shopper {tag} {c}"), "smsNumber": format!("555-{:04}", c % 10_000)}),
            )
            .await
        });
        // Keep the setup burst modest.
        if tasks.len() >= 8
            && let Some(joined) = tasks.join_next().await
        {
            customers.push(joined?.map_err(|_| fail())?);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        customers.push(joined?.map_err(|_| fail())?);
    }
    Ok(Mall {
        products,
        customers,
    })
}

/// Shared run state.
struct Shared {
    api: Api,
    plan: RunPlan,
    mall: Mall,
    started: Instant,
    /// No new orders after this.
    stop_starting: Instant,
    /// Nothing at all after this (the --max-duration cap).
    hard_stop: Instant,
    started_orders: AtomicU64,
}

impl Shared {
    /// Claims the next order, or `false` when the run is over.
    fn claim(&self) -> bool {
        if Instant::now() >= self.stop_starting {
            return false;
        }
        let n = self.started_orders.fetch_add(1, Ordering::Relaxed);
        self.plan.count.is_none_or(|count| n < count)
    }
}

/// Runs the plan and returns the report (also written to `--json-out` if given).
pub async fn run(plan: &RunPlan) -> Result<Report> {
    let begun = Instant::now();
    let hard_stop = begun + plan.max_duration;
    let client = reqwest::Client::builder()
        .timeout(plan.request_timeout)
        .pool_max_idle_per_host(plan.concurrency * 2 + 8)
        .tcp_nodelay(true)
        .build()
        .context("HTTP client")?;
    let recorder = Arc::new(Recorder::default());
    let api = Api {
        client: client.clone(),
        base: plan.base.clone(),
        recorder: recorder.clone(),
    };
    let ready = client
        .get(format!("{}/readyz", plan.base))
        .send()
        .await
        .with_context(|| format!("{} does not answer", plan.base))?;
    if ready.status() != StatusCode::OK {
        bail!("{}/readyz answered {}", plan.base, ready.status());
    }

    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mall = set_up(&api, plan, &tag).await?;
    let setup = begun.elapsed();

    // Setup calls are not part of the measurement.
    let recorder = Arc::new(Recorder::default());
    let api = Api { recorder, ..api };
    let started = Instant::now();
    let stop_starting = plan
        .duration
        .map_or(hard_stop, |d| (started + d).min(hard_stop));
    let shared = Arc::new(Shared {
        api,
        plan: plan.clone(),
        mall,
        started,
        stop_starting,
        hard_stop,
        started_orders: AtomicU64::new(0),
    });

    let mut shoppers = JoinSet::new();
    for i in 0..plan.concurrency {
        let shared = shared.clone();
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 ^ i as u64;
        shoppers.spawn(async move { shopper(&shared, i, Rng::seeded(seed)).await });
    }
    let progress = plan
        .progress
        .then(|| tokio::spawn(progress_line(shared.clone())));
    while let Some(joined) = shoppers.join_next().await {
        joined.context("a shopper panicked")?;
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        let _ = progress.await;
        eprintln!();
    }

    let report = build_report(&shared, setup, elapsed);
    if let Some(path) = &plan.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(report)
}

fn build_report(shared: &Shared, setup: Duration, elapsed: Duration) -> Report {
    let r = &shared.api.recorder;
    let s = r.samples();
    let since = |t: Option<Instant>| t.map(|t| t - shared.started);
    let summarize = |m: &HashMap<&'static str, Vec<u64>>| {
        m.iter()
            .filter_map(|(k, v)| Summary::from_micros(v).map(|s| ((*k).to_owned(), s)))
            .collect::<BTreeMap<_, _>>()
    };
    let checkouts = r.checkouts.load(Ordering::Relaxed);
    let approved = r.approved.load(Ordering::Relaxed);
    let completed = r.completed.load(Ordering::Relaxed);
    Report {
        url: shared.plan.base.clone(),
        concurrency: shared.plan.concurrency,
        fulfil: shared.plan.fulfil,
        requested_duration_s: shared.plan.duration.map(|d| d.as_secs_f64()),
        requested_count: shared.plan.count,
        setup_s: setup.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        checkouts,
        approved,
        completed,
        rejected: r.rejected.load(Ordering::Relaxed),
        checkouts_per_s: rate(checkouts, since(s.last_checkout)),
        approved_per_s: rate(approved, since(s.last_approved)),
        completed_per_s: rate(completed, since(s.last_completed)),
        errors_total: r.errors.load(Ordering::Relaxed),
        errors: s.errors.clone(),
        error_samples: s.error_samples.clone(),
        unfinished_total: s.unfinished_total,
        unfinished: s.unfinished.clone(),
        end_to_end: summarize(&s.end_to_end),
        routes: summarize(&s.routes),
        sample_order: s.first_approved_order.clone(),
    }
}

async fn progress_line(shared: Arc<Shared>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let r = &shared.api.recorder;
    loop {
        tokio::time::sleep(every).await;
        let t = shared.started.elapsed().as_secs_f64();
        let checkouts = r.checkouts.load(Ordering::Relaxed);
        let line = format!(
            "[{t:6.1}s] c={} checkouts {checkouts} ({:.1}/s) approved {} completed {} rejected {} errors {}",
            shared.plan.concurrency,
            checkouts as f64 / t.max(0.001),
            r.approved.load(Ordering::Relaxed),
            r.completed.load(Ordering::Relaxed),
            r.rejected.load(Ordering::Relaxed),
            r.errors.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

async fn shopper(shared: &Shared, index: usize, mut rng: Rng) {
    while shared.claim() {
        if buy_and_follow(shared, index, &mut rng).await.is_err() {
            // Do not spin on a failing system.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One order: payment, basket, 1–4 items, checkout, then follow it.
async fn buy_and_follow(shared: &Shared, index: usize, rng: &mut Rng) -> Result<(), Failed> {
    let api = &shared.api;
    let mall = &shared.mall;
    let customer = &mall.customers[rng.below(mall.customers.len())];
    let payment = api
        .create(
            "POST /api/payments",
            "/api/payments",
            json!({"customerId": customer, "amount": 1000.0}),
        )
        .await?;
    let basket = api
        .create(
            "POST /api/baskets",
            "/api/baskets",
            json!({"customerId": customer}),
        )
        .await?;
    let items = 1 + rng.below(4);
    for _ in 0..items {
        let store = &mall.products[rng.below(mall.products.len())];
        let product = &store[rng.below(store.len())];
        api.ok(
            Method::PUT,
            "PUT /api/baskets/{id}/addItem",
            &format!("/api/baskets/{basket}/addItem"),
            Some(&json!({"productId": product, "quantity": 1 + rng.below(3)})),
        )
        .await?;
    }
    let checkout_at = Instant::now();
    api.ok(
        Method::PUT,
        "PUT /api/baskets/{id}/checkout",
        &format!("/api/baskets/{basket}/checkout"),
        Some(&json!({"paymentId": payment})),
    )
    .await?;
    api.recorder.checkout();

    // The order id is the basket id.
    let order = basket;
    let deadline = (checkout_at + shared.plan.order_timeout).min(shared.hard_stop);
    let approved = follow(shared, &order, "approved", checkout_at, deadline).await?;
    api.recorder
        .reached(CHECKOUT_TO_APPROVED, checkout_at, &order);
    if !shared.plan.fulfil {
        return Ok(());
    }

    let list = approved["order"]["shoppingId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if list.is_empty() {
        api.recorder.error(
            "approved order without shoppingId".into(),
            format!("{order}: {approved}"),
        );
        api.recorder.unfinished(&order, "approved", "shopping list");
        return Err(Failed);
    }
    let fulfil = async {
        api.ok(
            Method::PUT,
            "PUT /api/depot/shopping/{id}/assign",
            &format!("/api/depot/shopping/{list}/assign"),
            Some(&json!({"botId": format!("bot-{index}")})),
        )
        .await?;
        api.ok(
            Method::PUT,
            "PUT /api/depot/shopping/{id}/complete",
            &format!("/api/depot/shopping/{list}/complete"),
            Some(&json!({})),
        )
        .await?;
        Ok::<_, Failed>(())
    };
    if fulfil.await.is_err() {
        api.recorder
            .unfinished(&order, "approved", "depot assign/complete");
        return Err(Failed);
    }
    // The invoice exists once payments has consumed OrderReadied: retry while 404.
    let pay_path = format!("/api/payments/invoices/{order}/pay");
    let paying_since = Instant::now();
    loop {
        let (status, body) = api
            .call(
                Method::PUT,
                "PUT /api/payments/invoices/{id}/pay",
                &pay_path,
                Some(&json!({})),
            )
            .await
            .inspect_err(|_| api.recorder.unfinished(&order, "?", "invoice payment"))?;
        if status == StatusCode::OK {
            break;
        }
        if status != StatusCode::NOT_FOUND {
            api.recorder.error(
                format!("PUT /api/payments/invoices/{{id}}/pay: {}", status.as_u16()),
                format!("{pay_path}: {status} {body}"),
            );
            api.recorder.unfinished(&order, "?", "invoice payment");
            return Err(Failed);
        }
        if Instant::now() >= deadline {
            api.recorder
                .unfinished(&order, "approved or ready", "the invoice");
            return Err(Failed);
        }
        tokio::time::sleep(poll_pause(&shared.plan, paying_since.elapsed())).await;
    }
    follow(shared, &order, "completed", Instant::now(), deadline).await?;
    api.recorder
        .reached(CHECKOUT_TO_COMPLETED, checkout_at, &order);
    Ok(())
}

/// How long to wait before the next poll after waiting `waited` for something: a twentieth of it,
/// within the plan's bounds, so the time measured is at most ~5 % late and slow orders do not
/// draw a storm of polls.
fn poll_pause(plan: &RunPlan, waited: Duration) -> Duration {
    (waited / 20).clamp(plan.poll_interval, plan.poll_max)
}

/// Polls the order (waiting since `since`) until it has `target`; a rejection or the deadline
/// ends it as unfinished.
async fn follow(
    shared: &Shared,
    order: &str,
    target: &str,
    since: Instant,
    deadline: Instant,
) -> Result<Value, Failed> {
    let api = &shared.api;
    let path = format!("/api/ordering/{order}");
    let mut last = String::new();
    loop {
        if let Ok((status, body)) = api.call(Method::GET, STATUS_ROUTE, &path, None).await {
            if status == StatusCode::OK {
                let now = body["order"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if now == target {
                    return Ok(body);
                }
                if matches!(now.as_str(), "rejected" | "cancelled") {
                    api.recorder.rejected.fetch_add(1, Ordering::Relaxed);
                    api.recorder.error(
                        format!("order {now}"),
                        format!("order {order} was {now}: {body}"),
                    );
                    api.recorder.unfinished(order, &now, target);
                    return Err(Failed);
                }
                last = now;
            } else if status == StatusCode::NOT_FOUND {
                // Ordering has not consumed BasketCheckedOut yet.
                last = "(not created yet)".to_owned();
            } else {
                api.recorder.error(
                    format!("GET /api/ordering/{{id}}: {}", status.as_u16()),
                    format!("{path}: {status} {body}"),
                );
            }
        }
        if Instant::now() >= deadline {
            api.recorder.unfinished(order, &last, target);
            return Err(Failed);
        }
        tokio::time::sleep(poll_pause(&shared.plan, since.elapsed())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_pause_a_twentieth_of_the_wait_within_bounds() {
        use clap::Parser as _;
        let plan = crate::args::Cli::parse_from(["loadgen"])
            .run
            .validate()
            .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            poll_pause(&plan, ms(0)),
            ms(2),
            "never below --poll-interval"
        );
        assert_eq!(poll_pause(&plan, ms(100)), ms(5));
        assert_eq!(
            poll_pause(&plan, ms(5000)),
            ms(20),
            "never above --poll-max"
        );
    }

    #[test]
    fn rng_stays_in_range_and_varies() {
        let mut rng = Rng::seeded(42);
        let mut seen = [0usize; 4];
        for _ in 0..1000 {
            seen[rng.below(4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
        assert_eq!(Rng::seeded(0).below(1), 0);
    }

    #[test]
    fn recorder_counts_and_caps() {
        let r = Recorder::default();
        for i in 0..(MAX_ERROR_SAMPLES + 5) {
            r.error("kind".into(), format!("detail {i}"));
        }
        for i in 0..(MAX_UNFINISHED_LISTED + 3) {
            r.unfinished(&format!("o{i}"), "pending", "approved");
        }
        let t0 = Instant::now();
        r.checkout();
        r.reached(CHECKOUT_TO_APPROVED, t0, "o-first");
        let s = r.samples();
        assert_eq!(s.errors["kind"], (MAX_ERROR_SAMPLES + 5) as u64);
        assert_eq!(s.error_samples.len(), MAX_ERROR_SAMPLES);
        assert_eq!(s.unfinished.len(), MAX_UNFINISHED_LISTED);
        assert_eq!(s.unfinished_total, MAX_UNFINISHED_LISTED + 3);
        assert_eq!(s.end_to_end[CHECKOUT_TO_APPROVED].len(), 1);
        assert_eq!(r.approved.load(Ordering::Relaxed), 1);
        assert_eq!(r.checkouts.load(Ordering::Relaxed), 1);
        assert_eq!(s.first_approved_order.as_deref(), Some("o-first"));
    }
}
