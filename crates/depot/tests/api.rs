//! The depot service on a random port against the real NATS and PostgreSQL: the REST endpoints
//! of spec api.md §2.5 (and the added GET) with their error cases, the saga's depot commands and
//! their replies, the store/product caches fed by events, and the stores lookups over NATS
//! (faked here with `bus.serve`). Each test has its own database and prefix.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use contracts::depot::v1 as api;
use contracts::stores::v1 as stores;
use depot::DepotModule;
use messaging::{CancellationToken, Command, Empty, Envelope, Message, header};
use platform::testing::{TestApp, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn spawn() -> TestApp {
    TestApp::spawn("depot", vec![Box::new(DepotModule::new())]).await
}

/// A stand-in for the stores service's query responders: answers from fixed tables and
/// counts the questions.
struct FakeStores {
    asked: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for FakeStores {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fake_stores(app: &TestApp) -> FakeStores {
    let stores_table: Arc<HashMap<String, stores::Store>> = Arc::new(
        [
            ("s1", "Store One", "North wing"),
            ("s2", "Store Two", "South wing"),
        ]
        .into_iter()
        .map(|(id, name, location)| {
            let store = stores::Store {
                id: id.into(),
                name: name.into(),
                location: location.into(),
                participating: true,
            };
            (id.to_owned(), store)
        })
        .collect(),
    );
    let products_table: Arc<HashMap<String, stores::Product>> = Arc::new(
        [
            ("p1", "s1", "Apples"),
            ("p2", "s1", "Pears"),
            ("p3", "s2", "Bread"),
        ]
        .into_iter()
        .map(|(id, store_id, name)| {
            let product = stores::Product {
                id: id.into(),
                store_id: store_id.into(),
                name: name.into(),
                price: 1.0,
                ..Default::default()
            };
            (id.to_owned(), product)
        })
        .collect(),
    );
    let asked = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let counter = asked.clone();
    app.bus
        .serve::<stores::GetStore, _, _>(
            "fake-stores",
            move |q, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                let store = stores_table.get(&q.id).cloned();
                async move { Ok(stores::GetStoreResponse { store }) }
            },
            stop.clone(),
        )
        .await
        .expect("serve GetStore");
    let counter = asked.clone();
    app.bus
        .serve::<stores::GetProduct, _, _>(
            "fake-stores",
            move |q, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                let product = products_table.get(&q.id).cloned();
                async move { Ok(stores::GetProductResponse { product }) }
            },
            stop.clone(),
        )
        .await
        .expect("serve GetProduct");
    FakeStores { asked, stop }
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

fn item(product: &str, store: &str, quantity: i32) -> Value {
    json!({"productId": product, "storeId": store, "quantity": quantity})
}

async fn create_list(app: &TestApp, order: &str, items: Value) -> String {
    let (status, body) = app
        .post(
            "/api/depot/shopping",
            json!({"orderId": order, "items": items}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

async fn list(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/depot/shopping/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["shoppingList"].clone()
}

/// Sends a saga command and returns its reply (named `reply_name`).
async fn send<C: Command>(app: &TestApp, command: &C, reply_name: &str) -> Envelope {
    let env = app.bus.command(command, "test.replies.Test");
    app.bus.publish(&env).await.expect("command published");
    let cause = env.id.to_string();
    app.wait_for(reply_name, |e| e.causation_id() == Some(cause.as_str()))
        .await
}

fn outcome(reply: &Envelope) -> &str {
    reply.header(header::REPLY_OUTCOME).unwrap_or_default()
}

/// Sends CreateShoppingList; returns the outcome and the list id of the reply.
async fn create_by_command(
    app: &TestApp,
    order: &str,
    items: &[(&str, &str, i32)],
) -> (String, String) {
    let cmd = api::CreateShoppingList {
        order_id: order.to_owned(),
        items: items
            .iter()
            .map(|(p, s, q)| api::create_shopping_list::Item {
                product_id: (*p).to_owned(),
                store_id: (*s).to_owned(),
                quantity: *q,
            })
            .collect(),
    };
    let reply = send(app, &cmd, &api::CreatedShoppingList::message_name()).await;
    let body = reply
        .decode::<api::CreatedShoppingList>()
        .expect("a CreatedShoppingList reply");
    (outcome(&reply).to_owned(), body.id)
}

async fn initiate(app: &TestApp, id: &str) -> String {
    let reply = send(
        app,
        &api::InitiateShopping { id: id.to_owned() },
        &Empty::message_name(),
    )
    .await;
    outcome(&reply).to_owned()
}

async fn cancel(app: &TestApp, id: &str) -> String {
    let reply = send(
        app,
        &api::CancelShoppingList { id: id.to_owned() },
        &Empty::message_name(),
    )
    .await;
    outcome(&reply).to_owned()
}

async fn db(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(app.db.url()).await.expect("test db")
}

async fn list_count(app: &TestApp) -> i64 {
    let pool = db(app).await;
    let n = sqlx::query_scalar("SELECT count(*) FROM depot.shopping_lists")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

#[tokio::test]
async fn a_list_goes_from_pending_to_completed_and_tells_ordering() {
    let app = spawn().await;
    let fake = fake_stores(&app).await;
    let id = create_list(
        &app,
        "order-1",
        json!([
            item("p1", "s1", 2),
            item("p3", "s2", 1),
            item("p2", "s1", 1),
            item("p1", "s1", 3)
        ]),
    )
    .await;
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(
        list(&app, &id).await,
        json!({
            "id": id, "orderId": "order-1", "status": "pending", "assignedBotId": "",
            "stops": [
                {"storeId": "s1", "storeName": "Store One", "storeLocation": "North wing", "items": [
                    {"productId": "p1", "productName": "Apples", "quantity": 5},
                    {"productId": "p2", "productName": "Pears", "quantity": 1},
                ]},
                {"storeId": "s2", "storeName": "Store Two", "storeLocation": "South wing", "items": [
                    {"productId": "p3", "productName": "Bread", "quantity": 1},
                ]},
            ]
        })
    );
    // Two stores and three products asked once each, then cached.
    assert_eq!(fake.asked.load(Ordering::SeqCst), 5);
    create_list(&app, "order-2", json!([item("p1", "s1", 1)])).await;
    assert_eq!(
        fake.asked.load(Ordering::SeqCst),
        5,
        "served from the cache"
    );

    // A pending list is not released to the bots yet.
    let assign = format!("/api/depot/shopping/{id}/assign");
    let complete = format!("/api/depot/shopping/{id}/complete");
    assert_error(
        app.put(&assign, json!({"botId": "bot-1"})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be assigned",
    );
    assert_error(
        app.put(&complete, json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be completed",
    );
    assert_eq!(list(&app, &id).await["status"], "pending");

    assert_eq!(initiate(&app, &id).await, "success");
    assert_eq!(list(&app, &id).await["status"], "available");
    assert_error(
        app.put(&assign, json!({"botId": " "})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the bot id cannot be blank",
    );
    assert_error(
        app.put(&complete, json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be completed",
    );
    let (status, body) = app.put(&assign, json!({"bot_id": "bot-1"})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let l = list(&app, &id).await;
    assert_eq!(
        (l["status"].clone(), l["assignedBotId"].clone()),
        (json!("assigned"), json!("bot-1"))
    );
    assert_error(
        app.put(&assign, json!({"botId": "bot-2"})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be assigned",
    );

    let (status, body) = app.call(Method::PUT, &complete, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(list(&app, &id).await["status"], "completed");
    let done: api::ShoppingListCompleted = app
        .wait_for_message(
            &api::ShoppingListCompleted::message_name(),
            |e: &api::ShoppingListCompleted| e.id == id,
        )
        .await;
    assert_eq!(done.order_id, "order-1");

    // Done is done.
    assert_error(
        app.post(&format!("/api/depot/shopping/{id}"), json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be canceled",
    );
    assert_error(
        app.put(&complete, json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be completed",
    );
    assert_eq!(list(&app, &id).await["status"], "completed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.published_named(&api::ShoppingListCompleted::message_name())
            .len(),
        1
    );
}

#[tokio::test]
async fn cancel_over_rest_until_completed() {
    let app = spawn().await;
    let _fake = fake_stores(&app).await;
    let id = create_list(&app, "order-1", json!([item("p1", "s1", 1)])).await;
    let cancel_path = format!("/api/depot/shopping/{id}");
    let (status, body) = app.call(Method::POST, &cancel_path, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(list(&app, &id).await["status"], "canceled");
    assert_error(
        app.post(&cancel_path, json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be canceled",
    );
    assert_error(
        app.put(&format!("{cancel_path}/assign"), json!({"botId": "b"}))
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "the shopping list cannot be assigned",
    );
}

#[tokio::test]
async fn unknown_lists_are_not_found_with_the_original_text() {
    let app = spawn().await;
    let message = "sql: no rows in result set";
    assert_error(
        app.get("/api/depot/shopping/nope").await,
        StatusCode::NOT_FOUND,
        5,
        message,
    );
    assert_error(
        app.post("/api/depot/shopping/nope", json!({})).await,
        StatusCode::NOT_FOUND,
        5,
        message,
    );
    assert_error(
        app.put("/api/depot/shopping/nope/assign", json!({"botId": "b"}))
            .await,
        StatusCode::NOT_FOUND,
        5,
        message,
    );
    assert_error(
        app.put("/api/depot/shopping/nope/complete", json!({}))
            .await,
        StatusCode::NOT_FOUND,
        5,
        message,
    );
}

#[tokio::test]
async fn create_refuses_bad_input_and_unknown_stores_or_products_and_changes_nothing() {
    let app = spawn().await;
    let _fake = fake_stores(&app).await;
    let cases = [
        (
            json!({"items": [item("p1", "s1", 1)]}),
            StatusCode::BAD_REQUEST,
            3,
            "the order id cannot be blank",
        ),
        (
            json!({"orderId": "o", "items": null}),
            StatusCode::BAD_REQUEST,
            3,
            "the shopping list has no items",
        ),
        (
            json!({"orderId": "o", "items": [item("p1", "s1", 0)]}),
            StatusCode::BAD_REQUEST,
            3,
            "the item quantity must be greater than zero",
        ),
        (
            json!({"orderId": "o", "items": [item("p1", "s9", 1)]}),
            StatusCode::NOT_FOUND,
            5,
            "building shopping list: store fallback failed",
        ),
        (
            json!({"orderId": "o", "items": [item("p9", "s1", 1)]}),
            StatusCode::NOT_FOUND,
            5,
            "building shopping list: product fallback failed",
        ),
        (
            json!({"orderId": "o", "items": [item("p1", "s1", 1), item("", "s1", 1)]}),
            StatusCode::NOT_FOUND,
            5,
            "building shopping list: product fallback failed",
        ),
        (
            json!({"orderId": "o", "items": [item("p3", "s1", 1)]}),
            StatusCode::BAD_REQUEST,
            3,
            "the product does not belong to the store",
        ),
    ];
    for (body, status, code, message) in cases {
        assert_error(
            app.post("/api/depot/shopping", body).await,
            status,
            code,
            message,
        );
    }
    let (status, body) = app
        .call_raw(Method::POST, "/api/depot/shopping", "{\"orderId\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 3);
    assert_eq!(list_count(&app).await, 0);

    // snake_case and numbers as strings are accepted.
    let (status, body) = app
        .post(
            "/api/depot/shopping",
            json!({"order_id": "o", "items": [{"product_id": "p1", "store_id": "s1", "quantity": "2"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let l = list(&app, body["id"].as_str().unwrap()).await;
    assert_eq!(l["stops"][0]["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn without_a_stores_service_a_cache_miss_is_a_server_error() {
    let app = spawn().await;
    assert_error(
        app.post(
            "/api/depot/shopping",
            json!({"orderId": "o", "items": [item("p1", "s1", 1)]}),
        )
        .await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        "building shopping list: store fallback failed",
    );
    assert_eq!(list_count(&app).await, 0);
}

#[tokio::test]
async fn caches_follow_the_store_and_product_events() {
    let app = spawn().await;
    let pool = db(&app).await;
    app.bus
        .publish_event(&stores::StoreCreated {
            id: "s1".into(),
            name: "Old Store".into(),
            location: "East".into(),
        })
        .await
        .unwrap();
    app.bus
        .publish_event(&stores::StoreParticipationToggled {
            id: "s1".into(),
            participating: true,
        })
        .await
        .unwrap();
    app.bus
        .publish_event(&stores::ProductAdded {
            id: "p1".into(),
            store_id: "s1".into(),
            name: "Old Product".into(),
            description: "d".into(),
            sku: "sku".into(),
            price: 2.0,
        })
        .await
        .unwrap();
    app.bus
        .publish_event(&stores::ProductPriceIncreased {
            id: "p1".into(),
            delta: 1.0,
            price: 3.0,
        })
        .await
        .unwrap();
    let names = |pool: sqlx::PgPool| async move {
        let store: Option<String> =
            sqlx::query_scalar("SELECT name FROM depot.stores_cache WHERE id = 's1'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        let product: Option<String> =
            sqlx::query_scalar("SELECT name FROM depot.products_cache WHERE id = 'p1'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        (store, product)
    };
    testkit::eventually(WAIT, "the caches filled", || {
        let pool = pool.clone();
        async move {
            (names(pool).await == (Some("Old Store".into()), Some("Old Product".into())))
                .then_some(())
        }
    })
    .await;

    // No stores service runs: the list is built from the cache alone.
    let id = create_list(&app, "o1", json!([item("p1", "s1", 1)])).await;
    let stop = &list(&app, &id).await["stops"][0];
    assert_eq!(
        (
            stop["storeName"].clone(),
            stop["storeLocation"].clone(),
            stop["items"][0]["productName"].clone()
        ),
        (json!("Old Store"), json!("East"), json!("Old Product"))
    );

    app.bus
        .publish_event(&stores::StoreRebranded {
            id: "s1".into(),
            name: "New Store".into(),
        })
        .await
        .unwrap();
    app.bus
        .publish_event(&stores::ProductRebranded {
            id: "p1".into(),
            name: "New Product".into(),
            description: "d".into(),
        })
        .await
        .unwrap();
    testkit::eventually(WAIT, "the caches renamed", || {
        let pool = pool.clone();
        async move {
            (names(pool).await == (Some("New Store".into()), Some("New Product".into())))
                .then_some(())
        }
    })
    .await;
    let id = create_list(&app, "o2", json!([item("p1", "s1", 1)])).await;
    let stop = &list(&app, &id).await["stops"][0];
    assert_eq!(stop["storeName"], "New Store");
    assert_eq!(stop["items"][0]["productName"], "New Product");

    app.bus
        .publish_event(&stores::ProductRemoved { id: "p1".into() })
        .await
        .unwrap();
    testkit::eventually(WAIT, "the product forgotten", || {
        let pool = pool.clone();
        async move { names(pool).await.1.is_none().then_some(()) }
    })
    .await;
    assert_error(
        app.post(
            "/api/depot/shopping",
            json!({"orderId": "o3", "items": [item("p1", "s1", 1)]}),
        )
        .await,
        StatusCode::INTERNAL_SERVER_ERROR,
        13,
        "building shopping list: product fallback failed",
    );
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
    pool.close().await;
}

#[tokio::test]
async fn saga_commands_create_release_and_cancel_lists() {
    let app = spawn().await;
    let _fake = fake_stores(&app).await;

    let (result, id) =
        create_by_command(&app, "order-1", &[("p1", "s1", 2), ("p3", "s2", 1)]).await;
    assert_eq!(result, "success");
    let l = list(&app, &id).await;
    assert_eq!(
        (l["status"].clone(), l["orderId"].clone()),
        (json!("pending"), json!("order-1"))
    );
    assert_eq!(l["stops"].as_array().map(Vec::len), Some(2));

    // Sent again (the saga retrying): the same list, not a second one.
    let (result, again) = create_by_command(&app, "order-1", &[("p1", "s1", 2)]).await;
    assert_eq!((result.as_str(), again.as_str()), ("success", id.as_str()));
    assert_eq!(list_count(&app).await, 1);

    assert_eq!(initiate(&app, &id).await, "success");
    assert_eq!(list(&app, &id).await["status"], "available");
    assert_eq!(initiate(&app, &id).await, "success", "already released");
    assert_eq!(cancel(&app, &id).await, "success");
    assert_eq!(list(&app, &id).await["status"], "canceled");
    assert_eq!(cancel(&app, &id).await, "success", "already canceled");
    assert_eq!(initiate(&app, &id).await, "failure");
    assert_eq!(list(&app, &id).await["status"], "canceled");
    // Sent again after the saga compensated (late, or published once more): refused, and no
    // second list that nobody would ever cancel.
    assert_eq!(
        create_by_command(&app, "order-1", &[("p1", "s1", 2)]).await,
        ("failure".to_owned(), String::new())
    );
    assert_eq!(list_count(&app).await, 1);

    // Unknown lists, stores and products, and bad requests, are failures.
    assert_eq!(initiate(&app, "nope").await, "failure");
    assert_eq!(cancel(&app, "nope").await, "failure");
    assert_eq!(
        create_by_command(&app, "order-2", &[("p9", "s1", 1)]).await,
        ("failure".to_owned(), String::new())
    );
    assert_eq!(
        create_by_command(&app, "order-2", &[("p1", "s9", 1)]).await,
        ("failure".to_owned(), String::new())
    );
    assert_eq!(
        create_by_command(&app, "order-2", &[]).await,
        ("failure".to_owned(), String::new())
    );
    assert_eq!(list_count(&app).await, 1);

    // A completed list cannot be cancelled by the saga.
    let (_, done) = create_by_command(&app, "order-3", &[("p1", "s1", 1)]).await;
    assert_eq!(initiate(&app, &done).await, "success");
    app.put(
        &format!("/api/depot/shopping/{done}/assign"),
        json!({"botId": "b"}),
    )
    .await;
    app.put(&format!("/api/depot/shopping/{done}/complete"), json!({}))
        .await;
    assert_eq!(list(&app, &done).await["status"], "completed");
    assert_eq!(cancel(&app, &done).await, "failure");
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn create_command_retries_an_absent_stores_service_then_answers_failure() {
    let app = spawn().await;
    let started = std::time::Instant::now();
    let (result, id) = create_by_command(&app, "order-1", &[("p1", "s1", 1)]).await;
    assert_eq!((result.as_str(), id.as_str()), ("failure", ""));
    // The reply came on the last of the deliveries, after the back-off.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(list_count(&app).await, 0);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}
