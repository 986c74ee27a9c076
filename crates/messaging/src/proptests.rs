//! Property tests of the receive path (issue #10): whatever headers and payload a NATS message
//! carries, turning it into an envelope and dispatching it never panics; a message whose
//! headers are unusable, whose name no handler knows, or whose payload does not decode never
//! reaches a handler and gets a dead-letter verdict with a reason. The contracts crate runs the
//! same dispatch property for every catalogued message type.
//!
//! Case counts are modest; `PROPTEST_CASES` raises them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::dispatch::{self, Verdict};
use crate::envelope::header;
use crate::jetstream::envelope_from;
use crate::{Message, Subscription};

/// The handled type: one string and one number, so most random payloads fail to decode and
/// some decode.
#[derive(Clone, PartialEq, prost::Message)]
struct Probe {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(int64, tag = "2")]
    n: i64,
}

impl prost::Name for Probe {
    const NAME: &'static str = "Probe";
    const PACKAGE: &'static str = "fuzz";
}

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Header names: ours (so their parsers are exercised) and arbitrary valid NATS header names.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(header::NATS_MSG_ID.to_owned()),
        Just(header::NAME.to_owned()),
        Just(header::TRACEPARENT.to_owned()),
        Just(header::REPLY_TO.to_owned()),
        Just(header::CORRELATION_ID.to_owned()),
        Just(header::CONTENT_TYPE.to_owned()),
        "[A-Za-z][A-Za-z0-9_-]{0,15}",
    ]
}

/// Values: arbitrary text, UUIDs (valid and not), our message name, traceparent look-alikes.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        Just(Probe::message_name()),
        "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
    ]
}

#[test]
fn arbitrary_headers_and_payloads_never_reach_a_handler_unless_valid() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let sub = Subscription::new("fuzz-consumer", "fuzz.events.Probe").on(move |_: Probe, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    let messages = (
        proptest::collection::vec((header_name(), header_value()), 0..6),
        proptest::collection::vec(any::<u8>(), 0..48),
    );
    TestRunner::new(config())
        .run(&messages, |(headers, payload)| {
            let mut map = async_nats::HeaderMap::new();
            for (name, value) in &headers {
                map.insert(name.as_str(), value.as_str());
            }
            let msg = async_nats::Message {
                subject: "fuzz.fuzz.events.Probe".into(),
                reply: None,
                payload: payload.clone().into(),
                headers: Some(map),
                status: None,
                description: None,
                length: payload.len(),
            };
            let (env, malformed) = envelope_from(&msg);
            let id_ok = headers
                .iter()
                .rev()
                .find(|(n, _)| n == header::NATS_MSG_ID)
                .and_then(|(_, v)| uuid::Uuid::parse_str(v).ok())
                == Some(env.id);
            let named = headers.iter().any(|(n, _)| n == header::NAME);
            let env = Arc::new(env);
            let before = calls.load(Ordering::SeqCst);
            let verdict = match &malformed {
                Some(reason) => Verdict::DeadLetter {
                    reason: reason.clone(),
                },
                None => runtime.block_on(dispatch::attempt(
                    &sub,
                    sub.handlers.get(&env.name),
                    env.clone(),
                    1,
                )),
            };
            let handled = calls.load(Ordering::SeqCst) - before;
            let should_handle = malformed.is_none()
                && env.name == Probe::message_name()
                && <Probe as prost::Message>::decode(payload.as_slice()).is_ok();
            prop_assert_eq!(handled, usize::from(should_handle));
            if malformed.is_none() {
                prop_assert!(id_ok && named, "accepted without a usable id and name");
            }
            match verdict {
                Verdict::Ack => prop_assert!(should_handle),
                Verdict::DeadLetter { reason } => {
                    prop_assert!(!should_handle);
                    prop_assert!(!reason.is_empty());
                    let dead = dispatch::dead_letter("fuzz", &sub, &env, &reason, 1);
                    prop_assert_eq!(
                        dead.header(header::DEAD_LETTER_REASON),
                        Some(reason.as_str())
                    );
                    prop_assert_eq!(dead.subject, "fuzz.deadletter.fuzz-consumer");
                }
                Verdict::Retry { reason, .. } => {
                    prop_assert!(false, "nothing here is worth retrying: {}", reason)
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
