//! One checkout, one trace: every module in one process with an in-memory span collector; the
//! REST request, BasketCheckedOut, OrderCreated, the saga's commands and their replies — their
//! `traceparent` headers and the spans that publish and handle them — share one trace id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use platform::testing::TestApp;
use serde_json::json;

mod common;
use common::{create, modules, put};

/// Keeps every finished span.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Collector {
    fn spans(&self) -> Vec<SpanData> {
        self.0.lock().unwrap().clone()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace() {
    let collector = Collector::default();
    let config = platform::Config {
        log_level: "warn".to_owned(),
        ..platform::Config::default()
    };
    assert!(platform::telemetry::init_with_exporter(
        &config,
        collector.clone()
    ));
    let app = TestApp::spawn("tracing", modules()).await;

    let store = create(
        &app,
        "/api/stores",
        json!({"name": "Traced", "location": "The mall"}),
    )
    .await;
    let product = create(
        &app,
        &format!("/api/stores/{store}/products"),
        json!({"name": "Wizard", "description": "d", "sku": "sku", "price": 9.5}),
    )
    .await;
    let customer = create(
        &app,
        "/api/customers",
        json!({"name": "Tracer", "smsNumber": "555-555-1212"}),
    )
    .await;
    let payment = create(
        &app,
        "/api/payments",
        json!({"customerId": customer, "amount": 100.0}),
    )
    .await;
    let basket = create(&app, "/api/baskets", json!({"customerId": customer})).await;
    put(
        &app,
        &format!("/api/baskets/{basket}/addItem"),
        json!({"productId": product, "quantity": 2}),
    )
    .await;
    put(
        &app,
        &format!("/api/baskets/{basket}/checkout"),
        json!({"paymentId": payment}),
    )
    .await;
    testkit::eventually(
        Duration::from_secs(30),
        "the order to be approved",
        || async {
            let (_, body) = app.get(&format!("/api/ordering/{basket}")).await;
            (body["order"]["status"] == json!("approved")).then_some(())
        },
    )
    .await;

    // The headers: the conversation that BasketCheckedOut starts is one trace.
    let checked_out = app
        .wait_for("baskets.v1.BasketCheckedOut", |e| e.key() == Some(&basket))
        .await;
    let trace = checked_out.trace_parent().expect("a traceparent").trace_id;
    let conversation: Vec<messaging::Envelope> = app
        .published()
        .into_iter()
        .filter(|e| e.correlation_id() == checked_out.correlation_id())
        .collect();
    let names: Vec<&str> = conversation.iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"ordering.v1.OrderCreated"), "{names:?}");
    let commands = conversation
        .iter()
        .filter(|e| e.subject.ends_with(".commands"))
        .count();
    let replies = conversation
        .iter()
        .filter(|e| e.subject.ends_with(".cosec.replies.CreateOrder"))
        .count();
    assert!(
        commands >= 4 && replies >= 4,
        "saga commands and replies: {names:?}"
    );
    for env in &conversation {
        assert_eq!(
            env.trace_parent().map(|t| t.trace_id),
            Some(trace),
            "{} is in another trace",
            env.name
        );
    }

    // The spans: the REST request, each handling and each publish of the conversation, and
    // the saga's steps carry the same trace id.
    let trace_id = TraceId::from_bytes(trace.to_be_bytes());
    let in_trace = || -> Vec<SpanData> {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = in_trace();
        let has = |name: &str, key: &str, value: &str| {
            spans
                .iter()
                .any(|s| s.name == name && attribute(s, key).as_deref() == Some(value))
        };
        let handled =
            |consumer: &str| has("handle message", "messaging.consumer.group.name", consumer);
        let checks = [
            (
                "the REST request",
                spans
                    .iter()
                    .any(|s| s.name == "PUT /api/baskets/{id}/checkout"),
            ),
            ("ordering handles the checkout", handled("ordering-baskets")),
            (
                // The field log lines inside a handler carry, for finding them by trace.
                "a handler span names its trace id",
                has("handle message", "trace_id", &trace_id.to_string()),
            ),
            ("the saga handles OrderCreated", handled("cosec-ordering")),
            ("the saga handles replies", handled("cosec-replies")),
            (
                "customers handles its command",
                handled("customers-commands"),
            ),
            (
                "BasketCheckedOut published",
                has(
                    "publish",
                    "messaging.message.name",
                    "baskets.v1.BasketCheckedOut",
                ),
            ),
            (
                "OrderCreated published",
                has(
                    "publish",
                    "messaging.message.name",
                    "ordering.v1.OrderCreated",
                ),
            ),
            (
                "saga steps",
                spans.iter().filter(|s| s.name == "saga step").count() >= 5,
            ),
        ];
        let missing: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| *n)
            .collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let all: Vec<String> = collector
                .spans()
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {:?}",
                        s.span_context.trace_id(),
                        s.name,
                        s.attributes
                    )
                })
                .collect();
            panic!(
                "missing in trace {trace_id}: {missing:?}\nall spans:\n{}",
                all.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The consumer's span continues the message's trace as a child of the remote sender.
    let handled_checkout = in_trace()
        .into_iter()
        .find(|s| {
            s.name == "handle message"
                && attribute(s, "messaging.message.name").as_deref()
                    == Some("baskets.v1.BasketCheckedOut")
        })
        .expect("the handling of BasketCheckedOut");
    assert!(handled_checkout.parent_span_is_remote);
    app.stop().await;
}
