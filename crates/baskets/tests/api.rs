//! The baskets service over HTTP against real NATS and PostgreSQL: every endpoint of spec
//! api.md §2.3 with its errors, the events it publishes, and the caches fed by stores events.
//! The stores service is faked: its events are published on the test's bus, its lookups are
//! answered by a responder the test serves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baskets::BasketsModule;
use contracts::baskets::v1::{BasketCanceled, BasketCheckedOut, BasketStarted};
use contracts::stores::v1 as stores;
use messaging::{CancellationToken, Envelope, Event, Message};
use platform::testing::{TestApp, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Short, so the timeout test is quick; far above a local request/reply.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

async fn spawn() -> TestApp {
    TestApp::spawn(
        "baskets",
        vec![Box::new(
            BasketsModule::new().with_lookup_timeout(LOOKUP_TIMEOUT),
        )],
    )
    .await
}

/// The test's view of the service's schema (for "was this message handled" checks).
async fn pool(app: &TestApp) -> PgPool {
    persistence::connect(app.db.url(), baskets::SCHEMA)
        .await
        .expect("connect to the baskets schema")
}

/// What the fake stores service knows, and how often it was asked.
#[derive(Default)]
struct FakeStores {
    products: Mutex<HashMap<String, stores::Product>>,
    stores: Mutex<HashMap<String, stores::Store>>,
    product_asks: AtomicUsize,
    store_asks: AtomicUsize,
}

impl FakeStores {
    fn with_product(self, id: &str, store_id: &str, name: &str, price: f64) -> Self {
        self.products.lock().unwrap().insert(
            id.to_owned(),
            stores::Product {
                id: id.to_owned(),
                store_id: store_id.to_owned(),
                name: name.to_owned(),
                description: "description".into(),
                sku: "sku".into(),
                price,
            },
        );
        self
    }

    fn with_store(self, id: &str, name: &str) -> Self {
        self.stores.lock().unwrap().insert(
            id.to_owned(),
            stores::Store {
                id: id.to_owned(),
                name: name.to_owned(),
                location: "The mall".into(),
                participating: true,
            },
        );
        self
    }
}

/// Answers `GetProduct` from `fake` until `stop` is cancelled.
async fn serve_products(app: &TestApp, fake: Arc<FakeStores>, stop: &CancellationToken) {
    app.bus
        .serve::<stores::GetProduct, _, _>(
            "stores",
            move |query, _| {
                let fake = fake.clone();
                async move {
                    fake.product_asks.fetch_add(1, Ordering::SeqCst);
                    let product = fake.products.lock().unwrap().get(&query.id).cloned();
                    Ok(stores::GetProductResponse { product })
                }
            },
            stop.clone(),
        )
        .await
        .expect("serve GetProduct");
}

/// Answers `GetStore` from `fake` until `stop` is cancelled.
async fn serve_stores(app: &TestApp, fake: Arc<FakeStores>, stop: &CancellationToken) {
    app.bus
        .serve::<stores::GetStore, _, _>(
            "stores",
            move |query, _| {
                let fake = fake.clone();
                async move {
                    fake.store_asks.fetch_add(1, Ordering::SeqCst);
                    let store = fake.stores.lock().unwrap().get(&query.id).cloned();
                    Ok(stores::GetStoreResponse { store })
                }
            },
            stop.clone(),
        )
        .await
        .expect("serve GetStore");
}

/// Serves both lookups from `fake` until the returned token is cancelled.
async fn serve_fake(app: &TestApp, fake: Arc<FakeStores>) -> CancellationToken {
    let stop = CancellationToken::new();
    serve_products(app, fake.clone(), &stop).await;
    serve_stores(app, fake, &stop).await;
    stop
}

/// Publishes a stores event as the stores service's relay would.
async fn publish<E: Event>(app: &TestApp, event: &E) -> Envelope {
    app.bus
        .publish_event(event)
        .await
        .expect("publish a stores event")
}

/// Waits until the service has handled `envelope` (its inbox row committed).
async fn handled(pool: &PgPool, envelope: &Envelope) {
    testkit::eventually(WAIT, &format!("{} handled", envelope.name), || async {
        let done: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE message_id = $1)")
                .bind(envelope.id)
                .fetch_one(pool)
                .await
                .expect("query the inbox");
        done.then_some(())
    })
    .await;
}

/// Store `s1` and product `p1` (9.99) in the caches through the stores' events.
async fn catalogue_from_events(app: &TestApp, pool: &PgPool) {
    publish(
        app,
        &stores::StoreCreated {
            id: "s1".into(),
            name: "Store ABC".into(),
            location: "The mall".into(),
        },
    )
    .await;
    let added = publish(
        app,
        &stores::ProductAdded {
            id: "p1".into(),
            store_id: "s1".into(),
            name: "Product ABC".into(),
            description: "Product description".into(),
            sku: "productABC".into(),
            price: 9.99,
        },
    )
    .await;
    handled(pool, &added).await;
}

async fn start(app: &TestApp, customer: &str) -> String {
    let (status, body) = app
        .post("/api/baskets", json!({ "customerId": customer }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

async fn add(app: &TestApp, basket: &str, product: &str, quantity: i32) -> (StatusCode, Value) {
    app.put(
        &format!("/api/baskets/{basket}/addItem"),
        json!({ "productId": product, "quantity": quantity }),
    )
    .await
}

async fn remove(app: &TestApp, basket: &str, product: &str, quantity: i32) -> (StatusCode, Value) {
    app.put(
        &format!("/api/baskets/{basket}/removeItem"),
        json!({ "productId": product, "quantity": quantity }),
    )
    .await
}

async fn items(app: &TestApp, basket: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/baskets/{basket}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["basket"]["id"], basket);
    body["basket"]["items"]
        .as_array()
        .expect("items")
        .to_owned()
}

fn assert_error(answer: (StatusCode, Value), status: StatusCode, code: i64, message: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(body["details"].is_array(), "{body}");
}

fn bad_request(answer: (StatusCode, Value), message: &str) {
    assert_error(answer, StatusCode::BAD_REQUEST, 3, message);
}

#[tokio::test]
async fn start_basket_answers_an_id_and_publishes_basket_started() {
    let app = spawn().await;
    let id = start(&app, "customer-1").await;
    assert_eq!(
        uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()),
        Ok(4)
    );
    assert_eq!(items(&app, &id).await, Vec::<Value>::new());

    // Both spellings in.
    let (status, body) = app
        .post("/api/baskets", json!({ "customer_id": "customer-2" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let started: BasketStarted = app
        .wait_for_message(&BasketStarted::message_name(), |e: &BasketStarted| {
            e.id == id
        })
        .await;
    assert_eq!(started.customer_id, "customer-1");
    let envelope = app
        .wait_for(&BasketStarted::message_name(), |e| {
            e.key() == Some(id.as_str())
        })
        .await;
    assert_eq!(envelope.subject, app.bus.subject(BasketStarted::SUBJECT));
}

#[tokio::test]
async fn start_basket_needs_a_customer_and_valid_json() {
    let app = spawn().await;
    for body in [
        json!({}),
        json!({ "customerId": "" }),
        json!({ "customerId": null }),
    ] {
        bad_request(
            app.post("/api/baskets", body).await,
            "the customer id cannot be blank",
        );
    }
    let (status, body) = app
        .call_raw(Method::POST, "/api/baskets", "{\"customerId\":")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 3);

    // Nothing was started: the only BasketStarted is the next one.
    let id = start(&app, "customer-1").await;
    app.wait_for(&BasketStarted::message_name(), |e| {
        e.key() == Some(id.as_str())
    })
    .await;
    assert_eq!(app.published_named(&BasketStarted::message_name()).len(), 1);
}

#[tokio::test]
async fn an_unknown_basket_is_not_found_and_refuses_commands_without_being_created() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;

    assert_error(
        app.get("/api/baskets/nope").await,
        StatusCode::NOT_FOUND,
        5,
        "the basket was not found",
    );
    bad_request(
        app.delete("/api/baskets/nope").await,
        "the basket cannot be cancelled",
    );
    bad_request(
        add(&app, "nope", "p1", 1).await,
        "the basket cannot be modified",
    );
    bad_request(
        remove(&app, "nope", "p1", 1).await,
        "the basket cannot be modified",
    );
    bad_request(
        app.put("/api/baskets/nope/checkout", json!({ "paymentId": "pay" }))
            .await,
        "baskets checkout: the basket cannot be modified",
    );
    assert_error(
        app.get("/api/baskets/nope").await,
        StatusCode::NOT_FOUND,
        5,
        "the basket was not found",
    );
    let streams: i64 = sqlx::query_scalar("SELECT count(*) FROM streams")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(streams, 0, "no orphan stream");
}

#[tokio::test]
async fn items_are_added_from_caches_fed_by_stores_events() {
    let app = spawn().await;
    let pool = pool(&app).await;
    // The participation toggle travels on the same subject: skipped, not dead-lettered.
    publish(
        &app,
        &stores::StoreParticipationToggled {
            id: "s1".into(),
            participating: true,
        },
    )
    .await;
    catalogue_from_events(&app, &pool).await;

    // No stores responder runs: the caches answer.
    let basket = start(&app, "customer-1").await;
    assert_eq!(
        add(&app, &basket, "p1", 5).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        add(&app, &basket, "p1", 2).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        items(&app, &basket).await,
        vec![json!({
            "storeId": "s1", "productId": "p1", "storeName": "Store ABC",
            "productName": "Product ABC", "productPrice": 9.99, "quantity": 7
        })]
    );
    // Numbers as strings and snake_case are accepted.
    let (status, _) = app
        .put(
            &format!("/api/baskets/{basket}/addItem"),
            json!({ "product_id": "p1", "quantity": "1" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items(&app, &basket).await[0]["quantity"], 8);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_cache_miss_asks_the_stores_service_once_and_caches_the_answer() {
    let app = spawn().await;
    let fake = Arc::new(
        FakeStores::default()
            .with_product("p1", "s1", "Product ABC", 100_000.5)
            .with_store("s1", "Store ABC"),
    );
    let _stop = serve_fake(&app, fake.clone()).await.drop_guard();

    let first = start(&app, "customer-1").await;
    let second = start(&app, "customer-2").await;
    assert_eq!(add(&app, &first, "p1", 1).await.0, StatusCode::OK);
    assert_eq!(add(&app, &second, "p1", 3).await.0, StatusCode::OK);
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 1);
    assert_eq!(fake.store_asks.load(Ordering::SeqCst), 1);
    let lines = items(&app, &second).await;
    // A price the original's decimal(9,4) could not hold.
    assert_eq!(lines[0]["productPrice"], 100_000.5);
    assert_eq!(lines[0]["storeName"], "Store ABC");
    assert_eq!(lines[0]["quantity"], 3);

    // Removing a line the basket holds needs no lookup.
    assert_eq!(remove(&app, &second, "p1", 1).await.0, StatusCode::OK);
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 1);
    assert_eq!(items(&app, &second).await[0]["quantity"], 2);
}

#[tokio::test]
async fn an_unknown_product_is_not_found() {
    let app = spawn().await;
    let fake = Arc::new(FakeStores::default());
    let _stop = serve_fake(&app, fake.clone()).await.drop_guard();
    let basket = start(&app, "customer-1").await;
    let not_located = "product fallback failed: product was not located";
    for product in ["missing", ""] {
        assert_error(
            add(&app, &basket, product, 1).await,
            StatusCode::NOT_FOUND,
            5,
            not_located,
        );
        assert_error(
            remove(&app, &basket, product, 1).await,
            StatusCode::NOT_FOUND,
            5,
            not_located,
        );
    }
    // The product is looked up before the basket and the quantity are checked.
    assert_error(
        add(&app, "nope", "missing", -1).await,
        StatusCode::NOT_FOUND,
        5,
        not_located,
    );
    assert_error(
        remove(&app, "nope", "missing", -1).await,
        StatusCode::NOT_FOUND,
        5,
        not_located,
    );
    assert!(items(&app, &basket).await.is_empty());
}

#[tokio::test]
async fn a_product_lookup_without_answer_fails_with_the_originals_text() {
    let app = spawn().await;
    let basket = start(&app, "customer-1").await;
    let requesting = "product fallback failed: requesting product";
    // Nobody serves the query.
    assert_error(
        add(&app, &basket, "p1", 1).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        requesting,
    );
    assert_error(
        remove(&app, &basket, "p1", 1).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        requesting,
    );

    // A responder slower than the deadline.
    let stop = CancellationToken::new();
    app.bus
        .serve::<stores::GetProduct, _, _>(
            "stores",
            |_, _| async {
                tokio::time::sleep(LOOKUP_TIMEOUT * 4).await;
                Ok(stores::GetProductResponse::default())
            },
            stop.clone(),
        )
        .await
        .unwrap();
    let _stop = stop.drop_guard();
    let started = std::time::Instant::now();
    assert_error(
        add(&app, &basket, "p1", 1).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        requesting,
    );
    assert!(
        started.elapsed() < LOOKUP_TIMEOUT * 3,
        "{:?}",
        started.elapsed()
    );
    assert!(items(&app, &basket).await.is_empty());
}

#[tokio::test]
async fn the_store_of_the_product_must_be_known() {
    let app = spawn().await;
    let pool = pool(&app).await;
    let basket = start(&app, "customer-1").await;

    // A product whose store nobody can be asked about: only GetProduct is served.
    let fake = Arc::new(FakeStores::default().with_product("p1", "s1", "Product", 1.0));
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    serve_products(&app, fake.clone(), &stop).await;
    assert_error(
        add(&app, &basket, "p1", 1).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        "store fallback failed: requesting store",
    );

    // Now GetStore is served but does not know the store.
    serve_stores(&app, fake.clone(), &stop).await;
    assert_error(
        add(&app, &basket, "p1", 1).await,
        StatusCode::NOT_FOUND,
        5,
        "store fallback failed",
    );
    assert!(items(&app, &basket).await.is_empty());
    // The failed requests cached nothing: their transactions rolled back.
    let cached: i64 = sqlx::query_scalar("SELECT count(*) FROM products_cache")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cached, 0);
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 2);
    assert_eq!(fake.store_asks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_quantities_are_refused_and_change_nothing() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;
    let basket = start(&app, "customer-1").await;
    assert_eq!(add(&app, &basket, "p1", 2).await.0, StatusCode::OK);

    bad_request(
        add(&app, &basket, "p1", -1).await,
        "the item quantity cannot be negative",
    );
    bad_request(
        add(&app, &basket, "p1", 0).await,
        "the item quantity cannot be zero",
    );
    bad_request(
        remove(&app, &basket, "p1", -1).await,
        "the item quantity cannot be negative",
    );
    bad_request(
        remove(&app, &basket, "p1", 0).await,
        "the item quantity cannot be zero",
    );
    bad_request(
        add(&app, &basket, "p1", i32::MAX).await,
        "the item quantity is too large",
    );
    for raw in [
        r#"{"productId":"p1","quantity":"many"}"#,
        r#"{"productId":"p1","quantity":1.5}"#,
        r#"{"productId":"p1","quantity":3000000000}"#,
        "5",
    ] {
        let (status, body) = app
            .call_raw(Method::PUT, &format!("/api/baskets/{basket}/addItem"), raw)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}: {body}");
        assert_eq!(body["code"], 3);
    }
    let lines = items(&app, &basket).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["quantity"], 2);
}

#[tokio::test]
async fn removing_reduces_the_line_and_deletes_it_at_zero() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;
    let other = publish(
        &app,
        &stores::ProductAdded {
            id: "p2".into(),
            store_id: "s1".into(),
            name: "Other".into(),
            price: 1.0,
            ..Default::default()
        },
    )
    .await;
    handled(&pool, &other).await;
    let basket = start(&app, "customer-1").await;
    assert_eq!(add(&app, &basket, "p1", 2).await.0, StatusCode::OK);

    // The original deleted the line here (off by one, spec weaknesses.md A10).
    assert_eq!(
        remove(&app, &basket, "p1", 1).await,
        (StatusCode::OK, json!({}))
    );
    let lines = items(&app, &basket).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["quantity"], 1);

    // A product not in the basket: nothing to do, not an error.
    assert_eq!(
        remove(&app, &basket, "p2", 1).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(items(&app, &basket).await.len(), 1);

    assert_eq!(remove(&app, &basket, "p1", 1).await.0, StatusCode::OK);
    assert!(items(&app, &basket).await.is_empty());
}

#[tokio::test]
async fn cancelling_empties_the_basket_publishes_basket_canceled_and_freezes_it() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;
    let basket = start(&app, "customer-1").await;
    assert_eq!(add(&app, &basket, "p1", 1).await.0, StatusCode::OK);

    assert_eq!(
        app.delete(&format!("/api/baskets/{basket}")).await,
        (StatusCode::OK, json!({}))
    );
    let canceled: BasketCanceled = app
        .wait_for_message(&BasketCanceled::message_name(), |e: &BasketCanceled| {
            e.id == basket
        })
        .await;
    assert_eq!(canceled.id, basket);
    assert!(items(&app, &basket).await.is_empty());

    bad_request(
        app.delete(&format!("/api/baskets/{basket}")).await,
        "the basket cannot be cancelled",
    );
    bad_request(
        add(&app, &basket, "p1", 1).await,
        "the basket cannot be modified",
    );
    bad_request(
        remove(&app, &basket, "p1", 1).await,
        "the basket cannot be modified",
    );
    bad_request(
        app.put(
            &format!("/api/baskets/{basket}/checkout"),
            json!({ "paymentId": "pay" }),
        )
        .await,
        "baskets checkout: the basket cannot be modified",
    );
    assert!(items(&app, &basket).await.is_empty());
    assert_eq!(
        app.published_named(&BasketCanceled::message_name()).len(),
        1
    );
}

#[tokio::test]
async fn checkout_publishes_the_whole_basket_and_freezes_it() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;
    let fake = Arc::new(
        FakeStores::default()
            .with_product("p2", "s2", "Product XYZ", 2.5)
            .with_store("s2", "Store XYZ"),
    );
    let _stop = serve_fake(&app, fake).await.drop_guard();
    let basket = start(&app, "customer-1").await;
    assert_eq!(add(&app, &basket, "p1", 5).await.0, StatusCode::OK);
    assert_eq!(add(&app, &basket, "p2", 1).await.0, StatusCode::OK);

    assert_eq!(
        app.put(
            &format!("/api/baskets/{basket}/checkout"),
            json!({ "payment_id": "pay-1" })
        )
        .await,
        (StatusCode::OK, json!({}))
    );
    let envelope = app
        .wait_for(&BasketCheckedOut::message_name(), |e| {
            e.key() == Some(basket.as_str())
        })
        .await;
    let checked_out: BasketCheckedOut = envelope.decode().unwrap();
    assert_eq!(checked_out.id, basket);
    assert_eq!(checked_out.customer_id, "customer-1");
    assert_eq!(checked_out.payment_id, "pay-1");
    let lines: Vec<_> = checked_out
        .items
        .iter()
        .map(|i| {
            (
                i.store_id.as_str(),
                i.product_id.as_str(),
                i.store_name.as_str(),
                i.product_name.as_str(),
                i.price,
                i.quantity,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("s1", "p1", "Store ABC", "Product ABC", 9.99, 5),
            ("s2", "p2", "Store XYZ", "Product XYZ", 2.5, 1),
        ]
    );

    // Checked out: the lines stay readable, nothing changes any more.
    assert_eq!(items(&app, &basket).await.len(), 2);
    bad_request(
        app.put(
            &format!("/api/baskets/{basket}/checkout"),
            json!({ "paymentId": "pay-2" }),
        )
        .await,
        "baskets checkout: the basket cannot be modified",
    );
    bad_request(
        add(&app, &basket, "p1", 1).await,
        "the basket cannot be modified",
    );
    bad_request(
        app.delete(&format!("/api/baskets/{basket}")).await,
        "the basket cannot be cancelled",
    );
    assert_eq!(items(&app, &basket).await[0]["quantity"], 5);
    assert_eq!(
        app.published_named(&BasketCheckedOut::message_name()).len(),
        1
    );
}

#[tokio::test]
async fn checkout_needs_items_then_a_payment() {
    let app = spawn().await;
    let pool = pool(&app).await;
    catalogue_from_events(&app, &pool).await;
    let basket = start(&app, "customer-1").await;
    bad_request(
        app.put(&format!("/api/baskets/{basket}/checkout"), json!({}))
            .await,
        "baskets checkout: the basket has no items",
    );
    assert_eq!(add(&app, &basket, "p1", 1).await.0, StatusCode::OK);
    for body in [
        json!({}),
        json!({ "paymentId": "" }),
        json!({ "paymentId": null }),
    ] {
        bad_request(
            app.put(&format!("/api/baskets/{basket}/checkout"), body)
                .await,
            "baskets checkout: the payment id cannot be blank",
        );
    }
    // Still open: it can be changed and checked out.
    assert_eq!(add(&app, &basket, "p1", 1).await.0, StatusCode::OK);
    assert_eq!(
        app.put(
            &format!("/api/baskets/{basket}/checkout"),
            json!({ "paymentId": "pay" })
        )
        .await
        .0,
        StatusCode::OK
    );
    let checked_out: BasketCheckedOut = app
        .wait_for_message(&BasketCheckedOut::message_name(), |e: &BasketCheckedOut| {
            e.id == basket
        })
        .await;
    assert_eq!(checked_out.items[0].quantity, 2);
    assert_eq!(
        app.published_named(&BasketCheckedOut::message_name()).len(),
        1
    );
}

#[tokio::test]
async fn catalogue_changes_reach_new_lines_only_and_prices_are_absolute() {
    let app = spawn().await;
    let pool = pool(&app).await;
    // The stores service already has the increased price when the cache misses (F1).
    let fake = Arc::new(
        FakeStores::default()
            .with_product("p1", "s1", "Product ABC", 12.0)
            .with_store("s1", "Store ABC"),
    );
    let _stop = serve_fake(&app, fake.clone()).await.drop_guard();
    let first = start(&app, "customer-1").await;
    assert_eq!(add(&app, &first, "p1", 1).await.0, StatusCode::OK);

    // The increase arrives after the lookup: set to 12, not 12 + 2.
    let up = publish(
        &app,
        &stores::ProductPriceIncreased {
            id: "p1".into(),
            delta: 2.0,
            price: 12.0,
        },
    )
    .await;
    handled(&pool, &up).await;
    let second = start(&app, "customer-2").await;
    assert_eq!(add(&app, &second, "p1", 1).await.0, StatusCode::OK);
    assert_eq!(items(&app, &second).await[0]["productPrice"], 12.0);

    let down = publish(
        &app,
        &stores::ProductPriceDecreased {
            id: "p1".into(),
            delta: -4.5,
            price: 7.5,
        },
    )
    .await;
    let rebranded = publish(
        &app,
        &stores::ProductRebranded {
            id: "p1".into(),
            name: "Product NEW".into(),
            description: "new".into(),
        },
    )
    .await;
    let renamed = publish(
        &app,
        &stores::StoreRebranded {
            id: "s1".into(),
            name: "Store NEW".into(),
        },
    )
    .await;
    for envelope in [&down, &rebranded, &renamed] {
        handled(&pool, envelope).await;
    }

    let third = start(&app, "customer-3").await;
    assert_eq!(add(&app, &third, "p1", 1).await.0, StatusCode::OK);
    let line = &items(&app, &third).await[0];
    assert_eq!(line["productPrice"], 7.5);
    assert_eq!(line["productName"], "Product NEW");
    assert_eq!(line["storeName"], "Store NEW");
    // Lines already in baskets keep what they captured.
    let line = &items(&app, &first).await[0];
    assert_eq!(line["productPrice"], 12.0);
    assert_eq!(line["productName"], "Product ABC");
    assert_eq!(line["storeName"], "Store ABC");
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 1);

    // A price change for a product not cached is not applied to anything (and not an error):
    // the next lookup fetches the current price.
    let stray = publish(
        &app,
        &stores::ProductPriceIncreased {
            id: "p9".into(),
            delta: 1.0,
            price: 3.0,
        },
    )
    .await;
    handled(&pool, &stray).await;

    // Removed from the catalogue: the cache row goes, the next add asks stores again.
    fake.products.lock().unwrap().clear();
    let removed = publish(&app, &stores::ProductRemoved { id: "p1".into() }).await;
    handled(&pool, &removed).await;
    assert_error(
        add(&app, &third, "p1", 1).await,
        StatusCode::NOT_FOUND,
        5,
        "product fallback failed: product was not located",
    );
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 2);
    assert_eq!(items(&app, &third).await[0]["quantity"], 1);
    // ...but the line already in the basket can still be removed (the original answered 404).
    assert_eq!(
        remove(&app, &third, "p1", 1).await,
        (StatusCode::OK, json!({}))
    );
    assert!(items(&app, &third).await.is_empty());
    assert_eq!(fake.product_asks.load(Ordering::SeqCst), 2);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn router_level_errors_keep_the_shape() {
    let app = spawn().await;
    let (status, body) = app.call(Method::POST, "/api/baskets/x/addItem", None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["code"], 12);
    let (status, body) = app.get("/api/baskets/x/unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], 5);
}
