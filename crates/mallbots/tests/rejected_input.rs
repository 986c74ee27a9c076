//! "Nothing changed by rejected input" (issue #10), for the whole system in one process: every
//! POST, PUT and DELETE route that `/openapi.json` lists gets malformed requests — a body that is
//! not JSON, not an object, too deeply nested, too large, a field of the wrong type, the missing
//! fields the spec refuses, and path ids that are overlong, hold control characters or are not
//! UTF-8 — each answered with a 4xx in the API's JSON error shape. Afterwards every table of
//! every module's schema holds exactly what it held before (row counts and contents), and no
//! message was published.
//!
//! The ids in the paths are real (a store, a product, a basket with an item, a customer, a
//! shopping list, an approved order), so the same requests well formed would change things.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use platform::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};

mod common;
use common::{create, modules};

/// The schemas of the monolith's modules, as each module names its own.
const SCHEMAS: &[&str] = &[
    stores::SCHEMA,
    customers::SCHEMA,
    baskets::SCHEMA,
    ordering::SCHEMA,
    payments::SCHEMA,
    depot::SCHEMA,
    notifications::SCHEMA,
    search::SCHEMA,
    order_saga::SCHEMA,
];

/// Missing fields the spec refuses (spec/api.md §2), with its exact texts. Elsewhere a missing
/// field is the zero value and `{}` can be a valid request, so it is not sent.
const MISSING_FIELDS: &[(&str, &str, &str)] = &[
    ("post", "/api/stores", "the store name cannot be blank"),
    (
        "post",
        "/api/stores/{id}/products",
        "initializing product: the product name cannot be blank",
    ),
    ("post", "/api/baskets", "the customer id cannot be blank"),
    (
        "post",
        "/api/customers",
        "the customer name cannot be blank",
    ),
    (
        "post",
        "/api/ordering",
        "create order command: the order has no items",
    ),
    ("post", "/api/payments", "the customer id cannot be blank"),
];

/// Every row of every module table, as `schema.table` → (row count, digest of the rows).
async fn snapshot(db: &mut PgConnection) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
    )
    .bind(SCHEMAS)
    .fetch_all(&mut *db)
    .await
    .expect("list tables");
    assert!(tables.len() > SCHEMAS.len(), "tables found: {tables:?}");
    let mut out = BTreeMap::new();
    for (schema, table) in tables {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"SELECT count(*) AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS digest
               FROM "{schema}"."{table}" t"#
        )))
        .fetch_one(&mut *db)
        .await
        .expect("digest a table");
        out.insert(
            format!("{schema}.{table}"),
            (row.get("n"), row.get("digest")),
        );
    }
    out
}

/// Waits until the database and the published messages stay the same for a second: consumers,
/// the saga and the outbox relays have finished what seeding set off.
async fn quiet_state(
    app: &TestApp,
    db: &mut PgConnection,
) -> (BTreeMap<String, (i64, String)>, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (snapshot(db).await, app.published().len());
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = (snapshot(db).await, app.published().len());
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_secs(1) {
            return last;
        }
        assert!(Instant::now() < deadline, "the system never went quiet");
    }
}

/// A store, a product, a customer, a basket holding the product, a payment, a shopping list,
/// and an order the saga approved; returns the id each path family addresses.
async fn seed(app: &TestApp) -> Vec<(&'static str, String)> {
    let store = create(app, "/api/stores", json!({"name": "S", "location": "L"})).await;
    let product = create(
        app,
        &format!("/api/stores/{store}/products"),
        json!({"name": "P", "description": "d", "sku": "s", "price": 9.5}),
    )
    .await;
    let customer = create(
        app,
        "/api/customers",
        json!({"name": "C", "smsNumber": "555"}),
    )
    .await;
    let basket = create(app, "/api/baskets", json!({"customerId": customer})).await;
    let (status, reply) = app
        .put(
            &format!("/api/baskets/{basket}/addItem"),
            json!({"productId": product, "quantity": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "addItem: {reply}");
    let payment = create(
        app,
        "/api/payments",
        json!({"customerId": customer, "amount": 100.0}),
    )
    .await;
    let item = json!({"storeId": store, "productId": product, "quantity": 1});
    let list = create(
        app,
        "/api/depot/shopping",
        json!({"orderId": "o-1", "items": [item]}),
    )
    .await;
    let order_item = json!({"storeId": store, "productId": product, "storeName": "S",
        "productName": "P", "price": 9.5, "quantity": 1});
    let order = create(
        app,
        "/api/ordering",
        json!({"items": [order_item], "customerId": customer, "paymentId": payment}),
    )
    .await;
    testkit::eventually(Duration::from_secs(20), "the order approved", || async {
        let (_, reply) = app.get(&format!("/api/ordering/{order}")).await;
        (reply["order"]["status"] == "approved").then_some(())
    })
    .await;
    // Longest prefix first: the first match wins.
    vec![
        ("/api/stores/products/", product),
        ("/api/stores/", store),
        ("/api/baskets/", basket),
        ("/api/customers/", customer),
        ("/api/depot/shopping/", list),
        ("/api/ordering/", order),
        ("/api/payments/invoices/", uuid::Uuid::new_v4().to_string()),
    ]
}

/// `path` with its `{param}` segments replaced by `id`.
fn with_id(path: &str, id: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { id } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The request body schema of an operation, `$ref` resolved.
fn body_schema<'a>(doc: &'a Value, op: &'a Value) -> Option<&'a Value> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let name = schema["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    doc["components"]["schemas"].get(name)
}

/// A value of the wrong JSON type for a property: strings and numbers accept each other (and
/// `null`) on purpose (README, Compatibility), so scalars get an object, lists and objects a
/// number.
fn wrong_value(property: &Value) -> Value {
    match property["type"].as_str() {
        Some("string" | "number" | "integer" | "boolean") => json!({"not": ["a scalar"]}),
        // Lists, objects, and references to object schemas (`$ref`, `oneOf` with null).
        _ => json!(7),
    }
}

/// One malformed request and what its answer must be.
struct Case {
    what: String,
    method: Method,
    path: String,
    body: String,
    status: StatusCode,
    message: String,
}

fn cases(doc: &Value, ids: &[(&str, String)]) -> Vec<Case> {
    let mut cases = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (template, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            let method = match method.as_str() {
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let id = ids
                .iter()
                .find(|(prefix, _)| template.starts_with(prefix))
                .map_or("00000000-0000-4000-8000-000000000000", |(_, id)| {
                    id.as_str()
                });
            let path = with_id(template, id);
            let case = |what: &str, path: &str, body: String, status, message: &str| Case {
                what: format!("{what}: {method} {template}"),
                method: method.clone(),
                path: path.to_owned(),
                body,
                status,
                message: message.to_owned(),
            };

            // Any route, body or not: a declared length over HTTP_BODY_LIMIT (64 KiB).
            let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
            cases.push(case(
                "oversized body",
                &path,
                big,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));

            if template.contains('{') {
                let overlong = "a".repeat(platform::MAX_PATH_ID_LEN + 1);
                for (what, bad) in [
                    ("overlong id", overlong.as_str()),
                    ("NUL in the id", "a%00b"),
                    ("control character in the id", "a%1Bb"),
                    ("id not UTF-8", "%C3%28"),
                ] {
                    cases.push(case(
                        what,
                        &with_id(template, bad),
                        "{}".into(),
                        StatusCode::BAD_REQUEST,
                        "invalid path: ",
                    ));
                }
            }

            let Some(schema) = body_schema(doc, op) else {
                continue;
            };
            let invalid = "invalid request body: ";
            for (what, body) in [
                ("not JSON", "name=x&price=1".to_owned()),
                ("truncated JSON", r#"{"name":"#.to_owned()),
                ("not an object", r#"["x", 1]"#.to_owned()),
                (
                    "deep nesting",
                    format!(r#"{{"extra":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000)),
                ),
                ("a NUL in a string", r#"{"name":"a\u0000b"}"#.to_owned()),
            ] {
                cases.push(case(what, &path, body, StatusCode::BAD_REQUEST, invalid));
            }
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                let body = json!({ name: wrong_value(property) }).to_string();
                cases.push(case(
                    &format!("wrong type for {name}"),
                    &path,
                    body,
                    StatusCode::BAD_REQUEST,
                    invalid,
                ));
            }
            if let Some((_, _, text)) = MISSING_FIELDS
                .iter()
                .find(|(m, p, _)| *m == method.as_str().to_lowercase() && p == template)
            {
                cases.push(case(
                    "missing fields",
                    &path,
                    "{}".into(),
                    StatusCode::BAD_REQUEST,
                    text,
                ));
            }
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_input_changes_nothing_on_any_write_route() {
    let app = TestApp::spawn("rejected_input", modules()).await;
    let mut db = PgConnection::connect(app.db.url()).await.expect("connect");
    let ids = seed(&app).await;
    let doc = app.get("/openapi.json").await.1;
    let (before, published_before) = quiet_state(&app, &mut db).await;

    let cases = cases(&doc, &ids);
    let routes: std::collections::BTreeSet<&str> = cases
        .iter()
        .map(|c| c.what.split(": ").nth(1).unwrap_or_default())
        .collect();
    // Sanity: the document lists the write routes of spec/api.md §2 and ours.
    assert!(routes.len() >= 24, "write routes found: {routes:?}");
    for (method, path, _) in MISSING_FIELDS {
        assert!(
            routes.contains(format!("{} {path}", method.to_uppercase()).as_str()),
            "{method} {path} is not in /openapi.json"
        );
    }

    // A fresh connection per request: the server answers a 413 without reading the body and
    // then closes that connection, which a pooled client could pick for the next request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client");
    let mut failures = Vec::new();
    for case in &cases {
        let response = client
            .request(case.method.clone(), format!("{}{}", app.base, case.path))
            .header("content-type", "application/json")
            .body(case.body.clone())
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let shaped =
            body["code"].is_i64() && body["message"].is_string() && body["details"].is_array();
        let message = body["message"].as_str().unwrap_or_default();
        if status != case.status
            || content_type != "application/json"
            || !shaped
            || !message.starts_with(&case.message)
        {
            failures.push(format!(
                "{}: expected {} `{}…`, got {status} {content_type} {body}",
                case.what, case.status, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests were not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Anything a request set off would show within the quiet period.
    let (after, published_after) = quiet_state(&app, &mut db).await;
    let changed: std::collections::BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|t| before.get(*t) != after.get(*t))
        .collect();
    assert!(
        changed.is_empty(),
        "tables changed by rejected input: {changed:?}"
    );
    assert_eq!(
        published_after, published_before,
        "messages published after rejected input"
    );
    eprintln!(
        "{} malformed requests on {} write routes, {} tables unchanged",
        cases.len(),
        routes.len(),
        before.len()
    );
    drop(db);
    app.stop().await;
}
