//! What the monolith's whole-system tests share: the module list (the binary's, with the
//! saga on its default settings instead of the environment) and REST steps that must succeed.
//! Each test binary uses part of it.
#![allow(dead_code)]

use platform::Module;
use platform::testing::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

/// Every module, in the monolith's start order.
pub fn modules() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(baskets::BasketsModule::new()),
        Box::new(customers::CustomersModule::new()),
        Box::new(depot::DepotModule::new()),
        Box::new(notifications::NotificationsModule::default()),
        Box::new(ordering::OrderingModule::new()),
        Box::new(payments::PaymentsModule::new()),
        Box::new(stores::StoresModule::new()),
        Box::new(order_saga::OrderSagaModule::default()),
        Box::new(search::SearchModule::default()),
    ]
}

/// `POST` that must answer 200 with `{"id"}`; returns the id.
pub async fn create(app: &TestApp, path: &str, body: Value) -> String {
    let (status, reply) = app.post(path, body).await;
    assert_eq!(status, StatusCode::OK, "POST {path}: {reply}");
    reply["id"].as_str().expect("an id").to_owned()
}

/// `PUT` that must answer 200.
pub async fn put(app: &TestApp, path: &str, body: Value) {
    let (status, reply) = app.put(path, body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {reply}");
}
