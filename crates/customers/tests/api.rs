//! The customers service on a random port against the real NATS and PostgreSQL: every endpoint
//! of spec api.md §2.4 with its error cases, the `AuthorizeCustomer` command and the
//! `GetCustomer` query. Each test has its own database and prefix.

use std::time::Duration;

use contracts::customers::v1 as api;
use customers::CustomersModule;
use messaging::{Empty, Envelope, Message, header};
use platform::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn spawn() -> TestApp {
    TestApp::spawn("customers", vec![Box::new(CustomersModule::new())]).await
}

/// Registers a customer and returns its id.
async fn register(app: &TestApp, name: &str, sms: &str) -> String {
    let (status, body) = app
        .post("/api/customers", json!({"name": name, "smsNumber": sms}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("an id").to_owned()
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

async fn customer(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/customers/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["customer"].clone()
}

/// Sends `AuthorizeCustomer` for `id` and returns the reply envelope.
async fn authorize(app: &TestApp, id: &str) -> (Envelope, Envelope) {
    let command = app.bus.command(
        &api::AuthorizeCustomer { id: id.to_owned() },
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

#[tokio::test]
async fn register_then_get_returns_the_enabled_customer_and_publishes_registered() {
    let app = spawn().await;
    let id = register(&app, "Customer ABC", "555-555-1212").await;
    assert_eq!(id.len(), 36, "a UUID: {id}");

    assert_eq!(
        customer(&app, &id).await,
        json!({"id": id, "name": "Customer ABC", "smsNumber": "555-555-1212", "enabled": true})
    );
    let event: api::CustomerRegistered = app
        .wait_for_message(
            &api::CustomerRegistered::message_name(),
            |e: &api::CustomerRegistered| e.id == id,
        )
        .await;
    assert_eq!(event.name, "Customer ABC");
    assert_eq!(event.sms_number, "555-555-1212");
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn register_accepts_snake_case_and_ignores_unknown_fields() {
    let app = spawn().await;
    let (status, body) = app
        .post(
            "/api/customers",
            json!({"name": "Ann", "sms_number": "555-0100", "id": "mine", "extra": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_ne!(id, "mine", "clients never choose ids");
    assert_eq!(customer(&app, id).await["smsNumber"], "555-0100");
}

#[tokio::test]
async fn register_rejects_blank_fields_in_order_and_creates_nothing() {
    let app = spawn().await;
    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        app.post("/api/customers", json!({"name": "", "smsNumber": ""}))
            .await,
        bad,
        3,
        "the customer name cannot be blank",
    );
    assert_error(
        app.call(Method::POST, "/api/customers", None).await,
        bad,
        3,
        "the customer name cannot be blank",
    );
    assert_error(
        app.post("/api/customers", json!({"name": "Ann", "smsNumber": "  "}))
            .await,
        bad,
        3,
        "the SMS number cannot be blank",
    );
    assert_error(
        app.post("/api/customers", json!({"name": null, "smsNumber": "1"}))
            .await,
        bad,
        3,
        "the customer name cannot be blank",
    );
    let (status, body) = app
        .call_raw(Method::POST, "/api/customers", "{\"name\":")
        .await;
    assert_eq!(status, bad, "{body}");
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request body"),
        "{body}"
    );

    // The only registration that happened is the next one.
    let id = register(&app, "Ann", "555").await;
    app.wait_for(&api::CustomerRegistered::message_name(), |_| true)
        .await;
    let registered = app.published_named(&api::CustomerRegistered::message_name());
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].key(), Some(id.as_str()));
}

#[tokio::test]
async fn an_unknown_customer_is_404_on_every_endpoint() {
    let app = spawn().await;
    let not_found = |got| assert_error(got, StatusCode::NOT_FOUND, 5, "sql: no rows in result set");
    not_found(app.get("/api/customers/nobody").await);
    not_found(app.put("/api/customers/nobody/enable", json!({})).await);
    not_found(app.put("/api/customers/nobody/disable", json!({})).await);
    not_found(
        app.put(
            "/api/customers/nobody/change-sms",
            json!({"smsNumber": "1"}),
        )
        .await,
    );
}

#[tokio::test]
async fn disable_and_enable_toggle_the_customer_and_refuse_repeats() {
    let app = spawn().await;
    let id = register(&app, "Ann", "555").await;

    let (status, body) = app
        .put(&format!("/api/customers/{id}/disable"), json!({}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(customer(&app, &id).await["enabled"], false);
    app.wait_for(&api::CustomerDisabled::message_name(), |e| {
        e.key() == Some(id.as_str())
    })
    .await;
    assert_error(
        app.put(&format!("/api/customers/{id}/disable"), json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "the customer is already disabled",
    );

    // An empty body is `{}`.
    let (status, body) = app
        .call(Method::PUT, &format!("/api/customers/{id}/enable"), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(customer(&app, &id).await["enabled"], true);
    let enabled: api::CustomerEnabled = app
        .wait_for_message(
            &api::CustomerEnabled::message_name(),
            |e: &api::CustomerEnabled| e.id == id,
        )
        .await;
    assert_eq!(enabled.id, id);
    assert_error(
        app.put(&format!("/api/customers/{id}/enable"), json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "the customer is already enabled",
    );

    assert_eq!(
        app.published_named(&api::CustomerDisabled::message_name())
            .len(),
        1
    );
    assert_eq!(
        app.published_named(&api::CustomerEnabled::message_name())
            .len(),
        1
    );
}

#[tokio::test]
async fn change_sms_replaces_the_number_and_publishes_sms_changed() {
    let app = spawn().await;
    let id = register(&app, "Ann", "555-0100").await;
    let path = format!("/api/customers/{id}/change-sms");

    assert_error(
        app.put(&path, json!({"smsNumber": " "})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the SMS number cannot be blank",
    );
    assert_error(
        app.put(&path, json!({})).await,
        StatusCode::BAD_REQUEST,
        3,
        "the SMS number cannot be blank",
    );
    assert_eq!(customer(&app, &id).await["smsNumber"], "555-0100");

    let (status, body) = app.put(&path, json!({"smsNumber": "555-0199"})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(customer(&app, &id).await["smsNumber"], "555-0199");
    let changed: api::CustomerSmsChanged = app
        .wait_for_message(
            &api::CustomerSmsChanged::message_name(),
            |e: &api::CustomerSmsChanged| e.id == id,
        )
        .await;
    assert_eq!(changed.sms_number, "555-0199");

    let (status, _) = app.put(&path, json!({"sms_number": "555-0042"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(customer(&app, &id).await["smsNumber"], "555-0042");
    app.wait_for_message(
        &api::CustomerSmsChanged::message_name(),
        |e: &api::CustomerSmsChanged| e.sms_number == "555-0042",
    )
    .await;
}

#[tokio::test]
async fn authorize_customer_succeeds_only_for_an_existing_enabled_customer() {
    let app = spawn().await;
    let enabled = register(&app, "Ann", "555").await;
    let disabled = register(&app, "Bob", "556").await;
    let (status, _) = app
        .put(&format!("/api/customers/{disabled}/disable"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (command, reply) = authorize(&app, &enabled).await;
    assert_eq!(outcome(&reply), "success");
    assert_eq!(reply.subject, format!("{}.test.replies.Test", app.prefix));
    assert_eq!(reply.correlation_id(), command.correlation_id());

    let (_, reply) = authorize(&app, &disabled).await;
    assert_eq!(outcome(&reply), "failure");
    let (_, reply) = authorize(&app, "nobody").await;
    assert_eq!(outcome(&reply), "failure");
    let (_, reply) = authorize(&app, "").await;
    assert_eq!(outcome(&reply), "failure");
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn the_same_command_sent_twice_is_answered_once_each_and_changes_nothing() {
    let app = spawn().await;
    let id = register(&app, "Ann", "555").await;
    let before = customer(&app, &id).await;

    let (first, _) = authorize(&app, &id).await;
    let (second, reply) = authorize(&app, &id).await;
    assert_eq!(outcome(&reply), "success");

    // Replies of one customer leave the outbox in order: once the second is out, a duplicate
    // of the first would have been published before it.
    for command in [&first, &second] {
        let cause = command.id.to_string();
        let replies = app
            .published_named(&Empty::message_name())
            .into_iter()
            .filter(|e| e.causation_id() == Some(cause.as_str()))
            .count();
        assert_eq!(replies, 1, "one reply for {cause}");
    }
    assert_eq!(customer(&app, &id).await, before);
    let customer_events = app
        .published()
        .into_iter()
        .filter(|e| e.name.starts_with("customers.v1."))
        .map(|e| e.name)
        .collect::<Vec<_>>();
    assert_eq!(
        app.published_named(&api::CustomerRegistered::message_name())
            .len(),
        1
    );
    assert!(
        !customer_events
            .iter()
            .any(|n| n.contains("Enabled") || n.contains("Disabled") || n.contains("SmsChanged")),
        "{customer_events:?}"
    );
}

#[tokio::test]
async fn get_customer_query_answers_known_and_unknown_ids() {
    let app = spawn().await;
    let id = register(&app, "Ann", "555").await;

    let answer = app
        .bus
        .query(&api::GetCustomer { id: id.clone() }, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(
        answer.customer,
        Some(api::Customer {
            id,
            name: "Ann".into(),
            sms_number: "555".into(),
            enabled: true
        })
    );

    let answer = app
        .bus
        .query(
            &api::GetCustomer {
                id: "nobody".into(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("an answer");
    assert_eq!(answer.customer, None);
}

#[tokio::test]
async fn a_known_path_with_another_method_is_501() {
    let app = spawn().await;
    let (status, body) = app.delete("/api/customers/x/enable").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["code"], 12);
}
