//! The create-order saga against real NATS and PostgreSQL: the module runs in the test host,
//! and the test plays the other services by consuming their command subjects and replying
//! the way they do (`MessageContext::reply`, published on the saga's reply channel). Each test
//! checks the commands the saga sent, in order, and its final state as the read endpoint shows.

use std::sync::Arc;
use std::time::Duration;

use contracts::customers::v1::AuthorizeCustomer;
use contracts::depot::v1::{
    CancelShoppingList, CreateShoppingList, CreatedShoppingList, InitiateShopping,
};
use contracts::ordering::v1::{
    ApproveOrder, OrderCanceled, OrderCreated, RejectOrder, order_created,
};
use contracts::payments::v1::ConfirmPayment;
use contracts::subjects;
use messaging::{
    Bus, CancellationToken, Command, Empty, Envelope, HandlerError, Message, MessageContext,
    Outcome, Subscription,
};
use order_saga::OrderSagaModule;
use order_saga::create_order::{self, CreateOrderData};
use order_saga::engine::{Orchestrator, Settings};
use platform::testing::{TestApp, WAIT};
use reqwest::StatusCode;
use serde_json::Value;

/// How a fake service answers a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Succeed,
    Fail,
    /// Never answers (a service that is down or lost the command).
    Silent,
}

type Script = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// The services the saga talks to, played by the test. Stops consuming when dropped.
struct FakeServices {
    stop: CancellationToken,
}

impl Drop for FakeServices {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeServices {
    /// Consumes the four command subjects of `app`, answering each command as `script` says.
    async fn start(app: &TestApp, script: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        let stop = CancellationToken::new();
        let script: Script = Arc::new(script);
        let bus = app.bus.clone();
        let subscriptions = [
            answer::<AuthorizeCustomer>(
                Subscription::new("fake-customers", subjects::CUSTOMERS_COMMANDS),
                &bus,
                &script,
            ),
            answer::<CancelShoppingList>(
                answer::<InitiateShopping>(
                    answer::<CreateShoppingList>(
                        Subscription::new("fake-depot", subjects::DEPOT_COMMANDS),
                        &bus,
                        &script,
                    ),
                    &bus,
                    &script,
                ),
                &bus,
                &script,
            ),
            answer::<ConfirmPayment>(
                Subscription::new("fake-payments", subjects::PAYMENTS_COMMANDS),
                &bus,
                &script,
            ),
            answer::<ApproveOrder>(
                answer::<RejectOrder>(
                    Subscription::new("fake-ordering", subjects::ORDERING_COMMANDS),
                    &bus,
                    &script,
                ),
                &bus,
                &script,
            ),
        ];
        for subscription in subscriptions {
            app.bus
                .subscribe(subscription, stop.clone())
                .await
                .expect("fake service consumer starts");
        }
        FakeServices { stop }
    }
}

/// Adds a handler for command `C` that replies as the real service would: the depot answers
/// CreateShoppingList with the new list (`list-<order id>`), the others with a bare reply.
fn answer<C: Command>(subscription: Subscription, bus: &Bus, script: &Script) -> Subscription {
    let bus = bus.clone();
    let script = script.clone();
    subscription.on(move |_: C, ctx: MessageContext| {
        let bus = bus.clone();
        let script = script.clone();
        async move {
            let outcome = match script(&ctx.envelope.name) {
                Answer::Succeed => Outcome::Success,
                Answer::Fail => Outcome::Failure,
                Answer::Silent => return Ok(()),
            };
            let reply = match ctx.envelope.decode::<CreateShoppingList>() {
                Ok(create) => ctx.reply(
                    outcome,
                    &CreatedShoppingList {
                        id: format!("list-{}", create.order_id),
                    },
                )?,
                Err(_) => ctx.reply(outcome, &Empty {})?,
            };
            bus.publish(&reply).await.map_err(HandlerError::retryable)
        }
    })
}

fn order(id: &str) -> OrderCreated {
    OrderCreated {
        id: id.to_owned(),
        customer_id: "customer-1".into(),
        payment_id: "payment-1".into(),
        shopping_id: String::new(),
        items: vec![
            order_created::Item {
                product_id: "p1".into(),
                store_id: "s1".into(),
                price: 2.5,
                quantity: 2,
            },
            order_created::Item {
                product_id: "p2".into(),
                store_id: "s2".into(),
                price: 10.0,
                quantity: 1,
            },
        ],
    }
}

fn name<M: Message>() -> String {
    M::message_name()
}

fn forward() -> Vec<String> {
    vec![
        name::<AuthorizeCustomer>(),
        name::<CreateShoppingList>(),
        name::<ConfirmPayment>(),
        name::<InitiateShopping>(),
        name::<ApproveOrder>(),
    ]
}

/// Every command the saga published, in publish order.
fn commands(app: &TestApp) -> Vec<Envelope> {
    let subjects: Vec<String> = [
        subjects::CUSTOMERS_COMMANDS,
        subjects::DEPOT_COMMANDS,
        subjects::PAYMENTS_COMMANDS,
        subjects::ORDERING_COMMANDS,
    ]
    .iter()
    .map(|s| app.bus.subject(s))
    .collect();
    app.published()
        .into_iter()
        .filter(|e| subjects.contains(&e.subject))
        .collect()
}

fn names(envelopes: &[Envelope]) -> Vec<String> {
    envelopes.iter().map(|e| e.name.clone()).collect()
}

/// Waits until the saga of `order_id` reaches `status`, and returns it.
async fn saga_with_status(app: &TestApp, order_id: &str, status: &str) -> Value {
    let path = format!("/api/cosec/sagas/{order_id}");
    let what = format!("saga {order_id} {status}");
    testkit::eventually(WAIT, &what, || async {
        let (code, body) = app.get(&path).await;
        (code == StatusCode::OK && body["status"] == status).then_some(body)
    })
    .await
}

async fn publish_order(app: &TestApp, id: &str) -> Envelope {
    let envelope = app.bus.event(&order(id));
    app.bus
        .publish(&envelope)
        .await
        .expect("OrderCreated published");
    envelope
}

/// The command-log entries of a saga body as (name, compensating, outcome).
fn log(body: &Value) -> Vec<(String, bool, String)> {
    body["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["compensating"].as_bool().unwrap_or_default(),
                c["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count query")
}

/// Waits until the saga's consumer `consumer` has recorded `n` deliveries in its inbox.
async fn wait_handled(pool: &sqlx::PgPool, consumer: &str, n: i64) {
    testkit::eventually(
        WAIT,
        &format!("{n} deliveries handled by {consumer}"),
        || async {
            let handled: i64 =
                sqlx::query_scalar("SELECT count(*) FROM cosec.inbox WHERE consumer = $1")
                    .bind(consumer)
                    .fetch_one(pool)
                    .await
                    .expect("count query");
            (handled == n).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn every_step_succeeding_approves_the_order_once_per_order() {
    let app = TestApp::spawn("cosec_happy", vec![Box::new(OrderSagaModule::default())]).await;
    let _services = FakeServices::start(&app, |_| Answer::Succeed).await;

    let (status, body) = app.get("/api/cosec/sagas/unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "saga not found");

    let first = publish_order(&app, "order-1").await;
    // The same order announced again (a new message id): no second saga (weaknesses C3).
    publish_order(&app, "order-1").await;
    // Other order events are known and skipped, not dead-lettered.
    app.bus
        .publish(&app.bus.event(&OrderCanceled {
            id: "order-9".into(),
            ..OrderCanceled::default()
        }))
        .await
        .unwrap();

    let saga = saga_with_status(&app, "order-1", "completed").await;
    assert_eq!(saga["step"], 5);
    assert_eq!(saga["stepName"], "approve order");
    assert_eq!(saga["done"], true);
    assert_eq!(saga["compensating"], false);
    assert_eq!(saga["stuckReason"], "");
    assert_eq!(saga["failure"], "");
    assert_eq!(saga["pendingCommandId"], "");
    assert_eq!(saga["deadline"], "");
    assert_eq!(saga["sagaType"], "cosec.CreateOrder");
    assert_eq!(saga["data"]["orderId"], "order-1");
    assert_eq!(saga["data"]["shoppingId"], "list-order-1");
    assert_eq!(saga["data"]["total"], 15.0);
    assert_eq!(
        log(&saga),
        forward()
            .into_iter()
            .map(|n| (n, false, "success".to_owned()))
            .collect::<Vec<_>>()
    );

    let pool = sqlx::PgPool::connect(app.db.url()).await.unwrap();
    wait_handled(&pool, "cosec-ordering", 2).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cosec.sagas").await, 1);

    let sent = commands(&app);
    assert_eq!(names(&sent), forward(), "each command once, in order");
    for command in &sent {
        assert_eq!(
            command.correlation_id(),
            first.correlation_id(),
            "{} stays in the order's conversation",
            command.name
        );
    }
    let approve: ApproveOrder = sent[4].decode().unwrap();
    assert_eq!(
        (approve.id.as_str(), approve.shopping_id.as_str()),
        ("order-1", "list-order-1")
    );
    let confirm: ConfirmPayment = sent[2].decode().unwrap();
    assert_eq!((confirm.id.as_str(), confirm.amount), ("payment-1", 15.0));
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_refused_payment_cancels_the_list_then_rejects_the_order() {
    let app = TestApp::spawn("cosec_refused", vec![Box::new(OrderSagaModule::default())]).await;
    let payment = name::<ConfirmPayment>();
    let _services = FakeServices::start(&app, move |command| {
        if command == payment {
            Answer::Fail
        } else {
            Answer::Succeed
        }
    })
    .await;

    publish_order(&app, "order-2").await;
    let saga = saga_with_status(&app, "order-2", "compensated").await;
    assert_eq!(saga["step"], 0);
    assert_eq!(saga["done"], true);
    assert_eq!(saga["compensating"], true);
    let failure = saga["failure"].as_str().unwrap();
    assert!(failure.contains("ConfirmPayment"), "{failure}");
    let ok = |n: String, compensating| (n, compensating, "success".to_owned());
    assert_eq!(
        log(&saga),
        vec![
            ok(name::<AuthorizeCustomer>(), false),
            ok(name::<CreateShoppingList>(), false),
            (name::<ConfirmPayment>(), false, "failure".to_owned()),
            ok(name::<CancelShoppingList>(), true),
            ok(name::<RejectOrder>(), true),
        ]
    );

    let sent = commands(&app);
    assert_eq!(
        names(&sent),
        vec![
            name::<AuthorizeCustomer>(),
            name::<CreateShoppingList>(),
            name::<ConfirmPayment>(),
            name::<CancelShoppingList>(),
            name::<RejectOrder>(),
        ]
    );
    let cancel: CancelShoppingList = sent[3].decode().unwrap();
    assert_eq!(cancel.id, "list-order-2");
    let reject: RejectOrder = sent[4].decode().unwrap();
    assert_eq!(reject.id, "order-2");
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_missing_replier_times_out_and_the_saga_compensates_once_with_two_sweepers() {
    let module = OrderSagaModule::with_step_timeout(Duration::from_millis(800))
        .sweep_interval(Duration::from_millis(50));
    let app = TestApp::spawn("cosec_timeout", vec![Box::new(module)]).await;
    let payment = name::<ConfirmPayment>();
    let _services = FakeServices::start(&app, move |command| {
        if command == payment {
            Answer::Silent
        } else {
            Answer::Succeed
        }
    })
    .await;
    // A second instance's sweeper on the same database races the app's for every deadline.
    let pool = persistence::connect(app.db.url(), order_saga::SCHEMA)
        .await
        .unwrap();
    let rival = Orchestrator::<CreateOrderData>::new(
        create_order::definition(),
        pool,
        app.bus.clone(),
        Settings {
            step_timeout: Duration::from_millis(800),
            sweep_interval: Duration::from_millis(50),
            ..Settings::default()
        },
    );
    let stop_rival = CancellationToken::new();
    let rival_task = tokio::spawn(rival.run_sweeper(stop_rival.clone()));

    publish_order(&app, "order-3").await;
    let waiting = saga_with_status(&app, "order-3", "running").await;
    assert!(waiting["deadline"].as_str().is_some_and(|d| !d.is_empty()));

    let saga = saga_with_status(&app, "order-3", "compensated").await;
    let failure = saga["failure"].as_str().unwrap();
    assert!(
        failure.contains("no reply") && failure.contains("ConfirmPayment"),
        "{failure}"
    );
    let entries = log(&saga);
    assert_eq!(
        entries[2],
        (name::<ConfirmPayment>(), false, "timed_out".to_owned())
    );
    assert_eq!(
        names(&commands(&app)),
        vec![
            name::<AuthorizeCustomer>(),
            name::<CreateShoppingList>(),
            name::<ConfirmPayment>(),
            name::<CancelShoppingList>(),
            name::<RejectOrder>(),
        ],
        "each compensation sent once although two sweepers ran"
    );
    stop_rival.cancel();
    rival_task.await.unwrap();
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_failed_compensation_leaves_the_saga_visibly_stuck() {
    let app = TestApp::spawn("cosec_stuck", vec![Box::new(OrderSagaModule::default())]).await;
    let authorize = name::<AuthorizeCustomer>();
    let reject = name::<RejectOrder>();
    let _services = FakeServices::start(&app, move |command| {
        if command == authorize || command == reject {
            Answer::Fail
        } else {
            Answer::Succeed
        }
    })
    .await;

    publish_order(&app, "order-4").await;
    let saga = saga_with_status(&app, "order-4", "stuck").await;
    assert_eq!(saga["done"], false, "never silently done");
    assert_eq!(saga["compensating"], true);
    assert_eq!(saga["step"], 0);
    let reason = saga["stuckReason"].as_str().unwrap();
    assert!(reason.contains("RejectOrder"), "{reason}");
    assert_eq!(
        log(&saga),
        vec![
            (name::<AuthorizeCustomer>(), false, "failure".to_owned()),
            (name::<RejectOrder>(), true, "failure".to_owned()),
        ]
    );
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}

#[tokio::test]
async fn a_reply_to_no_command_of_the_saga_is_acknowledged_and_changes_nothing() {
    let app = TestApp::spawn("cosec_stray", vec![Box::new(OrderSagaModule::default())]).await;
    let pool = sqlx::PgPool::connect(app.db.url()).await.unwrap();
    // A reply whose cause is no command the saga sent, and one that names no cause at all.
    let stray = Envelope::new(app.bus.subject(contracts::CREATE_ORDER_REPLIES), &Empty {})
        .with_header(
            messaging::header::CAUSATION_ID,
            uuid::Uuid::now_v7().to_string(),
        )
        .with_header(messaging::header::REPLY_OUTCOME, Outcome::Success.as_str());
    let causeless = Envelope::new(app.bus.subject(contracts::CREATE_ORDER_REPLIES), &Empty {})
        .with_header(messaging::header::REPLY_OUTCOME, Outcome::Success.as_str());
    for env in [&stray, &causeless] {
        app.bus.publish(env).await.expect("reply published");
    }
    wait_handled(&pool, "cosec-replies", 2).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM cosec.sagas").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM cosec.outbox").await, 0);
    assert!(app.dead_letters().is_empty(), "{:?}", app.dead_letters());
}
