//! The stores service end to end: the module in the real host on port 0, against the machine's
//! NATS and PostgreSQL, each test with its own database and prefix (`TestApp`).
//!
//! Every endpoint of spec api.md §2.2 with its success body and every error case, the
//! integration events each write publishes (through the outbox), reads after rejected writes
//! (nothing changed, no stream created, nothing announced), and the GetStore/GetProduct query
//! responders.

use std::time::Duration;

use contracts::stores::v1 as api;
use messaging::Message;
use platform::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stores::StoresModule;
use stores::application::{PRODUCT_NOT_FOUND, PRODUCT_STORE_NOT_FOUND, STORE_NOT_FOUND};

async fn spawn() -> TestApp {
    TestApp::spawn("stores", vec![Box::new(StoresModule::default())]).await
}

fn name<M: Message>() -> String {
    M::message_name()
}

/// An application error body (spec api.md §1.5).
fn app_error(code: u16, http: u16, type_code: &str, message: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "details": [{
            "@type": "type.googleapis.com/errors.ErrorType",
            "TypeCode": type_code,
            "HTTPCode": http.to_string(),
            "GRPCCode": code.to_string(),
        }]
    })
}

fn bad_request(message: &str) -> Value {
    app_error(3, 400, "BAD_REQUEST", message)
}

fn not_found(message: &str) -> Value {
    app_error(5, 404, "NOT_FOUND", message)
}

async fn expect(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = app.call(method.clone(), path, body.as_ref()).await;
    assert_eq!(status, StatusCode::OK, "{method} {path}: {answer}");
    answer
}

async fn create_store(app: &TestApp, name: &str, location: &str) -> String {
    let body = expect(
        app,
        Method::POST,
        "/api/stores",
        Some(json!({"name": name, "location": location})),
    )
    .await;
    body["id"].as_str().expect("an id").to_owned()
}

async fn add_product(app: &TestApp, store: &str, name: &str, price: f64) -> String {
    let body = expect(
        app,
        Method::POST,
        &format!("/api/stores/{store}/products"),
        Some(json!({"name": name, "description": "d", "sku": "s", "price": price})),
    )
    .await;
    body["id"].as_str().expect("an id").to_owned()
}

async fn pool(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(app.db.url())
        .await
        .expect("connect to the test database")
}

/// Rows of a `stores` schema table (streams, outbox, snapshots…).
async fn count(app: &TestApp, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM stores.{table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool(app).await)
        .await
        .expect("count rows")
}

async fn product_price(app: &TestApp, id: &str) -> f64 {
    let body = expect(
        app,
        Method::GET,
        &format!("/api/stores/products/{id}"),
        None,
    )
    .await;
    body["product"]["price"].as_f64().expect("a price")
}

// ---- stores ----

#[tokio::test]
async fn create_store_answers_an_id_fills_the_mall_and_publishes_store_created() {
    let app = spawn().await;
    let (status, body) = app
        .post(
            "/api/stores",
            json!({"name": "Store ABC", "location": "The mall", "ignored": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a UUID: {id}");
    assert_eq!(body, json!({"id": id}));

    let store =
        json!({"id": id, "name": "Store ABC", "location": "The mall", "participating": false});
    assert_eq!(
        expect(&app, Method::GET, &format!("/api/stores/{id}"), None).await,
        json!({"store": store})
    );
    assert_eq!(
        expect(&app, Method::GET, "/api/stores", None).await,
        json!({"stores": [store]})
    );

    let event: api::StoreCreated = app
        .wait_for_message(&name::<api::StoreCreated>(), |e: &api::StoreCreated| {
            e.id == id
        })
        .await;
    assert_eq!(event.name, "Store ABC");
    assert_eq!(event.location, "The mall");
    let envelope = app.wait_for(&name::<api::StoreCreated>(), |_| true).await;
    assert_eq!(
        envelope.subject,
        format!("{}.stores.events.Store", app.prefix)
    );
    assert_eq!(envelope.key(), Some(id.as_str()));
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn create_store_rejects_blank_fields_and_bad_json_and_changes_nothing() {
    let app = spawn().await;
    for (body, message) in [
        (
            json!({"name": "", "location": ""}),
            "the store name cannot be blank",
        ),
        (json!({"location": "x"}), "the store name cannot be blank"),
        (
            json!({"name": null, "location": "x"}),
            "the store name cannot be blank",
        ),
        (
            json!({"name": "   ", "location": "x"}),
            "the store name cannot be blank",
        ),
        (json!({"name": "x"}), "the store location cannot be blank"),
        (
            json!({"name": "x", "location": "\t"}),
            "the store location cannot be blank",
        ),
    ] {
        let (status, answer) = app.post("/api/stores", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, bad_request(message), "{body}");
    }
    // An empty body is `{}`: a blank name.
    let (status, answer) = app.call_raw(Method::POST, "/api/stores", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, bad_request("the store name cannot be blank"));
    for raw in [
        r#"{"name": "x""#,
        "not json",
        r#"{"name": 5, "location": "x"}"#,
    ] {
        let (status, answer) = app.call_raw(Method::POST, "/api/stores", raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(answer["code"], 3, "{raw}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with("invalid request body: "), "{message}");
    }

    assert_eq!(
        expect(&app, Method::GET, "/api/stores", None).await,
        json!({"stores": []})
    );
    assert_eq!(count(&app, "streams").await, 0);
    assert_eq!(count(&app, "outbox").await, 0);

    // The one valid request is the only store announced.
    let id = create_store(&app, "A", "B").await;
    app.wait_for(&name::<api::StoreCreated>(), |_| true).await;
    let created = app.published_named(&name::<api::StoreCreated>());
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].key(), Some(id.as_str()));
}

#[tokio::test]
async fn participation_is_toggled_listed_and_announced() {
    let app = spawn().await;
    let id = create_store(&app, "Store ABC", "The mall").await;
    let other = create_store(&app, "Other", "Upstairs").await;
    let path = format!("/api/stores/{id}/participating");

    // The static route wins over `/api/stores/{id}`.
    assert_eq!(
        expect(&app, Method::GET, "/api/stores/participating", None).await,
        json!({"stores": []})
    );

    assert_eq!(
        expect(&app, Method::PUT, &path, Some(json!({}))).await,
        json!({})
    );
    let listed = json!({"stores": [{"id": id, "name": "Store ABC", "location": "The mall", "participating": true}]});
    assert_eq!(
        expect(&app, Method::GET, "/api/stores/participating", None).await,
        listed
    );
    let all = expect(&app, Method::GET, "/api/stores", None).await;
    assert_eq!(all["stores"].as_array().unwrap().len(), 2);
    app.wait_for_message(
        &name::<api::StoreParticipationToggled>(),
        |e: &api::StoreParticipationToggled| e.id == id && e.participating,
    )
    .await;

    let (status, answer) = app.put(&path, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, bad_request("the store is already participating"));

    assert_eq!(expect(&app, Method::DELETE, &path, None).await, json!({}));
    app.wait_for_message(
        &name::<api::StoreParticipationToggled>(),
        |e: &api::StoreParticipationToggled| e.id == id && !e.participating,
    )
    .await;
    let (status, answer) = app.delete(&path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        bad_request("the store is already not participating")
    );
    let (status, answer) = app
        .delete(&format!("/api/stores/{other}/participating"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        bad_request("the store is already not participating")
    );

    assert_eq!(
        expect(&app, Method::GET, "/api/stores/participating", None).await,
        json!({"stores": []})
    );
    let store = expect(&app, Method::GET, &format!("/api/stores/{id}"), None).await;
    assert_eq!(store["store"]["participating"], false);

    // No body at all is accepted too; an invalid one is refused before anything changes.
    let (status, answer) = app.call_raw(Method::PUT, &path, "[1,").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3);
    assert_eq!(expect(&app, Method::PUT, &path, None).await, json!({}));
    testkit::eventually(
        Duration::from_secs(20),
        "three toggles announced",
        || async {
            (app.published_named(&name::<api::StoreParticipationToggled>())
                .len()
                >= 3)
                .then_some(())
        },
    )
    .await;
    // Rejected requests announced nothing: enable, disable, enable.
    let toggles: Vec<bool> = app
        .published_named(&name::<api::StoreParticipationToggled>())
        .iter()
        .map(|e| {
            e.decode::<api::StoreParticipationToggled>()
                .unwrap()
                .participating
        })
        .collect();
    assert_eq!(toggles, vec![true, false, true]);
}

#[tokio::test]
async fn rebrand_store_renames_announces_and_rejects_blank_names() {
    let app = spawn().await;
    let id = create_store(&app, "Store ABC", "The mall").await;
    let path = format!("/api/stores/{id}/rebrand");
    assert_eq!(
        expect(
            &app,
            Method::PUT,
            &path,
            Some(json!({"name": "Store XYZ", "id": "ignored"}))
        )
        .await,
        json!({})
    );
    let store = json!({"store": {"id": id, "name": "Store XYZ", "location": "The mall", "participating": false}});
    assert_eq!(
        expect(&app, Method::GET, &format!("/api/stores/{id}"), None).await,
        store
    );
    app.wait_for_message(&name::<api::StoreRebranded>(), |e: &api::StoreRebranded| {
        e.id == id && e.name == "Store XYZ"
    })
    .await;

    for body in [json!({"name": ""}), json!({}), json!({"name": " "})] {
        let (status, answer) = app.put(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, bad_request("the store name cannot be blank"));
    }
    let (status, answer) = app.call_raw(Method::PUT, &path, "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3);
    assert_eq!(
        expect(&app, Method::GET, &format!("/api/stores/{id}"), None).await,
        store
    );
    assert_eq!(app.published_named(&name::<api::StoreRebranded>()).len(), 1);
}

#[tokio::test]
async fn unknown_store_is_404_everywhere_and_no_stream_is_created() {
    let app = spawn().await;
    let store_missing = not_found(STORE_NOT_FOUND);
    for (method, path, body) in [
        (Method::GET, "/api/stores/nope", None),
        (
            Method::PUT,
            "/api/stores/nope/participating",
            Some(json!({})),
        ),
        (Method::DELETE, "/api/stores/nope/participating", None),
        (
            Method::PUT,
            "/api/stores/nope/rebrand",
            Some(json!({"name": "x"})),
        ),
    ] {
        let (status, answer) = app.call(method.clone(), path, body.as_ref()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer, store_missing, "{method} {path}");
    }
    let (status, answer) = app
        .post(
            "/api/stores/nope/products",
            json!({"name": "P", "price": 1.0}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer, not_found(PRODUCT_STORE_NOT_FOUND));
    // A catalogue of an unknown store is empty, as the original answered.
    assert_eq!(
        expect(&app, Method::GET, "/api/stores/nope/products", None).await,
        json!({"products": []})
    );

    assert_eq!(count(&app, "streams").await, 0);
    assert_eq!(count(&app, "events").await, 0);
    assert_eq!(count(&app, "outbox").await, 0);
    assert_eq!(
        expect(&app, Method::GET, "/api/stores", None).await,
        json!({"stores": []})
    );
}

// ---- products ----

#[tokio::test]
async fn add_product_answers_an_id_fills_the_catalog_and_publishes_product_added() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let body = expect(
        &app,
        Method::POST,
        &format!("/api/stores/{store}/products"),
        Some(json!({
            "name": "Product ABC", "description": "Product description",
            "sku": "productABC", "price": 9.99
        })),
    )
    .await;
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(body, json!({"id": id}));

    let product = json!({
        "id": id, "storeId": store, "name": "Product ABC",
        "description": "Product description", "sku": "productABC", "price": 9.99
    });
    assert_eq!(
        expect(
            &app,
            Method::GET,
            &format!("/api/stores/products/{id}"),
            None
        )
        .await,
        json!({"product": product})
    );
    let event: api::ProductAdded = app
        .wait_for_message(&name::<api::ProductAdded>(), |e: &api::ProductAdded| {
            e.id == id
        })
        .await;
    assert_eq!(
        event,
        api::ProductAdded {
            id: id.clone(),
            store_id: store.clone(),
            name: "Product ABC".into(),
            description: "Product description".into(),
            sku: "productABC".into(),
            price: 9.99,
        }
    );

    // A price of 100000 and more is stored (the original overflowed); numbers may be strings;
    // the path's store id wins over a body's; the price may be zero.
    let big = expect(
        &app,
        Method::POST,
        &format!("/api/stores/{store}/products"),
        Some(json!({"storeId": "elsewhere", "store_id": "elsewhere", "name": "Big", "price": "123456.78"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let free = add_product(&app, &store, "Free", 0.0).await;
    let big_product = json!({
        "id": big, "storeId": store, "name": "Big", "description": "", "sku": "", "price": 123456.78
    });
    assert_eq!(
        expect(
            &app,
            Method::GET,
            &format!("/api/stores/products/{big}"),
            None
        )
        .await,
        json!({"product": big_product})
    );
    let catalog = expect(
        &app,
        Method::GET,
        &format!("/api/stores/{store}/products"),
        None,
    )
    .await;
    let ids: Vec<&str> = catalog["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), big.as_str(), free.as_str()]);
    assert_eq!(catalog["products"][0], product);
    assert_eq!(catalog["products"][2]["price"], 0.0);
    app.wait_for_message(&name::<api::ProductAdded>(), |e: &api::ProductAdded| {
        e.id == big && e.price == 123456.78
    })
    .await;
}

#[tokio::test]
async fn add_product_validates_before_writing() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let path = format!("/api/stores/{store}/products");
    for (body, message) in [
        (
            json!({"name": "", "price": 1.0}),
            "initializing product: the product name cannot be blank",
        ),
        (
            json!({"name": " ", "price": -1.0}),
            "initializing product: the product name cannot be blank",
        ),
        (
            json!({"name": "P", "price": -0.01}),
            "initializing product: the product price cannot be negative",
        ),
        (
            json!({"name": "P", "price": "-5"}),
            "initializing product: the product price cannot be negative",
        ),
        (
            json!({"name": "P", "price": "NaN"}),
            "initializing product: the product price must be a finite number",
        ),
        (
            json!({"name": "P", "price": "Infinity"}),
            "initializing product: the product price must be a finite number",
        ),
    ] {
        let (status, answer) = app.post(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, bad_request(message), "{body}");
    }
    let (status, answer) = app
        .post(&path, json!({"name": "P", "price": "cheap"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request body: ")
    );
    // Validation comes before the store lookup, as the original's messages did.
    let (status, answer) = app
        .post("/api/stores/nope/products", json!({"name": ""}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        bad_request("initializing product: the product name cannot be blank")
    );

    assert_eq!(
        expect(
            &app,
            Method::GET,
            &format!("/api/stores/{store}/products"),
            None
        )
        .await,
        json!({"products": []})
    );
    assert_eq!(count(&app, "streams").await, 1, "only the store's");
    assert_eq!(count(&app, "products").await, 0);
}

#[tokio::test]
async fn unknown_product_is_404_everywhere_and_no_stream_is_created() {
    let app = spawn().await;
    let missing = not_found(PRODUCT_NOT_FOUND);
    for (method, path, body) in [
        (Method::GET, "/api/stores/products/nope", None),
        (
            Method::PUT,
            "/api/stores/products/nope/rebrand",
            Some(json!({"name": "x", "description": "y"})),
        ),
        (
            Method::PUT,
            "/api/stores/products/nope/increasePrice",
            Some(json!({"price": 10.0})),
        ),
        (
            Method::PUT,
            "/api/stores/products/nope/decreasePrice",
            Some(json!({"price": 0.0})),
        ),
        (Method::DELETE, "/api/stores/products/nope", None),
    ] {
        let (status, answer) = app.call(method.clone(), path, body.as_ref()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer, missing, "{method} {path}");
    }
    assert_eq!(count(&app, "streams").await, 0);
    assert_eq!(count(&app, "outbox").await, 0);
}

#[tokio::test]
async fn rebrand_product_updates_the_catalog_announces_and_rejects_blank_names() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let id = add_product(&app, &store, "Product ABC", 9.99).await;
    let path = format!("/api/stores/products/{id}/rebrand");
    assert_eq!(
        expect(
            &app,
            Method::PUT,
            &path,
            Some(json!({"name": "Product XYZ", "description": "New"}))
        )
        .await,
        json!({})
    );
    let product = json!({"product": {
        "id": id, "storeId": store, "name": "Product XYZ", "description": "New", "sku": "s", "price": 9.99
    }});
    assert_eq!(
        expect(
            &app,
            Method::GET,
            &format!("/api/stores/products/{id}"),
            None
        )
        .await,
        product
    );
    app.wait_for_message(
        &name::<api::ProductRebranded>(),
        |e: &api::ProductRebranded| e.id == id && e.name == "Product XYZ" && e.description == "New",
    )
    .await;

    let (status, answer) = app
        .put(&path, json!({"name": "", "description": "gone"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, bad_request("the product name cannot be blank"));
    assert_eq!(
        expect(
            &app,
            Method::GET,
            &format!("/api/stores/products/{id}"),
            None
        )
        .await,
        product
    );
    assert_eq!(
        app.published_named(&name::<api::ProductRebranded>()).len(),
        1
    );
}

#[tokio::test]
async fn price_changes_take_the_new_price_and_announce_delta_and_price() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let id = add_product(&app, &store, "Product ABC", 10.0).await;
    let up = format!("/api/stores/products/{id}/increasePrice");
    let down = format!("/api/stores/products/{id}/decreasePrice");

    assert_eq!(
        expect(&app, Method::PUT, &up, Some(json!({"price": 12.5}))).await,
        json!({})
    );
    assert_eq!(product_price(&app, &id).await, 12.5);
    let increased: api::ProductPriceIncreased = app
        .wait_for_message(
            &name::<api::ProductPriceIncreased>(),
            |e: &api::ProductPriceIncreased| e.id == id,
        )
        .await;
    assert_eq!((increased.delta, increased.price), (2.5, 12.5));

    let (status, answer) = app.put(&up, json!({"price": 12.0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, bad_request("the price change would be a decrease"));
    assert_eq!(product_price(&app, &id).await, 12.5);

    // An equal price is a zero change, accepted and announced.
    expect(&app, Method::PUT, &up, Some(json!({"price": "12.5"}))).await;
    app.wait_for_message(
        &name::<api::ProductPriceIncreased>(),
        |e: &api::ProductPriceIncreased| e.delta == 0.0 && e.price == 12.5,
    )
    .await;

    assert_eq!(
        expect(&app, Method::PUT, &down, Some(json!({"price": "7.25"}))).await,
        json!({})
    );
    assert_eq!(product_price(&app, &id).await, 7.25);
    let decreased: api::ProductPriceDecreased = app
        .wait_for_message(
            &name::<api::ProductPriceDecreased>(),
            |e: &api::ProductPriceDecreased| e.id == id,
        )
        .await;
    assert_eq!((decreased.delta, decreased.price), (-5.25, 7.25));

    for (body, message) in [
        (
            json!({"price": 8.0}),
            "the price change would be an increase",
        ),
        (
            json!({"price": -1.0}),
            "the product price cannot be negative",
        ),
        (
            json!({"price": "NaN"}),
            "the product price must be a finite number",
        ),
    ] {
        let (status, answer) = app.put(&down, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, bad_request(message), "{body}");
    }
    let (status, answer) = app.call_raw(Method::PUT, &up, r#"{"price": true}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3);
    assert_eq!(product_price(&app, &id).await, 7.25);

    // Large prices work all the way.
    expect(&app, Method::PUT, &up, Some(json!({"price": 150000}))).await;
    assert_eq!(product_price(&app, &id).await, 150000.0);
    app.wait_for_message(
        &name::<api::ProductPriceIncreased>(),
        |e: &api::ProductPriceIncreased| e.price == 150000.0 && e.delta == 150000.0 - 7.25,
    )
    .await;
    assert_eq!(
        app.published_named(&name::<api::ProductPriceIncreased>())
            .len(),
        3
    );
    assert_eq!(
        app.published_named(&name::<api::ProductPriceDecreased>())
            .len(),
        1
    );
}

#[tokio::test]
async fn remove_product_takes_it_out_and_later_commands_are_404() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let gone = add_product(&app, &store, "Gone", 1.0).await;
    let kept = add_product(&app, &store, "Kept", 2.0).await;
    let path = format!("/api/stores/products/{gone}");

    assert_eq!(expect(&app, Method::DELETE, &path, None).await, json!({}));
    app.wait_for_message(&name::<api::ProductRemoved>(), |e: &api::ProductRemoved| {
        e.id == gone
    })
    .await;
    let (status, answer) = app.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer, not_found(PRODUCT_NOT_FOUND));
    let catalog = expect(
        &app,
        Method::GET,
        &format!("/api/stores/{store}/products"),
        None,
    )
    .await;
    assert_eq!(catalog["products"].as_array().unwrap().len(), 1);
    assert_eq!(catalog["products"][0]["id"], kept.as_str());

    for (method, path, body) in [
        (Method::DELETE, path.clone(), None),
        (
            Method::PUT,
            format!("{path}/rebrand"),
            Some(json!({"name": "Back"})),
        ),
        (
            Method::PUT,
            format!("{path}/increasePrice"),
            Some(json!({"price": 5.0})),
        ),
        (
            Method::PUT,
            format!("{path}/decreasePrice"),
            Some(json!({"price": 0.5})),
        ),
    ] {
        let (status, answer) = app.call(method.clone(), &path, body.as_ref()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer, not_found(PRODUCT_NOT_FOUND), "{method} {path}");
    }
    // Nothing after the removal was recorded or announced.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM stores.events WHERE stream_id = $1")
        .bind(&gone)
        .fetch_one(&pool(&app).await)
        .await
        .unwrap();
    assert_eq!(events, 2, "added, removed");
    assert_eq!(app.published_named(&name::<api::ProductRemoved>()).len(), 1);
}

// ---- behaviour beyond single requests ----

#[tokio::test]
async fn query_responders_answer_found_and_not_found() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let product = add_product(&app, &store, "Product ABC", 9.99).await;
    let removed = add_product(&app, &store, "Removed", 1.0).await;
    expect(
        &app,
        Method::DELETE,
        &format!("/api/stores/products/{removed}"),
        None,
    )
    .await;
    let timeout = Duration::from_secs(5);

    let found = app
        .bus
        .query(&api::GetStore { id: store.clone() }, timeout)
        .await
        .expect("GetStore answers");
    assert_eq!(
        found.store,
        Some(api::Store {
            id: store.clone(),
            name: "Store ABC".into(),
            location: "The mall".into(),
            participating: false,
        })
    );
    let missing = app
        .bus
        .query(&api::GetStore { id: "nope".into() }, timeout)
        .await
        .expect("GetStore answers");
    assert_eq!(missing.store, None);

    let found = app
        .bus
        .query(
            &api::GetProduct {
                id: product.clone(),
            },
            timeout,
        )
        .await
        .expect("GetProduct answers");
    assert_eq!(
        found.product,
        Some(api::Product {
            id: product,
            store_id: store,
            name: "Product ABC".into(),
            description: "d".into(),
            sku: "s".into(),
            price: 9.99,
        })
    );
    for id in ["nope".to_owned(), removed] {
        let missing = app
            .bus
            .query(&api::GetProduct { id }, timeout)
            .await
            .expect("GetProduct answers");
        assert_eq!(missing.product, None);
    }
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_all_succeed() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let id = add_product(&app, &store, "Product", 1.0).await;
    let client = reqwest::Client::new();
    let writers = 8;
    let mut tasks = Vec::new();
    for n in 0..writers {
        let client = client.clone();
        let url = format!("{}/api/stores/products/{id}/rebrand", app.base);
        tasks.push(tokio::spawn(async move {
            let response = client
                .put(url)
                .json(&json!({"name": format!("Name {n}"), "description": ""}))
                .send()
                .await
                .expect("sent");
            response.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM stores.events WHERE stream_id = $1")
        .bind(&id)
        .fetch_one(&pool(&app).await)
        .await
        .unwrap();
    assert_eq!(events, 1 + writers);
    testkit::eventually(
        Duration::from_secs(20),
        "every rebrand announced",
        || async {
            (app.published_named(&name::<api::ProductRebranded>()).len() == writers as usize)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn long_lived_products_are_snapshotted_and_stay_correct() {
    let app = spawn().await;
    let store = create_store(&app, "Store ABC", "The mall").await;
    let id = add_product(&app, &store, "Product", 0.0).await;
    let up = format!("/api/stores/products/{id}/increasePrice");
    for price in 1..=55 {
        expect(&app, Method::PUT, &up, Some(json!({"price": price}))).await;
    }
    let snapshot_version: i64 = sqlx::query_scalar(
        "SELECT version FROM stores.snapshots WHERE stream_type = 'stores.Product' AND stream_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool(&app).await)
    .await
    .expect("a snapshot was taken");
    assert_eq!(snapshot_version, 50);
    // The state loaded from the snapshot plus later events still knows the price.
    let (status, answer) = app.put(&up, json!({"price": 54})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, bad_request("the price change would be a decrease"));
    expect(
        &app,
        Method::PUT,
        &format!("/api/stores/products/{id}/decreasePrice"),
        Some(json!({"price": 54})),
    )
    .await;
    assert_eq!(product_price(&app, &id).await, 54.0);
}

#[tokio::test]
async fn router_level_errors_keep_the_gateway_shape() {
    let app = spawn().await;
    let (status, answer) = app.call(Method::PATCH, "/api/stores/x", None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        answer,
        json!({"code": 12, "message": "Method Not Allowed", "details": []})
    );
    let (status, answer) = app.get("/api/stores/x/unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer,
        json!({"code": 5, "message": "Not Found", "details": []})
    );
}
