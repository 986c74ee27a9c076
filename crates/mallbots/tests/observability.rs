//! Observability of the whole system in one process: every module started in-process
//! (`platform::testing::TestApp`), one checkout driven through the REST API, then `/metrics`
//! scraped and the series operators rely on checked by name, labels and count.

use std::time::Duration;

use platform::testing::TestApp;
use reqwest::StatusCode;
use serde_json::json;

mod common;
use common::{create, modules, put};

/// Runs one checkout to an approved order; returns the order id.
async fn checkout(app: &TestApp) -> String {
    let store = create(
        app,
        "/api/stores",
        json!({"name": "Observed", "location": "The mall"}),
    )
    .await;
    let product = create(
        app,
        &format!("/api/stores/{store}/products"),
        json!({"name": "Wizard", "description": "d", "sku": "sku", "price": 9.5}),
    )
    .await;
    let customer = create(
        app,
        "/api/customers",
        json!({"name": "Watcher", "smsNumber": "555-555-1212"}),
    )
    .await;
    let payment = create(
        app,
        "/api/payments",
        json!({"customerId": customer, "amount": 100.0}),
    )
    .await;
    let basket = create(app, "/api/baskets", json!({"customerId": customer})).await;
    // The basket learns the product from the stores events (or asks stores on a miss).
    put(
        app,
        &format!("/api/baskets/{basket}/addItem"),
        json!({"productId": product, "quantity": 2}),
    )
    .await;
    put(
        app,
        &format!("/api/baskets/{basket}/checkout"),
        json!({"paymentId": payment}),
    )
    .await;
    testkit::eventually(
        Duration::from_secs(30),
        "the order to be approved",
        || async {
            let (_, body) = app.get(&format!("/api/ordering/{basket}")).await;
            (body["order"]["status"] == json!("approved")).then_some(())
        },
    )
    .await;
    basket
}

async fn scrape(app: &TestApp) -> String {
    let response = reqwest::get(format!("{}/metrics", app.base))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

/// The value of the sample `name` whose labels include every `labels` pair (None if absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().expect("a number"))
        })
}

/// Waits until every check passes on one scrape; on timeout, fails with the scrape.
/// A series (name and some of its labels) and the value it must reach.
type Expect<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

async fn wait_for_metrics(app: &TestApp, checks: &[Expect<'_>]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(app).await;
        let failing: Vec<String> = checks
            .iter()
            .filter(|(name, labels, want)| sample(&text, name, labels) != Some(*want))
            .map(|(name, labels, want)| {
                format!(
                    "{name}{labels:?}: want {want}, got {:?}",
                    sample(&text, name, labels)
                )
            })
            .collect();
        if failing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "metrics not as expected:\n{}\n--- scrape:\n{text}",
                failing.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_shows_up_in_the_metrics() {
    let app = TestApp::spawn("metrics", modules()).await;
    checkout(&app).await;

    // One message no consumer knows: dead-lettered by the basket-events consumer of ordering.
    let mut bogus = messaging::Envelope::new(
        app.bus.subject("baskets.events.Basket"),
        &messaging::Empty {},
    );
    bogus.name = "bogus.v1.Unknown".to_owned();
    app.bus.publish(&bogus).await.expect("publish");

    let checks: &[Expect<'_>] = &[
        // HTTP, per route template.
        (
            "http_requests_total",
            &[
                ("method", "PUT"),
                ("route", "/api/baskets/{id}/checkout"),
                ("status", "200"),
            ],
            1.0,
        ),
        (
            "http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/stores"),
                ("status", "200"),
            ],
            1.0,
        ),
        // Messages out and in.
        (
            "messaging_published_total",
            &[
                ("message", "baskets.v1.BasketCheckedOut"),
                ("outcome", "acked"),
            ],
            1.0,
        ),
        (
            "messaging_received_total",
            &[
                ("consumer", "ordering-baskets"),
                ("message", "baskets.v1.BasketCheckedOut"),
                ("outcome", "acked"),
            ],
            1.0,
        ),
        (
            "messaging_received_total",
            &[
                ("consumer", "ordering-baskets"),
                ("message", "bogus.v1.Unknown"),
                ("outcome", "dead_lettered"),
            ],
            1.0,
        ),
        // The broker's view: nothing left pending, one dead letter.
        (
            "messaging_consumer_pending",
            &[("consumer", "ordering-baskets")],
            0.0,
        ),
        (
            "messaging_consumer_pending",
            &[("consumer", "cosec-replies")],
            0.0,
        ),
        (
            "messaging_dead_letters",
            &[("consumer", "ordering-baskets")],
            1.0,
        ),
        (
            "messaging_dead_letters",
            &[("consumer", "cosec-replies")],
            0.0,
        ),
        // Outboxes drained.
        ("outbox_backlog", &[("module", "baskets")], 0.0),
        ("outbox_backlog", &[("module", "cosec")], 0.0),
        ("outbox_lag_seconds", &[("module", "ordering")], 0.0),
        // The saga: one started, one completed, none compensated or running.
        ("saga_started_total", &[("saga", "cosec.CreateOrder")], 1.0),
        (
            "saga_completed_total",
            &[("saga", "cosec.CreateOrder")],
            1.0,
        ),
        ("saga_running", &[("saga", "cosec.CreateOrder")], 0.0),
        (
            "saga_oldest_running_age_seconds",
            &[("saga", "cosec.CreateOrder")],
            0.0,
        ),
    ];
    wait_for_metrics(&app, checks).await;

    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "saga_compensated_total",
            &[("saga", "cosec.CreateOrder")]
        ),
        None,
        "no saga compensated"
    );
    assert!(
        sample(
            &text,
            "messaging_handler_duration_seconds_count",
            &[("consumer", "cosec-ordering")]
        )
        .is_some_and(|n| n >= 1.0),
        "handler durations recorded: {text}"
    );
    assert!(
        sample(
            &text,
            "http_request_duration_seconds_count",
            &[("route", "/api/baskets/{id}/checkout")]
        ) == Some(1.0)
    );
    app.stop().await;
}
