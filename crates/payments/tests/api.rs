//! The payments service on a random port against the real NATS and PostgreSQL: both endpoints
//! of spec api.md §2.7 with their error cases, the `ConfirmPayment` command, and invoices made
//! and canceled from order events. Each test has its own database and prefix.
//!
//! There is no endpoint to read an invoice; tests see one through the pay endpoint, and read
//! the table (and the inbox, to know an event was handled) where the API cannot tell.

use contracts::ordering::v1 as ordering;
use contracts::payments::v1 as api;
use messaging::{Empty, Envelope, Message, header};
use payments::PaymentsModule;
use platform::testing::{TestApp, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn spawn() -> (TestApp, PgPool) {
    let app = TestApp::spawn("payments", vec![Box::new(PaymentsModule::new())]).await;
    let pool = persistence::connect(app.db.url(), payments::SCHEMA)
        .await
        .expect("a pool on the test database");
    (app, pool)
}

/// Asserts the spec's error shape with the exact message.
fn assert_error(got: (StatusCode, Value), status: StatusCode, code: i64, message: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert_eq!(
        body["details"][0]["HTTPCode"],
        status.as_u16().to_string(),
        "{body}"
    );
}

/// Authorizes a payment and returns its id.
async fn authorize(app: &TestApp, customer: &str, amount: Value) -> String {
    let (status, body) = app
        .post(
            "/api/payments",
            json!({"customerId": customer, "amount": amount}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

/// Sends `ConfirmPayment` and returns the command and its reply.
async fn confirm(app: &TestApp, id: &str, amount: f64) -> (Envelope, Envelope) {
    let command = app.bus.command(
        &api::ConfirmPayment {
            id: id.to_owned(),
            amount,
        },
        "test.replies.Test",
    );
    app.bus.publish(&command).await.expect("command published");
    let cause = command.id.to_string();
    let reply = app
        .wait_for(&Empty::message_name(), |e| {
            e.causation_id() == Some(cause.as_str())
        })
        .await;
    (command, reply)
}

fn outcome(reply: &Envelope) -> &str {
    reply.header(header::REPLY_OUTCOME).unwrap_or_default()
}

fn pay_path(id: &str) -> String {
    format!("/api/payments/invoices/{id}/pay")
}

async fn publish_readied(app: &TestApp, order: &str, total: f64) -> Envelope {
    let event = ordering::OrderReadied {
        id: order.to_owned(),
        customer_id: "c-1".into(),
        payment_id: "p-1".into(),
        total,
    };
    app.bus.publish_event(&event).await.expect("published")
}

async fn publish_canceled(app: &TestApp, order: &str) -> Envelope {
    let event = ordering::OrderCanceled {
        id: order.to_owned(),
        customer_id: "c-1".into(),
        payment_id: "p-1".into(),
    };
    app.bus.publish_event(&event).await.expect("published")
}

/// Waits until the order consumer has handled (and committed) `envelope`.
async fn handled(pool: &PgPool, envelope: &Envelope) {
    testkit::eventually(WAIT, "the order event handled", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM inbox WHERE consumer = 'payments-orders' AND message_id = $1",
        )
        .bind(envelope.id)
        .fetch_one(pool)
        .await
        .expect("inbox readable");
        (n == 1).then_some(())
    })
    .await;
}

/// The stored invoice: status and amount.
async fn invoice(pool: &PgPool, id: &str) -> Option<(String, f64)> {
    sqlx::query_as("SELECT status, amount::float8 FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("invoices readable")
}

#[tokio::test]
async fn authorize_payment_returns_an_id_and_accepts_lenient_input() {
    let (app, pool) = spawn().await;
    let id = authorize(&app, "c-1", json!(200.0)).await;
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let (status, body) = app
        .post(
            "/api/payments",
            json!({"customer_id": "c-1", "amount": "150000.25", "extra": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let big = body["id"].as_str().unwrap();
    let stored: f64 = sqlx::query_scalar("SELECT amount::float8 FROM payments WHERE id = $1")
        .bind(big)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 150000.25, "no overflow, no rounding");

    // `null` is zero, which is a valid amount.
    authorize(&app, "c-1", Value::Null).await;
}

#[tokio::test]
async fn authorize_payment_rejects_a_blank_customer_or_a_bad_amount_and_stores_nothing() {
    let (app, pool) = spawn().await;
    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        app.post("/api/payments", json!({"customerId": " ", "amount": 10}))
            .await,
        bad,
        3,
        "the customer id cannot be blank",
    );
    assert_error(
        app.call(Method::POST, "/api/payments", None).await,
        bad,
        3,
        "the customer id cannot be blank",
    );
    assert_error(
        app.post(
            "/api/payments",
            json!({"customerId": "c-1", "amount": -0.5}),
        )
        .await,
        bad,
        3,
        "the payment amount cannot be negative",
    );
    assert_error(
        app.post(
            "/api/payments",
            json!({"customerId": "c-1", "amount": "NaN"}),
        )
        .await,
        bad,
        3,
        "the payment amount must be a finite number",
    );
    let (status, body) = app
        .call_raw(Method::POST, "/api/payments", "{\"amount\": \"lots\"}")
        .await;
    assert_eq!(status, bad, "{body}");
    assert_eq!(body["code"], 3);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn confirm_payment_succeeds_only_for_an_existing_payment_that_covers_the_amount() {
    let (app, _pool) = spawn().await;
    let small = authorize(&app, "c-1", json!(3.3)).await;
    let big = authorize(&app, "c-1", json!(150000)).await;

    // 3 × 1.1 = 3.3000000000000003: float noise in the saga's total is no shortfall.
    let (command, reply) = confirm(&app, &small, 3.0 * 1.1).await;
    assert_eq!(outcome(&reply), "success", "float noise in the total");
    assert_eq!(reply.subject, format!("{}.test.replies.Test", app.prefix));
    assert_eq!(reply.correlation_id(), command.correlation_id());

    let (_, reply) = confirm(&app, &small, 3.31).await;
    assert_eq!(outcome(&reply), "failure", "the total exceeds the payment");
    let (_, reply) = confirm(&app, &big, 150000.0).await;
    assert_eq!(outcome(&reply), "success");
    let (_, reply) = confirm(&app, "nobody", 1.0).await;
    assert_eq!(outcome(&reply), "failure");
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn the_same_command_sent_twice_is_answered_once_each() {
    let (app, _pool) = spawn().await;
    let id = authorize(&app, "c-1", json!(10)).await;
    let (first, _) = confirm(&app, &id, 10.0).await;
    let (second, reply) = confirm(&app, &id, 10.0).await;
    assert_eq!(outcome(&reply), "success");

    // Replies about one payment leave the outbox in order: once the second is out, a
    // duplicate of the first would have been published before it.
    for command in [&first, &second] {
        let cause = command.id.to_string();
        let replies = app
            .published_named(&Empty::message_name())
            .into_iter()
            .filter(|e| e.causation_id() == Some(cause.as_str()))
            .count();
        assert_eq!(replies, 1, "one reply for {cause}");
    }
}

#[tokio::test]
async fn a_ready_order_gets_a_pending_invoice_that_is_paid_once() {
    let (app, pool) = spawn().await;
    // Order events payments does not need are skipped, not dead-lettered.
    let created = ordering::OrderCreated {
        id: "order-1".into(),
        ..Default::default()
    };
    app.bus.publish_event(&created).await.unwrap();
    let readied = publish_readied(&app, "order-1", 123456.78).await;
    handled(&pool, &readied).await;
    assert_eq!(
        invoice(&pool, "order-1").await,
        Some(("pending".to_owned(), 123456.78))
    );

    let (status, body) = app.put(&pay_path("order-1"), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let paid: api::InvoicePaid = app
        .wait_for_message(&api::InvoicePaid::message_name(), |_: &api::InvoicePaid| {
            true
        })
        .await;
    assert_eq!(
        paid,
        api::InvoicePaid {
            id: "order-1".into(),
            order_id: "order-1".into()
        }
    );

    assert_error(
        app.call(Method::PUT, &pay_path("order-1"), None).await,
        StatusCode::BAD_REQUEST,
        3,
        "invoice cannot be paid for",
    );
    assert_eq!(
        invoice(&pool, "order-1").await,
        Some(("paid".to_owned(), 123456.78))
    );
    assert_eq!(
        app.published_named(&api::InvoicePaid::message_name()).len(),
        1
    );
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn an_unknown_invoice_is_404() {
    let (app, _pool) = spawn().await;
    assert_error(
        app.put(&pay_path("nobody"), json!({})).await,
        StatusCode::NOT_FOUND,
        5,
        "scanning invoice: sql: no rows in result set",
    );
}

#[tokio::test]
async fn an_order_readied_again_keeps_its_first_invoice() {
    let (app, pool) = spawn().await;
    let first = publish_readied(&app, "order-2", 10.0).await;
    handled(&pool, &first).await;
    let (status, _) = app.put(&pay_path("order-2"), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let again = publish_readied(&app, "order-2", 20.0).await;
    handled(&pool, &again).await;
    assert_eq!(
        invoice(&pool, "order-2").await,
        Some(("paid".to_owned(), 10.0))
    );
    assert_error(
        app.put(&pay_path("order-2"), json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "invoice cannot be paid for",
    );
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn a_canceled_order_cancels_its_pending_invoice_only() {
    let (app, pool) = spawn().await;

    // Pending → canceled, and a canceled invoice cannot be paid (400, not the original's 500).
    let readied = publish_readied(&app, "order-3", 30.0).await;
    handled(&pool, &readied).await;
    let canceled = publish_canceled(&app, "order-3").await;
    handled(&pool, &canceled).await;
    assert_eq!(
        invoice(&pool, "order-3").await,
        Some(("canceled".to_owned(), 30.0))
    );
    assert_error(
        app.put(&pay_path("order-3"), json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "invoice cannot be paid for",
    );

    // A paid invoice stays paid.
    let readied = publish_readied(&app, "order-4", 40.0).await;
    handled(&pool, &readied).await;
    let (status, _) = app.put(&pay_path("order-4"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let canceled = publish_canceled(&app, "order-4").await;
    handled(&pool, &canceled).await;
    assert_eq!(
        invoice(&pool, "order-4").await,
        Some(("paid".to_owned(), 40.0))
    );

    // An order canceled before it was ready has no invoice, and gets none.
    let canceled = publish_canceled(&app, "order-5").await;
    handled(&pool, &canceled).await;
    assert_eq!(invoice(&pool, "order-5").await, None);
    assert!(app.dead_letters().is_empty());
}
