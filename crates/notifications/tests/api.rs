//! The notifications service on a random port against real NATS and PostgreSQL: customer and
//! order events published on the bus, texts observed through a recording SMS sender and the
//! REST listing. The customers service is faked with a query responder where needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use contracts::customers::v1::{
    Customer, CustomerDisabled, CustomerRegistered, CustomerSmsChanged, GetCustomer,
    GetCustomerResponse,
};
use contracts::ordering::v1::{
    OrderApproved, OrderCanceled, OrderCompleted, OrderCreated, OrderReadied, OrderRejected,
};
use messaging::{Envelope, Event};
use notifications::{NotificationsModule, Sms, SmsError, SmsSender};
use platform::testing::{TestApp, WAIT};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Keeps every text it is asked to send.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Sms>>,
}

impl Recorder {
    fn sent(&self) -> Vec<Sms> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[platform::async_trait]
impl SmsSender for Recorder {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sms.clone());
        Ok(())
    }
}

async fn spawn() -> (TestApp, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let module = NotificationsModule::new(recorder.clone());
    let app = TestApp::spawn("notifications", vec![Box::new(module)]).await;
    (app, recorder)
}

async fn publish<E: Event>(app: &TestApp, event: &E) -> Envelope {
    let env = app.bus.event(event);
    app.bus.publish(&env).await.expect("published");
    env
}

fn created(order: &str, customer: &str) -> OrderCreated {
    OrderCreated {
        id: order.into(),
        customer_id: customer.into(),
        payment_id: "pay".into(),
        ..Default::default()
    }
}

fn canceled(order: &str, customer: &str) -> OrderCanceled {
    OrderCanceled {
        id: order.into(),
        customer_id: customer.into(),
        payment_id: "pay".into(),
    }
}

/// Publishes `CustomerRegistered` and waits until the customer is cached, so the order events
/// that follow find it there (the two consumers run independently).
async fn register(app: &TestApp, id: &str, name: &str, sms: &str) {
    publish(
        app,
        &CustomerRegistered {
            id: id.into(),
            name: name.into(),
            sms_number: sms.into(),
        },
    )
    .await;
    let db = pool(app).await;
    let what = format!("customer {id} cached");
    testkit::eventually(WAIT, &what, || async {
        sqlx::query_as::<_, (i32,)>("SELECT 1 FROM customers_cache WHERE id = $1")
            .bind(id)
            .fetch_optional(&db)
            .await
            .ok()
            .flatten()
    })
    .await;
}

/// The kinds listed for `order`, once there are `n` of them.
async fn wait_kinds(app: &TestApp, order: &str, n: usize) -> Vec<Value> {
    let what = format!("{n} notifications about {order}");
    testkit::eventually(WAIT, &what, || async {
        let (code, body) = app
            .get(&format!("/api/notifications?orderId={order}"))
            .await;
        let list = body["notifications"].as_array()?.clone();
        (code.as_u16() == 200 && list.len() >= n).then_some(list)
    })
    .await
}

fn kinds(list: &[Value]) -> Vec<&str> {
    list.iter()
        .map(|n| n["kind"].as_str().unwrap_or_default())
        .collect()
}

async fn pool(app: &TestApp) -> PgPool {
    persistence::connect(app.db.url(), "notifications")
        .await
        .expect("test pool")
}

/// Created, ready, canceled and rejected text the customer once each, however often the event
/// comes; approved and completed are skipped; the listing shows what was sent.
#[tokio::test]
async fn order_events_text_the_customer_once_per_order_and_kind() {
    let (app, recorder) = spawn().await;
    register(&app, "c1", "Ada", "555-0100").await;
    publish(&app, &CustomerDisabled { id: "c1".into() }).await;

    publish(&app, &created("o1", "c1")).await;
    // The same event again under a new message id: no second text.
    publish(&app, &created("o1", "c1")).await;
    publish(
        &app,
        &OrderApproved {
            id: "o1".into(),
            customer_id: "c1".into(),
            payment_id: "pay".into(),
        },
    )
    .await;
    publish(
        &app,
        &OrderReadied {
            id: "o1".into(),
            customer_id: "c1".into(),
            payment_id: "pay".into(),
            total: 9.5,
        },
    )
    .await;
    publish(
        &app,
        &OrderCompleted {
            id: "o1".into(),
            customer_id: "c1".into(),
            invoice_id: "o1".into(),
        },
    )
    .await;
    publish(&app, &canceled("o1", "c1")).await;
    publish(
        &app,
        &OrderRejected {
            id: "o2".into(),
            customer_id: "c1".into(),
            payment_id: "pay".into(),
        },
    )
    .await;

    let list = wait_kinds(&app, "o1", 3).await;
    assert_eq!(
        kinds(&list),
        ["order-created", "order-ready", "order-canceled"]
    );
    let first = &list[0];
    assert_eq!(first["orderId"], "o1");
    assert_eq!(first["customerId"], "c1");
    assert_eq!(first["smsNumber"], "555-0100");
    assert!(
        first["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Hello Ada, we have received your order o1")),
        "{first}"
    );
    for field in ["id", "sentAt"] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    let rejected = wait_kinds(&app, "o2", 1).await;
    assert_eq!(kinds(&rejected), ["order-rejected"]);

    // The duplicate and the skipped events were handled (same key, same consumer, in order,
    // before the cancel): exactly one text per kind went out.
    let sent = recorder.sent();
    let created_texts = sent.iter().filter(|s| s.kind == "order-created").count();
    assert_eq!(created_texts, 1, "{sent:?}");
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent.iter().all(|s| s.to == "555-0100"));

    let (_, by_path) = app.get("/api/notifications/orders/o1").await;
    assert_eq!(by_path["notifications"], json!(list));
    let (_, by_customer) = app.get("/api/notifications?customer_id=c1").await;
    assert_eq!(
        by_customer["notifications"].as_array().map(Vec::len),
        Some(4)
    );
    let (_, all) = app.get("/api/notifications").await;
    assert_eq!(all["notifications"].as_array().map(Vec::len), Some(4));
    let (code, none) = app.get("/api/notifications?orderId=nope").await;
    assert_eq!((code.as_u16(), none), (200, json!({"notifications": []})));
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

/// A customer missing from the cache is asked of the customers service once, then cached; an
/// SMS number change updates the cache (the original's SQL failed, weakness A6).
#[tokio::test]
async fn a_cache_miss_asks_customers_and_a_number_change_is_followed() {
    let (app, recorder) = spawn().await;
    let db = pool(&app).await;
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
                        customer: (q.id == "c2").then(|| Customer {
                            id: q.id.clone(),
                            name: "Bo".into(),
                            sms_number: "555-0200".into(),
                            enabled: true,
                        }),
                    })
                }
            },
            stop.clone(),
        )
        .await
        .expect("serving GetCustomer");

    publish(&app, &created("o1", "c2")).await;
    let list = wait_kinds(&app, "o1", 1).await;
    assert_eq!(list[0]["smsNumber"], "555-0200");
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    publish(
        &app,
        &CustomerSmsChanged {
            id: "c2".into(),
            sms_number: "555-0299".into(),
        },
    )
    .await;
    testkit::eventually(WAIT, "the cached number changes", || async {
        let (n,): (String,) =
            sqlx::query_as("SELECT sms_number FROM customers_cache WHERE id = 'c2'")
                .fetch_one(&db)
                .await
                .ok()?;
        (n == "555-0299").then_some(())
    })
    .await;
    publish(&app, &canceled("o1", "c2")).await;
    let list = wait_kinds(&app, "o1", 2).await;
    assert_eq!(list[1]["kind"], "order-canceled");
    assert_eq!(list[1]["smsNumber"], "555-0299");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second text used the cache"
    );

    // A customer nobody knows: nothing is sent, nothing is dead-lettered. The cancel after it
    // (same order, so handled after it) shows it was handled.
    register(&app, "c3", "Cy", "555-0300").await;
    publish(&app, &created("o3", "ghost")).await;
    publish(&app, &canceled("o3", "c3")).await;
    let list = wait_kinds(&app, "o3", 1).await;
    assert_eq!(kinds(&list), ["order-canceled"]);
    assert_eq!(recorder.sent().len(), 3);
    stop.cancel();
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

/// An order event without a customer can never be notified: dead-lettered with the reason,
/// not retried forever, not dropped silently.
#[tokio::test]
async fn an_event_without_a_customer_is_dead_lettered() {
    let (app, recorder) = spawn().await;
    let env = publish(&app, &created("o9", "")).await;
    let dead = testkit::eventually(WAIT, "a dead letter", || async {
        app.dead_letters().into_iter().next()
    })
    .await;
    assert_eq!(
        dead.header(messaging::header::DEAD_LETTER_ORIGINAL_ID),
        Some(env.id.to_string().as_str())
    );
    assert_eq!(
        dead.header(messaging::header::DEAD_LETTER_CONSUMER),
        Some(notifications::ORDERS_DURABLE)
    );
    assert!(
        dead.header(messaging::header::DEAD_LETTER_REASON)
            .is_some_and(|r| r.contains("no customer id")),
        "{dead:?}"
    );
    assert!(recorder.sent().is_empty());
    let (_, all) = app.get("/api/notifications").await;
    assert_eq!(all, json!({"notifications": []}));
}
