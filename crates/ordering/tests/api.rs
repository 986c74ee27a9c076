//! The ordering service on a random port against the real NATS and PostgreSQL: the REST
//! endpoints of spec api.md §2.6 with their error cases, the saga's RejectOrder/ApproveOrder
//! commands and their replies, and the events that drive an order (BasketCheckedOut,
//! ShoppingListCompleted, InvoicePaid) with what it publishes in turn. Each test has its own
//! database and prefix.

use std::time::Duration;

use contracts::baskets::v1::{BasketCheckedOut, basket_checked_out};
use contracts::depot::v1::ShoppingListCompleted;
use contracts::ordering::v1 as api;
use contracts::payments::v1::InvoicePaid;
use messaging::{Command, Empty, Envelope, Message, header};
use ordering::OrderingModule;
use platform::testing::{TestApp, WAIT};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn spawn() -> TestApp {
    TestApp::spawn("ordering", vec![Box::new(OrderingModule::new())]).await
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

fn item_json(product: &str, price: f64, quantity: i32) -> Value {
    json!({
        "storeId": "store-1", "productId": product, "storeName": "Store ABC",
        "productName": format!("Product {product}"), "price": price, "quantity": quantity
    })
}

/// Places an order over REST and returns its id.
async fn create_order(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            "/api/ordering",
            json!({
                "items": [item_json("p1", 9.99, 5), item_json("p2", 1.5, 2)],
                "customerId": "customer-1",
                "paymentId": "payment-1",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

async fn order(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/ordering/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["order"].clone()
}

/// Polls the order until its status is `status`.
async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    testkit::eventually(WAIT, &format!("order {id} {status}"), || async {
        let o = order(app, id).await;
        (o["status"] == status).then_some(o)
    })
    .await
}

/// Sends a saga command and returns its reply.
async fn send<C: Command>(app: &TestApp, command: &C) -> Envelope {
    let env = app.bus.command(command, "test.replies.Test");
    app.bus.publish(&env).await.expect("command published");
    let cause = env.id.to_string();
    app.wait_for(&Empty::message_name(), |e| {
        e.causation_id() == Some(cause.as_str())
    })
    .await
}

fn outcome(reply: &Envelope) -> &str {
    reply.header(header::REPLY_OUTCOME).unwrap_or_default()
}

async fn approve(app: &TestApp, id: &str, shopping_id: &str) -> Envelope {
    let cmd = api::ApproveOrder {
        id: id.to_owned(),
        shopping_id: shopping_id.to_owned(),
    };
    send(app, &cmd).await
}

async fn reject(app: &TestApp, id: &str) -> Envelope {
    send(app, &api::RejectOrder { id: id.to_owned() }).await
}

fn checkout(basket: &str) -> BasketCheckedOut {
    BasketCheckedOut {
        id: basket.to_owned(),
        customer_id: "customer-9".into(),
        payment_id: "payment-9".into(),
        items: vec![basket_checked_out::Item {
            store_id: "store-9".into(),
            product_id: "product-9".into(),
            store_name: "Store Nine".into(),
            product_name: "Product Nine".into(),
            price: 4.25,
            quantity: 4,
        }],
    }
}

/// How many messages named `name` about order `id` were published.
fn count(app: &TestApp, name: &str, key: &str) -> usize {
    app.published_named(name)
        .iter()
        .filter(|e| e.key() == Some(key))
        .count()
}

/// Whether the ordering consumer `consumer` has handled message `id` (its inbox row).
async fn handled(app: &TestApp, consumer: &str, id: uuid::Uuid) -> bool {
    let pool = sqlx::PgPool::connect(app.db.url()).await.expect("test db");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ordering.inbox WHERE consumer = $1 AND message_id = $2",
    )
    .bind(consumer)
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("inbox count");
    pool.close().await;
    n == 1
}

#[tokio::test]
async fn create_then_get_shows_the_pending_order_and_publishes_order_created() {
    let app = spawn().await;
    let id = create_order(&app).await;
    assert_eq!(id.len(), 36, "a UUID: {id}");

    assert_eq!(
        order(&app, &id).await,
        json!({
            "id": id, "customerId": "customer-1", "paymentId": "payment-1",
            "items": [item_json("p1", 9.99, 5), item_json("p2", 1.5, 2)],
            "status": "pending", "shoppingId": "", "invoiceId": ""
        })
    );
    let created: api::OrderCreated = app
        .wait_for_message(
            &api::OrderCreated::message_name(),
            |e: &api::OrderCreated| e.id == id,
        )
        .await;
    assert_eq!(created.customer_id, "customer-1");
    assert_eq!(created.payment_id, "payment-1");
    assert_eq!(created.shopping_id, "");
    assert_eq!(
        created.items,
        vec![
            api::order_created::Item {
                product_id: "p1".into(),
                store_id: "store-1".into(),
                price: 9.99,
                quantity: 5
            },
            api::order_created::Item {
                product_id: "p2".into(),
                store_id: "store-1".into(),
                price: 1.5,
                quantity: 2
            },
        ]
    );
}

#[tokio::test]
async fn create_accepts_snake_case_numbers_as_strings_and_nulls() {
    let app = spawn().await;
    let (status, body) = app
        .post(
            "/api/ordering",
            json!({
                "items": [{"store_id": "s", "product_id": "p", "store_name": null,
                           "product_name": "P", "price": "2.5", "quantity": "3", "extra": 1}],
                "customer_id": "c", "payment_id": "pay", "unknown": true
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap();
    let o = order(&app, id).await;
    assert_eq!(o["customerId"], "c");
    assert_eq!(
        o["items"][0],
        json!({"storeId": "s", "productId": "p", "storeName": "", "productName": "P",
               "price": 2.5, "quantity": 3})
    );
}

#[tokio::test]
async fn create_refuses_bad_input_in_the_original_order_and_changes_nothing() {
    let app = spawn().await;
    let good = item_json("p", 1.0, 1);
    let cases = [
        (json!({}), "create order command: the order has no items"),
        (
            json!({"items": null, "customerId": "c", "paymentId": "p"}),
            "create order command: the order has no items",
        ),
        (
            json!({"items": [good], "paymentId": "p"}),
            "create order command: the customer id cannot be blank",
        ),
        (
            json!({"items": [good], "customerId": "c"}),
            "create order command: the payment id cannot be blank",
        ),
        (
            json!({"items": [item_json("p", 1.0, 0)], "customerId": "c", "paymentId": "p"}),
            "create order command: the item quantity must be greater than zero",
        ),
        (
            json!({"items": [item_json("p", -1.0, 1)], "customerId": "c", "paymentId": "p"}),
            "create order command: the item price cannot be negative",
        ),
        (
            json!({"items": [item_json("", 1.0, 1)], "customerId": "c", "paymentId": "p"}),
            "create order command: the item product id cannot be blank",
        ),
        (
            json!({"items": [{"productId": "p", "price": 1, "quantity": 1}],
                   "customerId": "c", "paymentId": "p"}),
            "create order command: the item store id cannot be blank",
        ),
    ];
    for (body, message) in cases {
        assert_error(
            app.post("/api/ordering", body).await,
            StatusCode::BAD_REQUEST,
            3,
            message,
        );
    }
    let (status, body) = app
        .call_raw(reqwest::Method::POST, "/api/ordering", "{\"items\": [")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 3);
    let (status, body) = app
        .call_raw(
            reqwest::Method::POST,
            "/api/ordering",
            r#"{"items": [{"quantity": "many"}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Nothing was stored, nothing published.
    let pool = sqlx::PgPool::connect(app.db.url()).await.unwrap();
    let streams: i64 = sqlx::query_scalar("SELECT count(*) FROM ordering.events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(streams, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.published_named(&api::OrderCreated::message_name())
            .is_empty()
    );
}

#[tokio::test]
async fn an_unknown_order_is_not_found_and_cannot_be_cancelled() {
    let app = spawn().await;
    assert_error(
        app.get("/api/ordering/no-such-order").await,
        StatusCode::NOT_FOUND,
        5,
        "the order does not exist",
    );
    assert_error(
        app.delete("/api/ordering/no-such-order").await,
        StatusCode::BAD_REQUEST,
        3,
        "the order cannot be cancelled",
    );
}

#[tokio::test]
async fn cancel_a_pending_order_once_and_publish_order_canceled() {
    let app = spawn().await;
    let id = create_order(&app).await;
    let (status, body) = app.delete(&format!("/api/ordering/{id}")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(order(&app, &id).await["status"], "cancelled");
    let canceled: api::OrderCanceled = app
        .wait_for_message(
            &api::OrderCanceled::message_name(),
            |e: &api::OrderCanceled| e.id == id,
        )
        .await;
    assert_eq!(canceled.customer_id, "customer-1");
    assert_eq!(canceled.payment_id, "payment-1");

    assert_error(
        app.delete(&format!("/api/ordering/{id}")).await,
        StatusCode::BAD_REQUEST,
        3,
        "the order cannot be cancelled",
    );
    assert_eq!(order(&app, &id).await["status"], "cancelled");
}

#[tokio::test]
async fn basket_checkout_creates_the_order_under_the_basket_id_once() {
    let app = spawn().await;
    let basket = uuid::Uuid::new_v4().to_string();
    let first = app.bus.publish_event(&checkout(&basket)).await.unwrap();
    let created = app
        .wait_for(&api::OrderCreated::message_name(), |e| {
            e.key() == Some(basket.as_str())
        })
        .await;
    assert_eq!(
        created.causation_id(),
        Some(first.id.to_string().as_str()),
        "caused by the checkout"
    );
    assert_eq!(created.correlation_id(), first.correlation_id());
    let o = wait_status(&app, &basket, "pending").await;
    assert_eq!(o["customerId"], "customer-9");
    assert_eq!(o["paymentId"], "payment-9");
    assert_eq!(
        o["items"],
        json!([{"storeId": "store-9", "productId": "product-9", "storeName": "Store Nine",
                "productName": "Product Nine", "price": 4.25, "quantity": 4}])
    );

    // The same checkout published again (another message): acked, nothing new.
    let again = app.bus.publish_event(&checkout(&basket)).await.unwrap();
    testkit::eventually(WAIT, "the second checkout handled", || async {
        handled(&app, "ordering-baskets", again.id)
            .await
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&app, &api::OrderCreated::message_name(), &basket), 1);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn approve_and_reject_answer_the_saga_and_publish_the_outcome() {
    let app = spawn().await;

    // Approve a pending order.
    let id = create_order(&app).await;
    let reply = approve(&app, &id, "list-1").await;
    assert_eq!(outcome(&reply), "success");
    let o = order(&app, &id).await;
    assert_eq!(
        (o["status"].clone(), o["shoppingId"].clone()),
        (json!("approved"), json!("list-1"))
    );
    let approved: api::OrderApproved = app
        .wait_for_message(
            &api::OrderApproved::message_name(),
            |e: &api::OrderApproved| e.id == id,
        )
        .await;
    assert_eq!(approved.customer_id, "customer-1");
    assert_eq!(approved.payment_id, "payment-1");
    // The same approval again (the saga retrying): success, nothing new.
    assert_eq!(outcome(&approve(&app, &id, "list-1").await), "success");
    // Another list, or a rejection, of an approved order: refused.
    assert_eq!(outcome(&approve(&app, &id, "list-2").await), "failure");
    assert_eq!(outcome(&reject(&app, &id).await), "failure");
    assert_error(
        app.delete(&format!("/api/ordering/{id}")).await,
        StatusCode::BAD_REQUEST,
        3,
        "the order cannot be cancelled",
    );
    let o = order(&app, &id).await;
    assert_eq!(
        (o["status"].clone(), o["shoppingId"].clone()),
        (json!("approved"), json!("list-1"))
    );
    assert_eq!(count(&app, &api::OrderApproved::message_name(), &id), 1);

    // Reject a pending order.
    let rejected_id = create_order(&app).await;
    assert_eq!(outcome(&reject(&app, &rejected_id).await), "success");
    assert_eq!(order(&app, &rejected_id).await["status"], "rejected");
    let rejected: api::OrderRejected = app
        .wait_for_message(
            &api::OrderRejected::message_name(),
            |e: &api::OrderRejected| e.id == rejected_id,
        )
        .await;
    assert_eq!(rejected.customer_id, "customer-1");
    assert_eq!(
        outcome(&approve(&app, &rejected_id, "list-3").await),
        "failure"
    );
    assert_eq!(order(&app, &rejected_id).await["status"], "rejected");

    // Unknown orders.
    assert_eq!(
        outcome(&approve(&app, "no-such-order", "l").await),
        "failure"
    );
    assert_eq!(outcome(&reject(&app, "no-such-order").await), "failure");
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn an_order_cancelled_while_the_saga_runs_stays_cancelled() {
    let app = spawn().await;
    let id = create_order(&app).await;
    let (status, _) = app.delete(&format!("/api/ordering/{id}")).await;
    assert_eq!(status, StatusCode::OK);

    // The saga's last step is refused, so it compensates; the compensation succeeds.
    assert_eq!(outcome(&approve(&app, &id, "list-1").await), "failure");
    assert_eq!(outcome(&reject(&app, &id).await), "success");
    let o = order(&app, &id).await;
    assert_eq!(
        (o["status"].clone(), o["shoppingId"].clone()),
        (json!("cancelled"), json!(""))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&app, &api::OrderApproved::message_name(), &id), 0);
    assert_eq!(count(&app, &api::OrderRejected::message_name(), &id), 0);
}

#[tokio::test]
async fn shopping_completed_readies_and_invoice_paid_completes_the_order() {
    let app = spawn().await;
    let id = create_order(&app).await;
    assert_eq!(outcome(&approve(&app, &id, "list-1").await), "success");

    let completed = ShoppingListCompleted {
        id: "list-1".into(),
        order_id: id.clone(),
    };
    let done = app.bus.publish_event(&completed).await.unwrap();
    let readied: api::OrderReadied = app
        .wait_for_message(
            &api::OrderReadied::message_name(),
            |e: &api::OrderReadied| e.id == id,
        )
        .await;
    assert!(
        (readied.total - (9.99 * 5.0 + 1.5 * 2.0)).abs() < 1e-9,
        "{readied:?}"
    );
    assert_eq!(readied.customer_id, "customer-1");
    assert_eq!(readied.payment_id, "payment-1");
    assert_eq!(order(&app, &id).await["status"], "ready");
    let readied_env = app.published_named(&api::OrderReadied::message_name());
    assert_eq!(
        readied_env[0].causation_id(),
        Some(done.id.to_string().as_str())
    );

    // The list completed again (republished): nothing new.
    let again = app.bus.publish_event(&completed).await.unwrap();
    testkit::eventually(WAIT, "the repeat handled", || async {
        handled(&app, "ordering-depot", again.id)
            .await
            .then_some(())
    })
    .await;

    let paid = InvoicePaid {
        id: "invoice-1".into(),
        order_id: id.clone(),
    };
    app.bus.publish_event(&paid).await.unwrap();
    let completed_event: api::OrderCompleted = app
        .wait_for_message(
            &api::OrderCompleted::message_name(),
            |e: &api::OrderCompleted| e.id == id,
        )
        .await;
    assert_eq!(completed_event.invoice_id, "invoice-1");
    assert_eq!(completed_event.customer_id, "customer-1");
    let o = order(&app, &id).await;
    assert_eq!(o["status"], "completed");
    assert_eq!(o["invoiceId"], "invoice-1");
    assert_eq!(o["shoppingId"], "list-1");
    assert_eq!(count(&app, &api::OrderReadied::message_name(), &id), 1);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_list_completed_before_the_approval_readies_the_order_once_approved() {
    let app = spawn().await;
    let id = create_order(&app).await;
    let completed = ShoppingListCompleted {
        id: "list-1".into(),
        order_id: id.clone(),
    };
    app.bus.publish_event(&completed).await.unwrap();
    // The ready is retried with back-off until the saga's approval lands.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(order(&app, &id).await["status"], "pending");
    assert_eq!(outcome(&approve(&app, &id, "list-1").await), "success");
    wait_status(&app, &id, "ready").await;
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn events_for_orders_that_cannot_take_them_are_dead_lettered() {
    let app = spawn().await;
    let id = create_order(&app).await;
    app.delete(&format!("/api/ordering/{id}")).await;
    app.bus
        .publish_event(&ShoppingListCompleted {
            id: "list-1".into(),
            order_id: id.clone(),
        })
        .await
        .unwrap();
    app.bus
        .publish_event(&InvoicePaid {
            id: "invoice-1".into(),
            order_id: "no-such-order".into(),
        })
        .await
        .unwrap();
    testkit::eventually(WAIT, "two dead letters", || async {
        let consumers: Vec<String> = app
            .dead_letters()
            .iter()
            .filter_map(|e| e.header(header::DEAD_LETTER_CONSUMER).map(str::to_owned))
            .collect();
        (consumers.contains(&"ordering-depot".to_owned())
            && consumers.contains(&"ordering-payments".to_owned()))
        .then_some(())
    })
    .await;
    assert_eq!(order(&app, &id).await["status"], "cancelled");
}
