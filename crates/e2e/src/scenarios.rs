//! The order life cycle end to end, as a client written from the spec drives it. Each scenario
//! builds its own store, products and customer, so scenarios never depend on each other.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::System;

/// What a scenario set up: ids a later step needs.
#[derive(Debug, Clone)]
pub struct Shop {
    /// Store id.
    pub store: String,
    /// Store name.
    pub store_name: String,
    /// Two products: (id, name, price).
    pub products: Vec<(String, String, f64)>,
    /// Customer id.
    pub customer: String,
    /// Customer name.
    pub customer_name: String,
}

/// A store with two products and a registered customer.
pub async fn open_shop(sys: &System, tag: &str) -> Shop {
    let store_name = format!("Store {tag}");
    let store = sys
        .create(
            "/api/stores",
            json!({"name": store_name, "location": "The mall"}),
        )
        .await;
    let mut products = Vec::new();
    for (name, price) in [
        (format!("Wizard {tag}"), 9.99),
        (format!("Crystal {tag}"), 4.5),
    ] {
        let id = sys
            .create(
                &format!("/api/stores/{store}/products"),
                json!({"name": name, "description": "d", "sku": "sku", "price": price}),
            )
            .await;
        products.push((id, name, price));
    }
    let customer_name = format!("Customer {tag}");
    let customer = sys
        .create(
            "/api/customers",
            json!({"name": customer_name, "smsNumber": "555-555-1212"}),
        )
        .await;
    Shop {
        store,
        store_name,
        products,
        customer,
        customer_name,
    }
}

/// Fills a basket (5 × first product, 2 × second) and checks out with `payment`; returns the
/// basket id, which is the order id.
pub async fn checkout(sys: &System, shop: &Shop, payment: &str) -> String {
    let basket = sys
        .create("/api/baskets", json!({"customerId": shop.customer}))
        .await;
    sys.put(
        &format!("/api/baskets/{basket}/addItem"),
        json!({"productId": shop.products[0].0, "quantity": 5}),
    )
    .await;
    sys.put(
        &format!("/api/baskets/{basket}/addItem"),
        json!({"productId": shop.products[1].0, "quantity": 2}),
    )
    .await;
    sys.put(
        &format!("/api/baskets/{basket}/checkout"),
        json!({"paymentId": payment}),
    )
    .await;
    basket
}

/// The basket's total.
pub fn total(shop: &Shop) -> f64 {
    5.0 * shop.products[0].2 + 2.0 * shop.products[1].2
}

/// A payment authorization for `amount`.
pub async fn pay_for(sys: &System, shop: &Shop, amount: f64) -> String {
    sys.create(
        "/api/payments",
        json!({"customerId": shop.customer, "amount": amount}),
    )
    .await
}

/// Notifications recorded for an order (kinds, e.g. `order-created`, `order-ready`, `order-canceled`).
pub async fn notification_kinds(sys: &System, order: &str) -> Vec<String> {
    let (status, body) = sys
        .call(
            Method::GET,
            &format!("/api/notifications?orderId={order}"),
            None,
        )
        .await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    body["notifications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the notifications of `order` include `kind`.
pub async fn wait_for_notification(sys: &System, order: &str, kind: &str) {
    let path = format!("/api/notifications?orderId={order}");
    sys.wait_until(&path, &format!("a {kind} notification for {order}"), |v| {
        v["notifications"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["kind"] == json!(kind)))
    })
    .await;
}

/// Waits until search shows `order` with `status`; returns the search order.
pub async fn wait_for_search_status(sys: &System, order: &str, status: &str) -> Value {
    let path = format!("/api/search/orders/{order}");
    sys.wait_until(&path, &format!("search to show {order} as {status}"), |v| {
        v["order"]["status"] == json!(status)
    })
    .await["order"]
        .clone()
}

/// The shopping list's status (`GET /api/depot/shopping/{id}`).
pub async fn shopping_list_status(sys: &System, list: &str) -> String {
    let body = sys.get(&format!("/api/depot/shopping/{list}")).await;
    body["shoppingList"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Scenario 1: checkout → approved → assign bot → complete shopping → ready → invoice → paid
/// → completed; search and notifications follow.
pub async fn happy_path(sys: &System) {
    let shop = open_shop(sys, "happy").await;
    let payment = pay_for(sys, &shop, total(&shop) + 1.0).await;
    let order = checkout(sys, &shop, &payment).await;

    let approved = sys.wait_for_order_status(&order, "approved").await;
    let list = approved["order"]["shoppingId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !list.is_empty(),
        "an approved order names its shopping list: {approved}"
    );
    assert_eq!(approved["order"]["customerId"], json!(shop.customer));
    assert_eq!(approved["order"]["paymentId"], json!(payment));
    assert_eq!(approved["order"]["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(shopping_list_status(sys, &list).await, "available");

    sys.put(
        &format!("/api/depot/shopping/{list}/assign"),
        json!({"botId": "bot-1"}),
    )
    .await;
    sys.put(&format!("/api/depot/shopping/{list}/complete"), json!({}))
        .await;
    sys.wait_for_order_status(&order, "ready").await;

    // The invoice (id = order id) appears once payments has consumed OrderReadied.
    let pay_path = format!("/api/payments/invoices/{order}/pay");
    let deadline = std::time::Instant::now() + crate::WAIT;
    loop {
        let (status, body) = sys.call(Method::PUT, &pay_path, Some(json!({}))).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "paying the invoice: {status} {body}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the invoice never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let completed = sys.wait_for_order_status(&order, "completed").await;
    assert_eq!(completed["order"]["invoiceId"], json!(order));

    let found = wait_for_search_status(sys, &order, "Completed").await;
    assert_eq!(found["customerName"], json!(shop.customer_name));
    let items = found["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{found}");
    for item in &items {
        assert_eq!(item["storeName"], json!(shop.store_name));
        assert!(
            shop.products
                .iter()
                .any(|(_, name, _)| item["productName"] == json!(name)),
            "{item}"
        );
    }
    assert!((found["total"].as_f64().unwrap_or_default() - total(&shop)).abs() < 1e-9);
    let (status, listed) = sys
        .call(
            Method::POST,
            "/api/search/orders",
            Some(json!({"filters": {"customerId": shop.customer}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["orders"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );

    wait_for_notification(sys, &order, "order-created").await;
    wait_for_notification(sys, &order, "order-ready").await;
    let kinds = notification_kinds(sys, &order).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "order-created").count(),
        1,
        "{kinds:?}"
    );
}

/// Scenario 2: an unknown and a disabled customer → the saga compensates, order rejected, no
/// shopping list left behind.
pub async fn customer_not_authorized(sys: &System) {
    let shop = open_shop(sys, "unauthorized").await;
    sys.put(
        &format!("/api/customers/{}/disable", shop.customer),
        json!({}),
    )
    .await;
    let payment = pay_for(sys, &shop, total(&shop)).await;
    let order = checkout(sys, &shop, &payment).await;
    let rejected = sys.wait_for_order_status(&order, "rejected").await;
    assert_eq!(
        rejected["order"]["shoppingId"],
        json!(""),
        "no list for a rejected customer"
    );

    let stranger = Shop {
        customer: "no-such-customer".into(),
        ..shop.clone()
    };
    let order = checkout(sys, &stranger, &payment).await;
    let rejected = sys.wait_for_order_status(&order, "rejected").await;
    assert_eq!(rejected["order"]["shoppingId"], json!(""));
    wait_for_search_status(sys, &order, "Rejected").await;
}

/// Scenario 3: a payment that cannot be confirmed → shopping list canceled, order rejected.
pub async fn payment_not_confirmed(sys: &System) {
    let shop = open_shop(sys, "unpaid").await;
    let order = checkout(sys, &shop, "no-such-payment").await;
    sys.wait_for_order_status(&order, "rejected").await;
    let saga = sys
        .wait_until(
            &format!("/api/cosec/sagas/{order}"),
            "the saga to finish",
            |v| v["done"] == json!(true),
        )
        .await;
    let list = saga["data"]["shoppingId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !list.is_empty(),
        "the saga created a list before the payment step: {saga}"
    );
    assert_eq!(shopping_list_status(sys, &list).await, "canceled");
}

/// Scenario 4: the replier of one step is not running (payments absent) → the step's deadline
/// fires, compensation runs, the order is rejected.
pub async fn step_deadline(sys: &System) {
    let shop = open_shop(sys, "deadline").await;
    let order = checkout(sys, &shop, "payment-nobody-confirms").await;
    sys.wait_for_order_status(&order, "rejected").await;
    let saga = sys
        .wait_until(
            &format!("/api/cosec/sagas/{order}"),
            "the saga to finish",
            |v| v["done"] == json!(true),
        )
        .await;
    let list = saga["data"]["shoppingId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(shopping_list_status(sys, &list).await, "canceled");
}

/// Scenario 5: the customer cancels a pending order → notifications and read models follow.
/// Run with the payments replier absent and a long step timeout, so the order stays pending.
pub async fn customer_cancels(sys: &System) {
    let shop = open_shop(sys, "cancel").await;
    let order = checkout(sys, &shop, "payment-pending").await;
    sys.wait_for_order_status(&order, "pending").await;
    wait_for_search_status(sys, &order, "New").await;
    let (status, body) = sys
        .call(Method::DELETE, &format!("/api/ordering/{order}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "cancel: {body}");
    assert_eq!(body, json!({}));
    sys.wait_for_order_status(&order, "cancelled").await;
    wait_for_search_status(sys, &order, "Canceled").await;
    wait_for_notification(sys, &order, "order-canceled").await;
    let (status, body) = sys
        .call(Method::DELETE, &format!("/api/ordering/{order}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], json!("the order cannot be cancelled"));
}

/// Graceful shutdown under load: checkouts are fired, the process gets SIGTERM while their
/// messages are in flight, and a restarted process on the same database and prefix finishes
/// every accepted checkout — each order approved, announced once, indexed once.
pub async fn sigterm_under_load_then_restart(sys: &mut System) {
    let shop = open_shop(sys, "restart").await;
    let payment = pay_for(sys, &shop, 10_000.0).await;
    let mut baskets = Vec::new();
    for _ in 0..12 {
        let basket = sys
            .create("/api/baskets", json!({"customerId": shop.customer}))
            .await;
        sys.put(
            &format!("/api/baskets/{basket}/addItem"),
            json!({"productId": shop.products[0].0, "quantity": 1}),
        )
        .await;
        baskets.push(basket);
    }
    // Check out everything, then stop while the saga hops are still in flight.
    for basket in &baskets {
        sys.put(
            &format!("/api/baskets/{basket}/checkout"),
            json!({"paymentId": payment}),
        )
        .await;
    }
    sys.restart().await;
    for order in &baskets {
        sys.wait_for_order_status(order, "approved").await;
    }
    for order in &baskets {
        let kinds = {
            let path = format!("/api/notifications?orderId={order}");
            sys.wait_until(&path, "the created notification", |v| {
                v["notifications"].as_array().is_some_and(|a| !a.is_empty())
            })
            .await;
            notification_kinds(sys, order).await
        };
        assert_eq!(
            kinds.iter().filter(|k| *k == "order-created").count(),
            1,
            "{order}: {kinds:?}"
        );
    }
    // Search is a projection of its own, which may still be catching up after the restart.
    for order in &baskets {
        wait_for_search_status(sys, order, "Approved").await;
    }
    let (status, listed) = sys
        .call(
            Method::POST,
            "/api/search/orders",
            Some(json!({"filters": {"customerId": shop.customer}, "limit": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["orders"].as_array().map(Vec::len),
        Some(baskets.len()),
        "{listed}"
    );
}
