//! Fault injection: a bounded load of shoppers runs against the real system over REST while one
//! fault happens; once the system recovers, every accepted checkout is checked to have reached
//! a final state and to have left each of its effects exactly once.
//!
//! Effects are counted from the modules' own tables (the monolith's one database or each
//! service's database), not from read models that an upsert would keep looking right: event
//! store rows per order, outbox rows per aggregate, shopping lists, invoices, saga commands,
//! notifications, and the SMS the notifications sender logged. A shopper's expected effects
//! depend on its path: a paid-up shopper drives its order to `completed` (approved, bot
//! assigned, shopping completed, ready, invoice paid); every fifth shopper checks out with a
//! payment that does not exist and its order must end `rejected` with the list canceled.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::TryStreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::System;

/// How long, after the fault ended, every order has to become final (and the system quiet).
pub const RECOVERY_BUDGET: Duration = Duration::from_secs(120);

/// How many checkouts each fault test runs: `FAULTS_CHECKOUTS`, default 20.
pub fn checkouts() -> usize {
    std::env::var("FAULTS_CHECKOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
}

/// A REST client for shoppers: it must outlive restarts of the system and tolerate failures
/// (connection refused, 5xx) while the fault lasts, so every call reports rather than panics.
#[derive(Clone)]
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// One attempt: `None` when there was no HTTP answer at all.
    async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(StatusCode, Value)> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Retries while the system cannot answer (no response, or a 5xx: the fault is on), until
    /// `deadline`; returns the first real answer. The flag says whether an earlier attempt may
    /// have taken effect without its answer arriving (so a 4xx must be judged by reading state).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        deadline: Instant,
    ) -> Option<((StatusCode, Value), bool)> {
        let mut ambiguous = false;
        loop {
            match self.once(method.clone(), path, body.as_ref()).await {
                Some((status, value)) if !status.is_server_error() => {
                    return Some(((status, value), ambiguous));
                }
                _ => ambiguous = true,
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST` creating something, retried while the system cannot answer; returns the new id.
    async fn create(&self, path: &str, body: Value, deadline: Instant) -> Result<String, String> {
        match self.call(Method::POST, path, Some(body), deadline).await {
            Some(((StatusCode::OK, v), _)) => v["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("POST {path} returned no id: {v}")),
            Some(((status, v), _)) => Err(format!("POST {path}: {status} {v}")),
            None => Err(format!("POST {path}: no answer before the deadline")),
        }
    }

    /// `GET` a JSON field, `None` while it is unavailable (404, fault).
    async fn read(&self, path: &str) -> Option<Value> {
        match self.once(Method::GET, path, None).await {
            Some((StatusCode::OK, v)) => Some(v),
            _ => None,
        }
    }

    /// Polls `GET path` until `pick` finds a value, or the deadline passes.
    async fn poll<T>(
        &self,
        path: &str,
        deadline: Instant,
        pick: impl Fn(&Value) -> Option<T>,
    ) -> Option<T> {
        loop {
            if let Some(v) = self.read(path).await
                && let Some(found) = pick(&v)
            {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn order_status(&self, order: &str) -> Option<String> {
        self.read(&format!("/api/ordering/{order}"))
            .await
            .and_then(|v| v["order"]["status"].as_str().map(str::to_owned))
    }

    async fn list_status(&self, list: &str) -> Option<String> {
        self.read(&format!("/api/depot/shopping/{list}"))
            .await
            .and_then(|v| v["shoppingList"]["status"].as_str().map(str::to_owned))
    }
}

/// How a shopper's order must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey {
    /// Paid up: approved, shopped, ready, invoiced, paid → `completed`.
    Completed,
    /// Checked out with a payment that does not exist → `rejected`, list canceled.
    Rejected,
}

impl Journey {
    fn final_status(self) -> &'static str {
        match self {
            Journey::Completed => "completed",
            Journey::Rejected => "rejected",
        }
    }
}

/// What one shopper achieved.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The basket id, which is the order id (`None` when the basket never got created).
    pub order: Option<String>,
    /// Whether the system accepted the checkout (the basket is checked out).
    pub accepted: bool,
    /// The path the shopper took.
    pub path: Journey,
    /// The last order status seen.
    pub status: String,
    /// When the order reached its final status (`None` if it never did in time).
    pub finished_at: Option<Instant>,
    /// What went wrong, for the failure message.
    pub problem: Option<String>,
}

/// The running load: shoppers spawned over `spread`, each driving one checkout to its end.
pub struct Load {
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
    /// When the load started.
    pub started: Instant,
}

impl Load {
    /// Opens a shop (store, two products, customer) and spawns `checkouts` shoppers, evenly
    /// spread over `spread`; returns at once. Setup happens before any fault.
    pub async fn start(sys: &System, checkouts: usize, spread: Duration) -> Load {
        let shop = crate::scenarios::open_shop(sys, "faults").await;
        let payment = crate::scenarios::pay_for(sys, &shop, 1_000_000.0).await;
        let api = Api::new(&sys.base);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..checkouts {
            let delay = spread.mul_f64(i as f64 / checkouts.max(1) as f64);
            let path = if i % 5 == 4 {
                Journey::Rejected
            } else {
                Journey::Completed
            };
            let payment = match path {
                Journey::Completed => payment.clone(),
                Journey::Rejected => format!("no-such-payment-{i}"),
            };
            let api = api.clone();
            let shop = shop.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shopper(&api, &shop, &payment, path, i).await
            }));
        }
        Load { tasks, started }
    }

    /// Waits for every shopper.
    pub async fn finish(self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for task in self.tasks {
            outcomes.push(task.await.expect("a shopper panicked"));
        }
        outcomes
    }
}

/// One shopper: basket, two items, checkout, then the order's whole life as a client drives
/// it. Every step tolerates the fault: it retries while the system cannot answer and, when an
/// earlier attempt may have worked unseen, reads the state instead of trusting a 4xx.
async fn shopper(
    api: &Api,
    shop: &crate::scenarios::Shop,
    payment: &str,
    path: Journey,
    i: usize,
) -> Outcome {
    let deadline = Instant::now() + RECOVERY_BUDGET + Duration::from_secs(30);
    let mut outcome = Outcome {
        order: None,
        accepted: false,
        path,
        status: String::new(),
        finished_at: None,
        problem: None,
    };
    let basket = match api
        .create(
            "/api/baskets",
            json!({"customerId": shop.customer}),
            deadline,
        )
        .await
    {
        Ok(id) => id,
        Err(e) => {
            outcome.problem = Some(format!("shopper {i}: {e}"));
            return outcome;
        }
    };
    outcome.order = Some(basket.clone());
    for (product, quantity) in [(&shop.products[0].0, 2), (&shop.products[1].0, 1)] {
        let add = api
            .call(
                Method::PUT,
                &format!("/api/baskets/{basket}/addItem"),
                Some(json!({"productId": product, "quantity": quantity})),
                deadline,
            )
            .await;
        if !matches!(add, Some(((StatusCode::OK, _), _))) {
            outcome.problem = Some(format!("shopper {i}: addItem answered {add:?}"));
            return outcome;
        }
    }
    let checkout = api
        .call(
            Method::PUT,
            &format!("/api/baskets/{basket}/checkout"),
            Some(json!({"paymentId": payment})),
            deadline,
        )
        .await;
    // Accepted = the basket is checked out, however the answer went: a refusal that follows an
    // attempt whose answer was lost is the basket saying it is no longer open, which (nobody
    // cancels these baskets) means that attempt checked it out.
    outcome.accepted = match &checkout {
        Some(((StatusCode::OK, _), _)) => true,
        Some(((StatusCode::BAD_REQUEST, v), true)) => v["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be modified")),
        _ => false,
    };
    if !outcome.accepted {
        outcome.problem = Some(format!("shopper {i}: checkout not accepted: {checkout:?}"));
        return outcome;
    }
    let order = basket;
    let decided = api
        .poll(&format!("/api/ordering/{order}"), deadline, |v| {
            let status = v["order"]["status"].as_str()?;
            matches!(status, "approved" | "rejected" | "cancelled").then(|| {
                (
                    status.to_owned(),
                    v["order"]["shoppingId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
        })
        .await;
    let Some((status, list)) = decided else {
        outcome.status = api.order_status(&order).await.unwrap_or_default();
        outcome.problem = Some(format!(
            "order {order} never approved or rejected (last {:?})",
            outcome.status
        ));
        return outcome;
    };
    outcome.status = status.clone();
    if status != "approved" {
        outcome.finished_at = Some(Instant::now());
        return outcome;
    }
    // The depot's part: a bot takes the list and completes it.
    for (action, body, done) in [
        ("assign", json!({"botId": format!("bot-{i}")}), "assigned"),
        ("complete", json!({}), "completed"),
    ] {
        let reached = loop {
            let answer = api
                .call(
                    Method::PUT,
                    &format!("/api/depot/shopping/{list}/{action}"),
                    Some(body.clone()),
                    deadline,
                )
                .await;
            if matches!(answer, Some(((StatusCode::OK, _), _))) {
                break true;
            }
            // A refusal after an attempt that may have worked: the list says.
            let now = api.list_status(&list).await;
            if now.as_deref() == Some(done)
                || (action == "assign" && now.as_deref() == Some("completed"))
            {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !reached {
            outcome.problem = Some(format!("list {list} of order {order} never {done}"));
            return outcome;
        }
    }
    // Payments invoices the order once ordering has it ready; paying completes it.
    let pay = format!("/api/payments/invoices/{order}/pay");
    loop {
        match api.call(Method::PUT, &pay, Some(json!({})), deadline).await {
            Some(((StatusCode::OK, _), _)) => break,
            _ => {
                if api.order_status(&order).await.as_deref() == Some("completed") {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            outcome.status = api.order_status(&order).await.unwrap_or_default();
            outcome.problem = Some(format!(
                "invoice of order {order} never paid (order {:?})",
                outcome.status
            ));
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match api
        .poll(&format!("/api/ordering/{order}"), deadline, |v| {
            (v["order"]["status"] == json!("completed")).then_some(())
        })
        .await
    {
        Some(()) => {
            outcome.status = "completed".into();
            outcome.finished_at = Some(Instant::now());
        }
        None => {
            outcome.status = api.order_status(&order).await.unwrap_or_default();
            outcome.problem = Some(format!(
                "order {order} paid but never completed ({:?})",
                outcome.status
            ));
        }
    }
    outcome
}

/// One row of the fault table.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which fault.
    pub fault: String,
    /// Accepted checkouts.
    pub checkouts: usize,
    /// Orders that reached the final state their path calls for.
    pub finished: usize,
    /// Effects missing.
    pub lost: i64,
    /// Effects present more often than once (or present where none belongs).
    pub duplicated: i64,
    /// From the end of the fault until the last order was final.
    pub recovery: Duration,
    /// What was wrong, per order and effect (empty when clean).
    pub details: Vec<String>,
    /// Shoppers that could not check out at all, or got stuck.
    pub problems: Vec<String>,
}

impl Report {
    /// The table's header line.
    pub fn header() -> String {
        format!(
            "| {:<38} | {:>9} | {:>8} | {:>4} | {:>10} | {:>13} |\n|{:-<40}|{:->11}|{:->10}|{:->6}|{:->12}|{:->15}|",
            "fault",
            "checkouts",
            "finished",
            "lost",
            "duplicated",
            "recovery time",
            "",
            "",
            "",
            "",
            "",
            ""
        )
    }

    /// This fault's line.
    pub fn row(&self) -> String {
        format!(
            "| {:<38} | {:>9} | {:>8} | {:>4} | {:>10} | {:>11.1} s |",
            self.fault,
            self.checkouts,
            self.finished,
            self.lost,
            self.duplicated,
            self.recovery.as_secs_f64()
        )
    }

    /// Prints the row (with the header) and appends it to `FAULTS_REPORT` when set.
    pub fn print(&self) {
        println!("{}\n{}", Report::header(), self.row());
        if let Ok(path) = std::env::var("FAULTS_REPORT")
            && !path.is_empty()
        {
            use std::io::Write;
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                let _ = writeln!(file, "{}", self.row());
            }
        }
    }

    /// Fails the test unless every checkout finished with every effect exactly once.
    pub fn assert_clean(&self, expected_checkouts: usize) {
        let mut why = String::new();
        for line in self.problems.iter().chain(self.details.iter()).take(40) {
            why.push_str("\n  ");
            why.push_str(line);
        }
        assert!(
            self.checkouts == expected_checkouts
                && self.finished == self.checkouts
                && self.lost == 0
                && self.duplicated == 0,
            "{}: {} of {expected_checkouts} checkouts accepted, {} finished, {} lost, {} duplicated:{why}",
            self.fault,
            self.checkouts,
            self.finished,
            self.lost,
            self.duplicated
        );
    }
}

/// Effect name → how often, per order.
type Tally = HashMap<String, BTreeMap<String, i64>>;

/// What a checkout on `path` must leave behind, each exactly once.
fn expected(path: Journey) -> Vec<String> {
    let mut e: Vec<&str> = vec![
        "baskets outbox BasketStarted",
        "baskets outbox BasketCheckedOut",
        "ordering event OrderCreated",
        "ordering outbox OrderCreated",
        "saga done",
        "saga command AuthorizeCustomer",
        "saga command CreateShoppingList",
        "saga command ConfirmPayment",
        "notification order-created",
        "sms order-created",
    ];
    match path {
        Journey::Completed => e.extend([
            "ordering event OrderApproved",
            "ordering outbox OrderApproved",
            "ordering event OrderReadied",
            "ordering outbox OrderReadied",
            "ordering event OrderCompleted",
            "ordering outbox OrderCompleted",
            "saga command InitiateShopping",
            "saga command ApproveOrder",
            "shopping list completed",
            "invoice paid",
            "payments outbox InvoicePaid",
            "notification order-ready",
            "sms order-ready",
            "search Completed",
        ]),
        Journey::Rejected => e.extend([
            "ordering event OrderRejected",
            "ordering outbox OrderRejected",
            "saga compensation CancelShoppingList",
            "saga compensation RejectOrder",
            "shopping list canceled",
            "notification order-rejected",
            "sms order-rejected",
            "search Rejected",
        ]),
    }
    e.into_iter().map(str::to_owned).collect()
}

/// Counts, per order, every effect the checks know about, straight from the modules' tables
/// and from the SMS lines the system logged.
async fn tally(sys: &System, orders: &[String], log: &Path) -> Result<Tally, String> {
    let queries: [(&str, &str); 9] = [
        (
            "baskets",
            "SELECT key, 'baskets outbox ' || regexp_replace(name, '^.*\\.', ''), count(*)
             FROM baskets.outbox WHERE key = ANY($1) GROUP BY 1, 2",
        ),
        (
            "ordering",
            "SELECT stream_id, 'ordering event ' || regexp_replace(name, '^.*\\.', ''), count(*)
             FROM ordering.events WHERE stream_id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "ordering",
            "SELECT key, 'ordering outbox ' || regexp_replace(name, '^.*\\.', ''), count(*)
             FROM ordering.outbox WHERE key = ANY($1) AND name LIKE 'ordering.v1.Order%' GROUP BY 1, 2",
        ),
        (
            "cosec",
            "SELECT id, CASE WHEN done THEN 'saga done' ELSE 'saga running' END, count(*)
             FROM cosec.sagas WHERE id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "cosec",
            "SELECT saga_id,
                    CASE WHEN compensating THEN 'saga compensation ' ELSE 'saga command ' END
                        || regexp_replace(name, '^.*\\.', ''),
                    count(*)
             FROM cosec.saga_commands WHERE saga_id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "depot",
            "SELECT order_id, 'shopping list ' || status, count(*)
             FROM depot.shopping_lists WHERE order_id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "payments",
            "SELECT order_id, 'invoice ' || status, count(*)
             FROM payments.invoices WHERE order_id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "notifications",
            "SELECT order_id, 'notification ' || kind, count(*)
             FROM notifications.notifications WHERE order_id = ANY($1) GROUP BY 1, 2",
        ),
        (
            "search",
            "SELECT order_id, 'search ' || status, count(*)
             FROM search.orders WHERE order_id = ANY($1) GROUP BY 1, 2",
        ),
    ];
    let mut tally = Tally::new();
    for (schema, sql) in queries {
        let url = sys.database_url_for(schema);
        let mut conn = PgConnection::connect(&url)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(orders)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| format!("{schema}: {e}"))?;
        let _ = conn.close().await;
        for (order, effect, count) in rows {
            *tally.entry(order).or_default().entry(effect).or_default() += count;
        }
        // The payments outbox keys InvoicePaid by the invoice, whose id is the order's.
        if schema == "payments" {
            let mut conn = PgConnection::connect(&url)
                .await
                .map_err(|e| format!("connect to {url}: {e}"))?;
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT key, 'payments outbox ' || regexp_replace(name, '^.*\\.', ''), count(*)
                 FROM payments.outbox WHERE key = ANY($1) AND name LIKE 'payments.v1.Invoice%' GROUP BY 1, 2",
            )
            .bind(orders)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| format!("payments outbox: {e}"))?;
            let _ = conn.close().await;
            for (order, effect, count) in rows {
                *tally.entry(order).or_default().entry(effect).or_default() += count;
            }
        }
    }
    for (order, kind) in sms_sent(log) {
        *tally
            .entry(order)
            .or_default()
            .entry(format!("sms {kind}"))
            .or_default() += 1;
    }
    Ok(tally)
}

/// Every SMS the notifications sender logged (`SMS sent`, with order id and kind), across all
/// the system's processes and restarts: the count of real sends, which a unique index on the
/// notifications table could not show.
pub fn sms_sent(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut sent = Vec::new();
    for line in text.lines() {
        if !line.contains("SMS sent") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = |name: &str| {
            v["fields"][name]
                .as_str()
                .or_else(|| v[name].as_str())
                .map(str::to_owned)
        };
        if field("message").as_deref() != Some("SMS sent") {
            continue;
        }
        if let (Some(order), Some(kind)) = (field("order_id"), field("kind")) {
            sent.push((order, kind));
        }
    }
    sent
}

/// Waits (bounded) until the system is quiet — every outbox row sent and every durable
/// consumer of the stream with nothing pending or unacknowledged — so that what is counted
/// next is final: a duplicate still in flight would otherwise be missed.
pub async fn wait_quiet(sys: &System, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut quiet_in_a_row = 0;
    let mut last = String::new();
    loop {
        match quiet(sys).await {
            Ok(()) => {
                quiet_in_a_row += 1;
                if quiet_in_a_row >= 2 {
                    return Ok(());
                }
            }
            Err(e) => {
                quiet_in_a_row = 0;
                last = e;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the system did not quiet down in {timeout:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn quiet(sys: &System) -> Result<(), String> {
    for schema in [
        "stores",
        "customers",
        "baskets",
        "ordering",
        "payments",
        "depot",
        "cosec",
    ] {
        let url = sys.database_url_for(schema);
        let mut conn = PgConnection::connect(&url)
            .await
            .map_err(|e| e.to_string())?;
        let unsent: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.outbox WHERE sent_at IS NULL"
        )))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("{schema} outbox: {e}"))?;
        let _ = conn.close().await;
        if unsent > 0 {
            return Err(format!("{unsent} unsent outbox rows in {schema}"));
        }
    }
    let client = testkit::connect_nats(sys.nats_url())
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(sys.prefix())
        .await
        .map_err(|e| e.to_string())?;
    let consumers: Vec<jetstream::consumer::Info> = stream
        .consumers()
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    for info in consumers {
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return Err(format!(
                "consumer {} has {} pending, {} unacknowledged",
                info.name, info.num_pending, info.num_ack_pending
            ));
        }
    }
    Ok(())
}

/// After the load: waits until the system is quiet, then counts every effect of every
/// accepted checkout and builds the fault's row.
pub async fn verify(
    sys: &System,
    fault: &str,
    outcomes: &[Outcome],
    fault_end: Instant,
    log: &Path,
) -> Report {
    let mut problems: Vec<String> = outcomes.iter().filter_map(|o| o.problem.clone()).collect();
    if let Err(e) = wait_quiet(sys, Duration::from_secs(60)).await {
        problems.push(e);
    }
    let accepted: Vec<&Outcome> = outcomes.iter().filter(|o| o.accepted).collect();
    let orders: Vec<String> = accepted.iter().filter_map(|o| o.order.clone()).collect();
    let finished = accepted
        .iter()
        .filter(|o| o.finished_at.is_some() && o.status == o.path.final_status())
        .count();
    let recovery = accepted
        .iter()
        .filter_map(|o| o.finished_at)
        .max()
        .map(|last| last.saturating_duration_since(fault_end))
        .unwrap_or_default();
    let mut report = Report {
        fault: fault.to_owned(),
        checkouts: accepted.len(),
        finished,
        lost: 0,
        duplicated: 0,
        recovery,
        details: Vec::new(),
        problems,
    };
    let tally = match tally(sys, &orders, log).await {
        Ok(t) => t,
        Err(e) => {
            report
                .problems
                .push(format!("counting effects failed: {e}"));
            report.lost = i64::MAX;
            return report;
        }
    };
    // Effects of baskets nobody checked out (a shopper's basket whose checkout was refused)
    // are not looked at; every accepted order is.
    let empty = BTreeMap::new();
    for outcome in &accepted {
        let Some(order) = &outcome.order else {
            continue;
        };
        let seen = tally.get(order).unwrap_or(&empty);
        let wanted = expected(outcome.path);
        for effect in &wanted {
            let n = seen.get(effect).copied().unwrap_or(0);
            if n < 1 {
                report.lost += 1;
                report
                    .details
                    .push(format!("{order} ({:?}): {effect} missing", outcome.path));
            } else if n > 1 {
                report.duplicated += n - 1;
                report
                    .details
                    .push(format!("{order} ({:?}): {effect} × {n}", outcome.path));
            }
        }
        for (effect, n) in seen {
            if !wanted.contains(effect) {
                report.duplicated += n;
                report.details.push(format!(
                    "{order} ({:?}): unexpected {effect} × {n}",
                    outcome.path
                ));
            }
        }
    }
    report
}

/// Publishes a copy of every message the stream holds so far (dead letters excepted) and
/// returns how many. With `fresh_ids` false the copy keeps every header, so the same
/// `Nats-Msg-Id` = envelope id, as a redelivery would carry; the stream's de-duplication window
/// is shrunk first so the broker stores the copies instead of dropping them (and restored
/// after), and only the consumers' inboxes stand between a copy and a second effect. With
/// `fresh_ids` true each copy gets a new id — the same event or command published again by
/// someone else — which the inbox cannot recognise: only the handlers' own idempotency
/// (one order per basket, one list per order, one notification per order and kind, replies
/// matched to the outstanding command) keeps it harmless.
pub async fn republish_everything(sys: &System, fresh_ids: bool) -> usize {
    let client = testkit::connect_nats(sys.nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(sys.prefix())
        .await
        .expect("the system's stream");
    let info = stream.info().await.expect("stream info").clone();
    let window = info.config.duplicate_window;
    let mut shrunk = info.config.clone();
    if !fresh_ids {
        shrunk.duplicate_window = Duration::from_millis(200);
        js.update_stream(&shrunk)
            .await
            .expect("shrink the duplicate window");
        // Every id stored so far must age out of the window before its copy is published.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let dead_letters = format!("{}.deadletter.", sys.prefix());
    let mut copies = 0;
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        if msg.subject.as_str().starts_with(&dead_letters) {
            continue;
        }
        let mut headers = msg.headers.clone();
        if fresh_ids {
            headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
        }
        let ack = js
            .publish_with_headers(msg.subject.clone(), headers, msg.payload.clone())
            .await
            .expect("publish a copy");
        ack.await.expect("the broker stores the copy");
        copies += 1;
    }
    if !fresh_ids {
        let mut restored = shrunk;
        restored.duplicate_window = window;
        js.update_stream(&restored)
            .await
            .expect("restore the duplicate window");
    }
    copies
}

/// One poison message as one consumer receives it.
#[derive(Debug, Clone)]
pub struct Poison {
    /// The durable consumer that receives it.
    pub durable: String,
    /// Its message id (`Nats-Msg-Id`), which its dead letter names as the original.
    pub id: String,
    /// The `Message-Name` it carries.
    pub name: String,
    /// The stream-relative subject it was published on (e.g. `ordering.commands`).
    pub subject: String,
}

/// The name no catalogue knows, carried by one poison message per subject.
pub const UNKNOWN_NAME: &str = "fault.v1.NoSuchMessage";

/// Publishes, on every subject some durable consumer of the stream filters on, one message
/// whose name no catalogue knows and, per name the catalogue puts on that subject, one message
/// with that name and a payload that does not decode. Returns each (consumer, poison) pair: the
/// unknown name must come back as a dead letter of every consumer, each undecodable payload as
/// one of the consumers that handle its name (a consumer acks and skips the names on its
/// subject it does not need, so it never looks at their payload).
pub async fn publish_poison(sys: &System) -> Vec<Poison> {
    let client = testkit::connect_nats(sys.nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client);
    let stream = js
        .get_stream(sys.prefix())
        .await
        .expect("the system's stream");
    let consumers: Vec<jetstream::consumer::Info> = stream
        .consumers()
        .try_collect()
        .await
        .expect("list consumers");
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for info in consumers {
        let filters = [info.config.filter_subject.clone()];
        for subject in filters.into_iter().filter(|s| !s.is_empty()) {
            by_subject
                .entry(subject)
                .or_default()
                .push(info.name.clone());
        }
    }
    let prefix = format!("{}.", sys.prefix());
    let mut published = Vec::new();
    for (subject, durables) in &by_subject {
        let relative = subject.strip_prefix(&prefix).unwrap_or(subject);
        let mut poisons = vec![(UNKNOWN_NAME.to_owned(), b"\x0f\x0f\x0f".to_vec())];
        for name in contracts::names_on(relative) {
            // Field 1 with wire type 7, which does not exist: no protobuf message decodes it.
            poisons.push((name, b"\x0f\x0f\x0f".to_vec()));
        }
        for (name, payload) in poisons {
            let id = uuid::Uuid::now_v7().to_string();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Message-Name", name.as_str());
            headers.insert("Message-Key", "poison");
            let ack = js
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .expect("publish poison");
            ack.await.expect("the broker stores the poison");
            for durable in durables {
                published.push(Poison {
                    durable: durable.clone(),
                    id: id.clone(),
                    name: name.clone(),
                    subject: relative.to_owned(),
                });
            }
        }
    }
    published
}

/// The dead letters in the stream: (consumer, original message id, reason).
pub async fn dead_letters(sys: &System) -> Vec<(String, String, String)> {
    let client = testkit::connect_nats(sys.nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(sys.prefix())
        .await
        .expect("the system's stream");
    let info = stream.info().await.expect("stream info").clone();
    let dead = format!("{}.deadletter.", sys.prefix());
    let mut found = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        let Some(durable) = msg.subject.as_str().strip_prefix(&dead) else {
            continue;
        };
        let header = |name: &str| {
            msg.headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        found.push((
            durable.to_owned(),
            header("Dead-Letter-Original-Id"),
            header("Dead-Letter-Reason"),
        ));
    }
    found
}

/// The instances `run-services` supervises: (label, service, pid, restarts).
pub async fn runner_instances(sys: &System) -> Vec<(String, String, u32, u64)> {
    let body = sys.get("/_runner/instances").await;
    body["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["instance"].as_str().unwrap_or_default().to_owned(),
                        i["service"].as_str().unwrap_or_default().to_owned(),
                        i["pid"].as_u64().unwrap_or(0) as u32,
                        i["restarts"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The server name of the node leading the system's stream, and the stream's replica count
/// (leader plus followers).
pub async fn stream_leader(sys: &System) -> (String, usize) {
    let client = testkit::connect_nats(sys.nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(sys.prefix())
        .await
        .expect("the system's stream");
    let info = stream.info().await.expect("stream info");
    let cluster = info.cluster.clone().expect("a clustered stream");
    (
        cluster.leader.clone().expect("the stream has a leader"),
        cluster.replicas.len() + 1,
    )
}

/// SIGKILL to one process.
pub fn kill_9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// The tail of the system's log, for a failure message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.contains("SMS sent")).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
