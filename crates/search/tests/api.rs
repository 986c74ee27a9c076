//! The search service on a random port against real NATS and PostgreSQL: events published on
//! the bus feed the caches and the orders read model, the REST API answers searches. The
//! customers and stores services are faked with query responders where a test needs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use contracts::customers::v1::{
    Customer, CustomerRegistered, CustomerSmsChanged, GetCustomer, GetCustomerResponse,
};
use contracts::ordering::v1::{
    OrderApproved, OrderCanceled, OrderCompleted, OrderCreated, OrderReadied, order_created,
};
use contracts::stores::v1::{
    GetProduct, GetProductResponse, GetStore, GetStoreResponse, Product, ProductAdded,
    ProductRebranded, ProductRemoved, Store, StoreCreated, StoreRebranded,
};
use messaging::{Envelope, Event, header};
use platform::testing::{TestApp, WAIT};
use search::SearchModule;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn spawn() -> TestApp {
    TestApp::spawn("search", vec![Box::new(SearchModule::default())]).await
}

async fn publish<E: Event>(app: &TestApp, event: &E) -> Envelope {
    let env = app.bus.event(event);
    app.bus.publish(&env).await.expect("published");
    env
}

/// Publishes an event as if it had been sent at `sent_at` (RFC 3339).
async fn publish_at<E: Event>(app: &TestApp, event: &E, sent_at: &str) {
    let env = app.bus.event(event).with_header(header::SENT_AT, sent_at);
    app.bus.publish(&env).await.expect("published");
}

async fn pool(app: &TestApp) -> PgPool {
    persistence::connect(app.db.url(), "search")
        .await
        .expect("test pool")
}

/// Waits until `sql` (a count) reaches `n`.
async fn wait_count(pool: &PgPool, sql: &'static str, n: i64) {
    testkit::eventually(WAIT, sql, || async {
        let (count,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.ok()?;
        (count == n).then_some(())
    })
    .await;
}

/// Waits until the order is indexed with `status`, and returns it.
async fn wait_order(app: &TestApp, id: &str, status: &str) -> Value {
    let what = format!("order {id} indexed as {status}");
    testkit::eventually(WAIT, &what, || async {
        let (code, body) = app.get(&format!("/api/search/orders/{id}")).await;
        (code.as_u16() == 200 && body["order"]["status"] == status).then_some(body)
    })
    .await
}

fn line(product: &str, store: &str, price: f64, quantity: i32) -> order_created::Item {
    order_created::Item {
        product_id: product.into(),
        store_id: store.into(),
        price,
        quantity,
    }
}

fn order(id: &str, customer: &str, items: Vec<order_created::Item>) -> OrderCreated {
    OrderCreated {
        id: id.into(),
        customer_id: customer.into(),
        payment_id: format!("pay-{id}"),
        shopping_id: String::new(),
        items,
    }
}

/// POSTs a search and returns (status, order ids, next).
async fn search(app: &TestApp, body: Value) -> (u16, Vec<String>, String) {
    let (code, answer) = app.post("/api/search/orders", body).await;
    let ids = answer["orders"]
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .map(|o| o["orderId"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let next = answer["next"].as_str().unwrap_or_default().to_owned();
    (code.as_u16(), ids, next)
}

async fn ids(app: &TestApp, filters: Value) -> Vec<String> {
    let (code, ids, next) = search(app, json!({ "filters": filters })).await;
    assert_eq!(code, 200, "{filters}");
    assert_eq!(next, "", "one page holds every result of {filters}");
    ids
}

/// Caches fed by events (renames and removals included), four orders at known times, their
/// statuses; then every filter, alone and combined, and pagination.
#[tokio::test]
async fn indexes_orders_from_cached_names_and_answers_every_filter() {
    let app = spawn().await;
    let db = pool(&app).await;
    for (id, name) in [("c1", "Ada"), ("c2", "Bo")] {
        publish(
            &app,
            &CustomerRegistered {
                id: id.into(),
                name: name.into(),
                sms_number: "555".into(),
            },
        )
        .await;
    }
    publish(
        &app,
        &CustomerSmsChanged {
            id: "c1".into(),
            sms_number: "556".into(),
        },
    )
    .await;
    for (id, name) in [("s1", "Alpha"), ("s2", "Beta")] {
        publish(
            &app,
            &StoreCreated {
                id: id.into(),
                name: name.into(),
                location: "mall".into(),
            },
        )
        .await;
    }
    publish(
        &app,
        &StoreRebranded {
            id: "s2".into(),
            name: "Beta Bakery".into(),
        },
    )
    .await;
    for (id, store, name) in [
        ("p1", "s1", "Apple"),
        ("p2", "s1", "Pear"),
        ("p3", "s2", "Bread"),
    ] {
        publish(
            &app,
            &ProductAdded {
                id: id.into(),
                store_id: store.into(),
                name: name.into(),
                price: 1.0,
                ..Default::default()
            },
        )
        .await;
    }
    publish(
        &app,
        &ProductRebranded {
            id: "p3".into(),
            name: "Rye Bread".into(),
            description: String::new(),
        },
    )
    .await;
    publish(&app, &ProductRemoved { id: "p2".into() }).await;

    // No responders here: every name must come from the caches.
    wait_count(&db, "SELECT count(*) FROM customers_cache", 2).await;
    wait_count(
        &db,
        "SELECT count(*) FROM stores_cache WHERE name IN ('Alpha', 'Beta Bakery')",
        2,
    )
    .await;
    wait_count(
        &db,
        "SELECT count(*) FROM products_cache WHERE name IN ('Apple', 'Pear', 'Rye Bread')
         AND removed = (id = 'p2')",
        3,
    )
    .await;

    let o1 = order(
        "o1",
        "c1",
        vec![line("p1", "s1", 2.0, 3), line("p3", "s2", 1.5, 2)],
    );
    publish_at(&app, &o1, "2024-01-01T10:00:00Z").await;
    publish_at(
        &app,
        &order("o2", "c2", vec![line("p2", "s1", 10.0, 1)]),
        "2024-01-02T10:00:00Z",
    )
    .await;
    publish_at(
        &app,
        &order("o3", "c1", vec![line("p3", "s2", 4.0, 5)]),
        "2024-01-03T10:00:00Z",
    )
    .await;
    publish_at(
        &app,
        &order("o4", "c2", vec![line("p1", "s1", 1.0, 1)]),
        "2024-01-04T10:00:00Z",
    )
    .await;
    publish(
        &app,
        &OrderApproved {
            id: "o2".into(),
            customer_id: "c2".into(),
            payment_id: "pay".into(),
        },
    )
    .await;
    publish(
        &app,
        &OrderReadied {
            id: "o3".into(),
            customer_id: "c1".into(),
            payment_id: "pay".into(),
            total: 20.0,
        },
    )
    .await;
    publish(
        &app,
        &OrderCompleted {
            id: "o3".into(),
            customer_id: "c1".into(),
            invoice_id: "o3".into(),
        },
    )
    .await;
    publish(
        &app,
        &OrderCanceled {
            id: "o4".into(),
            customer_id: "c2".into(),
            payment_id: "pay".into(),
        },
    )
    .await;

    let first = wait_order(&app, "o1", "New").await;
    wait_order(&app, "o2", "Approved").await;
    wait_order(&app, "o3", "Completed").await;
    wait_order(&app, "o4", "Canceled").await;
    assert_eq!(
        first,
        json!({"order": {
            "orderId": "o1", "customerId": "c1", "customerName": "Ada",
            "items": [
                {"productId": "p1", "storeId": "s1", "productName": "Apple",
                 "storeName": "Alpha", "price": 2.0, "quantity": "3"},
                {"productId": "p3", "storeId": "s2", "productName": "Rye Bread",
                 "storeName": "Beta Bakery", "price": 1.5, "quantity": "2"}
            ],
            "total": 9.0, "status": "New"
        }})
    );
    let (_, removed) = app.get("/api/search/orders/o2").await;
    assert_eq!(
        removed["order"]["items"][0]["productName"], "Pear",
        "a removed product keeps its name for orders"
    );

    let all = ["o4", "o3", "o2", "o1"];
    assert_eq!(ids(&app, json!({})).await, all, "newest first");
    let (code, body) = app
        .call_raw(reqwest::Method::POST, "/api/search/orders", "")
        .await;
    assert_eq!(code.as_u16(), 200, "an empty body is {{}}");
    assert_eq!(body["orders"].as_array().map(Vec::len), Some(4));
    assert_eq!(ids(&app, json!({"customerId": "c1"})).await, ["o3", "o1"]);
    assert_eq!(
        ids(&app, json!({"after": "2024-01-02T10:00:00Z"})).await,
        ["o4", "o3"]
    );
    assert_eq!(
        ids(&app, json!({"before": "2024-01-02T10:00:00Z"})).await,
        ["o1"]
    );
    assert_eq!(
        ids(
            &app,
            json!({"after": "2024-01-01T12:00:00Z", "before": "2024-01-03T12:00:00+01:00"})
        )
        .await,
        ["o3", "o2"]
    );
    assert_eq!(
        ids(&app, json!({"storeIds": ["s2", "nope"]})).await,
        ["o3", "o1"]
    );
    assert_eq!(
        ids(&app, json!({"productIds": ["p2", "p1"]})).await,
        ["o4", "o2", "o1"]
    );
    assert_eq!(ids(&app, json!({"minTotal": 9})).await, ["o3", "o2", "o1"]);
    assert_eq!(ids(&app, json!({"maxTotal": 9.5})).await, ["o4", "o1"]);
    assert_eq!(
        ids(&app, json!({"minTotal": 9.5, "maxTotal": "15"})).await,
        ["o2"]
    );
    assert_eq!(ids(&app, json!({"status": "Completed"})).await, ["o3"]);
    assert_eq!(ids(&app, json!({"status": "canceled"})).await, ["o4"]);
    assert_eq!(ids(&app, json!({"status": "Approved"})).await, ["o2"]);
    assert_eq!(ids(&app, json!({"status": "New"})).await, ["o1"]);
    assert_eq!(
        ids(&app, json!({"customerId": "c1", "storeIds": ["s1"]})).await,
        ["o1"]
    );
    assert_eq!(
        ids(
            &app,
            json!({"customer_id": "c2", "min_total": "5", "store_ids": null, "status": null})
        )
        .await,
        ["o2"],
        "snake_case, numbers as strings and nulls"
    );
    assert!(ids(&app, json!({"customerId": "c3"})).await.is_empty());

    // Pages of 3 then 1, and a filtered walk one by one.
    let (_, page, next) = search(&app, json!({"limit": 3})).await;
    assert_eq!(page, ["o4", "o3", "o2"]);
    assert!(!next.is_empty());
    let (_, page, last) = search(&app, json!({"limit": 3, "next": next})).await;
    assert_eq!((page, last.as_str()), (vec!["o1".to_owned()], ""));
    let (_, page, next) = search(&app, json!({"limit": 2})).await;
    assert_eq!(page, ["o4", "o3"]);
    let (_, page, last) = search(&app, json!({"limit": "2", "next": next})).await;
    assert_eq!(
        (page, last.as_str()),
        (vec!["o2".to_owned(), "o1".to_owned()], "")
    );
    let filter = json!({"customerId": "c1"});
    let (_, page, next) = search(&app, json!({"filters": filter, "limit": 1})).await;
    assert_eq!(page, ["o3"]);
    let (_, page, last) = search(&app, json!({"filters": filter, "limit": 1, "next": next})).await;
    assert_eq!((page, last.as_str()), (vec!["o1".to_owned()], ""));

    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

/// Names missing from the caches are asked of their owners and cached; with nobody answering,
/// indexing is retried (not crashed, not dropped) until someone does.
#[tokio::test]
async fn cache_misses_ask_the_owning_services_and_wait_for_them() {
    let app = spawn().await;
    let db = pool(&app).await;
    publish_at(
        &app,
        &order(
            "o1",
            "c9",
            vec![line("p9", "s9", 2.5, 4), line("gone", "s9", 1.0, 1)],
        ),
        "2024-02-01T08:00:00Z",
    )
    .await;
    // Nobody serves the queries yet: the first attempts fail and are retried with back-off.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, _) = app.get("/api/search/orders/o1").await;
    assert_eq!(code.as_u16(), 404);

    let asked = Arc::new(AtomicUsize::new(0));
    let stop = messaging::CancellationToken::new();
    let count = asked.clone();
    let _customers = app
        .bus
        .serve::<GetCustomer, _, _>(
            "customers",
            move |q, _| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(GetCustomerResponse {
                        customer: (q.id == "c9").then(|| Customer {
                            id: q.id.clone(),
                            name: "Cy".into(),
                            sms_number: "555".into(),
                            enabled: true,
                        }),
                    })
                }
            },
            stop.clone(),
        )
        .await
        .expect("serving GetCustomer");
    let _stores = app
        .bus
        .serve::<GetStore, _, _>(
            "stores",
            |q, _| async move {
                Ok(GetStoreResponse {
                    store: Some(Store {
                        id: q.id.clone(),
                        name: format!("Store {}", q.id),
                        location: "mall".into(),
                        participating: true,
                    }),
                })
            },
            stop.clone(),
        )
        .await
        .expect("serving GetStore");
    let _products = app
        .bus
        .serve::<GetProduct, _, _>(
            "stores",
            |q, _| async move {
                // "gone" was removed from the catalogue: the order is indexed without its name.
                Ok(GetProductResponse {
                    product: (q.id != "gone").then(|| Product {
                        id: q.id.clone(),
                        store_id: "s9".into(),
                        name: format!("Product {}", q.id),
                        price: 2.5,
                        ..Default::default()
                    }),
                })
            },
            stop.clone(),
        )
        .await
        .expect("serving GetProduct");

    let indexed = wait_order(&app, "o1", "New").await;
    assert_eq!(indexed["order"]["customerName"], "Cy");
    assert_eq!(indexed["order"]["total"], 11.0);
    assert_eq!(indexed["order"]["items"][0]["productName"], "Product p9");
    assert_eq!(indexed["order"]["items"][0]["storeName"], "Store s9");
    assert_eq!(indexed["order"]["items"][1]["productName"], "");
    assert_eq!(indexed["order"]["items"][1]["storeName"], "Store s9");
    wait_count(
        &db,
        "SELECT count(*) FROM customers_cache WHERE name = 'Cy'",
        1,
    )
    .await;
    wait_count(&db, "SELECT count(*) FROM stores_cache", 1).await;
    wait_count(&db, "SELECT count(*) FROM products_cache", 1).await;

    // The answers were cached: a second order for the same customer asks nobody.
    let before = asked.load(Ordering::SeqCst);
    publish_at(
        &app,
        &order("o2", "c9", vec![line("p9", "s9", 1.0, 1)]),
        "2024-02-02T08:00:00Z",
    )
    .await;
    wait_order(&app, "o2", "New").await;
    assert_eq!(asked.load(Ordering::SeqCst), before);
    // Unknown customer: indexed without a name rather than lost.
    publish_at(&app, &order("o3", "nobody", vec![]), "2024-02-03T08:00:00Z").await;
    let unknown = wait_order(&app, "o3", "New").await;
    assert_eq!(unknown["order"]["customerName"], "");
    assert_eq!(unknown["order"]["items"], json!([]));
    assert_eq!(unknown["order"]["total"], 0.0);
    stop.cancel();
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

/// A status that arrives before its order is applied when the order is indexed; later stale
/// events do not move the status back.
#[tokio::test]
async fn statuses_before_the_order_are_kept_and_never_go_back() {
    let app = spawn().await;
    let db = pool(&app).await;
    publish(
        &app,
        &OrderReadied {
            id: "o5".into(),
            customer_id: "c1".into(),
            payment_id: "pay".into(),
            total: 0.0,
        },
    )
    .await;
    wait_count(
        &db,
        "SELECT count(*) FROM pending_statuses WHERE order_id = 'o5' AND status = 'Ready For Pickup'",
        1,
    )
    .await;
    let (code, _) = app.get("/api/search/orders/o5").await;
    assert_eq!(code.as_u16(), 404, "a status alone does not make an order");

    // An order without items or customer needs no lookup.
    publish(&app, &order("o5", "", vec![])).await;
    wait_order(&app, "o5", "Ready For Pickup").await;
    wait_count(&db, "SELECT count(*) FROM pending_statuses", 0).await;

    publish(
        &app,
        &OrderApproved {
            id: "o5".into(),
            customer_id: String::new(),
            payment_id: "pay".into(),
        },
    )
    .await;
    publish(
        &app,
        &OrderCompleted {
            id: "o5".into(),
            customer_id: String::new(),
            invoice_id: "o5".into(),
        },
    )
    .await;
    publish(
        &app,
        &OrderCanceled {
            id: "o5".into(),
            customer_id: String::new(),
            payment_id: "pay".into(),
        },
    )
    .await;
    // Same key, same consumer: handled in order, so once the sentinel below is indexed the
    // three events above have been handled.
    publish(&app, &order("o5", "", vec![line("x", "", 1.0, 1)])).await;
    wait_count(
        &db,
        "SELECT count(*) FROM inbox WHERE consumer = 'search-orders'",
        6,
    )
    .await;
    let (_, body) = app.get("/api/search/orders/o5").await;
    assert_eq!(
        body["order"]["status"], "Completed",
        "an ended order stays ended"
    );
    assert_eq!(
        body["order"]["items"],
        json!([]),
        "a second OrderCreated changes nothing"
    );
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

/// Unknown ids, bad filters and bad bodies: 4xx with clear messages, no crash.
#[tokio::test]
async fn bad_requests_are_refused_with_clear_messages() {
    let app = spawn().await;
    let (code, body) = app.get("/api/search/orders/nope").await;
    assert_eq!(code.as_u16(), 404);
    assert_eq!(body["code"], 5);
    assert_eq!(body["message"], search::ORDER_NOT_FOUND);

    let (code, body) = app.post("/api/search/orders", json!({})).await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(body, json!({"orders": [], "next": ""}));

    let cases = [
        (
            json!({"filters": {"after": "yesterday"}}),
            "invalid filters.after \"yesterday\"",
        ),
        (
            json!({"filters": {"before": "2024-02-30T00:00:00Z"}}),
            "invalid filters.before",
        ),
        (
            json!({"filters": {"after": "2024-02-02T00:00:00Z", "before": "2024-02-01T00:00:00Z"}}),
            "filters.after must be earlier than filters.before",
        ),
        (
            json!({"filters": {"minTotal": 10, "maxTotal": 5}}),
            "filters.minTotal cannot be greater than filters.maxTotal",
        ),
        (
            json!({"filters": {"status": "Shipped"}}),
            "invalid filters.status \"Shipped\"",
        ),
        (json!({"limit": -1}), "the limit cannot be negative"),
        (json!({"next": "garbage!"}), "invalid next cursor"),
        (json!({"limit": "many"}), "invalid request body"),
        (
            json!({"filters": {"storeIds": "s1"}}),
            "invalid request body",
        ),
    ];
    for (request, message) in cases {
        let (code, body) = app.post("/api/search/orders", request.clone()).await;
        assert_eq!(code.as_u16(), 400, "{request}: {body}");
        assert_eq!(body["code"], 3, "{request}");
        let text = body["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{request}: {text}");
    }
    let (code, body) = app
        .call_raw(
            reqwest::Method::POST,
            "/api/search/orders",
            "{\"filters\": ",
        )
        .await;
    assert_eq!((code.as_u16(), body["code"].clone()), (400, json!(3)));

    let (code, body) = app.get("/api/search/orders").await;
    assert_eq!((code.as_u16(), body["code"].clone()), (501, json!(12)));
}
