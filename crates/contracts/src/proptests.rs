//! Property tests of every message decoder, generated from the catalogue (issue #10): whatever
//! bytes arrive, decoding never panics; every valid message survives the wire unchanged; and a
//! payload that does not decode never reaches a handler but ends as a dead letter with a reason.
//!
//! Valid messages are generated from the protobuf descriptors of `proto/` (written by
//! `build.rs`), so a field added to a `.proto` is fuzzed without touching this file, and the
//! types come from `visit_every_message`, built from the catalogue's own rows.
//!
//! Case counts are modest so the normal test run stays fast; `PROPTEST_CASES=10000` raises them.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use messaging::memory::Memory;
use messaging::{Bus, Envelope, Message, Subscription, Transport, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message as _;
use prost::encoding;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

use super::{CATALOGUE, MessageVisitor, visit_every_message};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// Default cases per property and type; `PROPTEST_CASES` overrides it.
const CASES: u32 = 64;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        // Failures are reported with their shrunk input; nothing is written next to the source.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every message descriptor by fully qualified name (`stores.v1.Product`, nested types too).
fn descriptors() -> BTreeMap<String, DescriptorProto> {
    fn add(prefix: &str, message: &DescriptorProto, out: &mut BTreeMap<String, DescriptorProto>) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            add(&name, nested, out);
        }
        out.insert(name, message.clone());
    }
    let set = FileDescriptorSet::decode(DESCRIPTORS).expect("build.rs wrote a descriptor set");
    let mut out = BTreeMap::new();
    for file in &set.file {
        for message in &file.message_type {
            add(file.package(), message, &mut out);
        }
    }
    out
}

/// Wire bytes of a valid message of type `name`, in prost's canonical form: fields in
/// declaration order, zero values omitted (proto3), repeated numbers packed. Decoding them and
/// encoding again must give the same bytes back, which proves no field was lost or altered.
fn valid_message(
    name: &str,
    all: &BTreeMap<String, DescriptorProto>,
    depth: u32,
) -> BoxedStrategy<Vec<u8>> {
    let Some(message) = all.get(name) else {
        // The only catalogued message not declared in proto/ is the bare reply payload.
        assert_eq!(
            name,
            <messaging::Empty as prost::Name>::full_name(),
            "{name} has no descriptor"
        );
        return Just(Vec::new()).boxed();
    };
    let fields: Vec<BoxedStrategy<Vec<u8>>> = message
        .field
        .iter()
        .map(|field| {
            let tag = u32::try_from(field.number()).expect("positive field number");
            let repeated = field.label() == Label::Repeated;
            let nested = field.type_name().trim_start_matches('.').to_owned();
            match field.r#type() {
                Type::Message if depth == 0 => Just(Vec::new()).boxed(),
                Type::Message if repeated => {
                    proptest::collection::vec(valid_message(&nested, all, depth - 1), 0..4)
                        .prop_map(move |items| {
                            let mut buf = Vec::new();
                            for item in items {
                                encoding::bytes::encode(tag, &item, &mut buf);
                            }
                            buf
                        })
                        .boxed()
                }
                Type::Message => proptest::option::of(valid_message(&nested, all, depth - 1))
                    .prop_map(move |item| {
                        let mut buf = Vec::new();
                        if let Some(item) = item {
                            encoding::bytes::encode(tag, &item, &mut buf);
                        }
                        buf
                    })
                    .boxed(),
                scalar => scalar_field(scalar, tag, repeated),
            }
        })
        .collect();
    fields.prop_map(|parts| parts.concat()).boxed()
}

/// One scalar field (or a packed list of them), omitted when it holds the zero value.
fn scalar_field(kind: Type, tag: u32, repeated: bool) -> BoxedStrategy<Vec<u8>> {
    macro_rules! numeric {
        ($ty:ty, $module:ident) => {
            if repeated {
                proptest::collection::vec(any::<$ty>(), 0..4)
                    .prop_map(move |values| {
                        let mut buf = Vec::new();
                        encoding::$module::encode_packed(tag, &values, &mut buf);
                        buf
                    })
                    .boxed()
            } else {
                any::<$ty>()
                    .prop_map(move |value: $ty| {
                        let mut buf = Vec::new();
                        if value != <$ty>::default() {
                            encoding::$module::encode(tag, &value, &mut buf);
                        }
                        buf
                    })
                    .boxed()
            }
        };
    }
    match kind {
        Type::Double => numeric!(f64, double),
        Type::Float => numeric!(f32, float),
        Type::Int32 | Type::Enum => numeric!(i32, int32),
        Type::Int64 => numeric!(i64, int64),
        Type::Uint32 => numeric!(u32, uint32),
        Type::Uint64 => numeric!(u64, uint64),
        Type::Sint32 => numeric!(i32, sint32),
        Type::Sint64 => numeric!(i64, sint64),
        Type::Fixed32 => numeric!(u32, fixed32),
        Type::Fixed64 => numeric!(u64, fixed64),
        Type::Sfixed32 => numeric!(i32, sfixed32),
        Type::Sfixed64 => numeric!(i64, sfixed64),
        Type::Bool => numeric!(bool, bool),
        Type::String => {
            proptest::collection::vec(any::<String>(), if repeated { 0..4 } else { 1..2 })
                .prop_map(move |values| {
                    let mut buf = Vec::new();
                    for value in values.iter().filter(|v| repeated || !v.is_empty()) {
                        encoding::string::encode(tag, value, &mut buf);
                    }
                    buf
                })
                .boxed()
        }
        Type::Bytes => {
            proptest::collection::vec(any::<Vec<u8>>(), if repeated { 0..4 } else { 1..2 })
                .prop_map(move |values| {
                    let mut buf = Vec::new();
                    for value in values.iter().filter(|v| repeated || !v.is_empty()) {
                        encoding::bytes::encode(tag, value, &mut buf);
                    }
                    buf
                })
                .boxed()
        }
        Type::Group | Type::Message => unreachable!("handled by the caller / not proto3"),
    }
}

/// How many types each visitor saw, to prove the visit covers the whole catalogue.
fn visited_names() -> Vec<String> {
    struct Names(Vec<String>);
    impl MessageVisitor for Names {
        fn visit<M: Message + PartialEq + Debug>(&mut self) {
            self.0.push(M::full_name());
        }
    }
    let mut names = Names(Vec::new());
    visit_every_message(&mut names);
    names.0
}

#[test]
fn every_catalogued_message_is_visited_and_has_a_descriptor() {
    let visited = visited_names();
    let all = descriptors();
    for entry in CATALOGUE {
        assert!(
            visited.contains(&entry.name()),
            "{} is not fuzzed",
            entry.name()
        );
    }
    for name in &visited {
        assert!(
            all.contains_key(name) || *name == <messaging::Empty as prost::Name>::full_name(),
            "{name}: no descriptor to generate it from"
        );
    }
}

/// Arbitrary bytes, and valid messages cut short or with one byte changed: `decode` returns,
/// never panics, and whatever it accepts encodes to something that decodes to the same bytes.
struct DecodeNeverPanics(BTreeMap<String, DescriptorProto>);

impl MessageVisitor for DecodeNeverPanics {
    fn visit<M: Message + PartialEq + Debug>(&mut self) {
        let name = M::full_name();
        let strategy = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            (
                valid_message(&name, &self.0, 3),
                any::<prop::sample::Index>()
            )
                .prop_map(|(bytes, at)| bytes[..at.index(bytes.len() + 1)].to_vec()),
            (
                valid_message(&name, &self.0, 3),
                any::<prop::sample::Index>(),
                any::<u8>()
            )
                .prop_map(|(mut bytes, at, value)| {
                    if !bytes.is_empty() {
                        let i = at.index(bytes.len());
                        bytes[i] = value;
                    }
                    bytes
                }),
        ];
        TestRunner::new(config())
            .run(&strategy, |bytes| {
                if let Ok(message) = M::decode(bytes.as_slice()) {
                    let again = message.encode_to_vec();
                    let reread = M::decode(again.as_slice())
                        .map_err(|e| TestCaseError::fail(format!("{name}: re-decode: {e}")))?;
                    prop_assert_eq!(reread.encode_to_vec(), again, "{}", name);
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn arbitrary_bytes_never_panic_any_decoder() {
    visit_every_message(&mut DecodeNeverPanics(descriptors()));
}

/// Every valid message decodes, and encodes back to exactly the same bytes.
struct ValidMessagesRoundTrip(BTreeMap<String, DescriptorProto>);

impl MessageVisitor for ValidMessagesRoundTrip {
    fn visit<M: Message + PartialEq + Debug>(&mut self) {
        let name = M::full_name();
        TestRunner::new(config())
            .run(&valid_message(&name, &self.0, 3), |bytes| {
                let message = M::decode(bytes.as_slice()).map_err(|e| {
                    TestCaseError::fail(format!("{name}: a valid message does not decode: {e}"))
                })?;
                prop_assert_eq!(message.encode_to_vec(), bytes, "{}", name);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn arbitrary_valid_messages_round_trip() {
    visit_every_message(&mut ValidMessagesRoundTrip(descriptors()));
}

/// Through the bus and a consumer (in-memory transport, same dispatch as JetStream): a payload
/// that decodes reaches the handler once; one that does not never does and is dead-lettered
/// with a reason naming the message. Arbitrary headers change neither.
struct DispatchDeadLettersWhatDoesNotDecode {
    descriptors: BTreeMap<String, DescriptorProto>,
    runtime: tokio::runtime::Runtime,
}

impl MessageVisitor for DispatchDeadLettersWhatDoesNotDecode {
    fn visit<M: Message + PartialEq + Debug>(&mut self) {
        let name = M::full_name();
        let payloads = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            valid_message(&name, &self.descriptors, 2),
        ];
        let headers = proptest::collection::btree_map(
            prop_oneof![
                Just(header::TRACEPARENT.to_owned()),
                Just(header::CORRELATION_ID.to_owned()),
                Just(header::REPLY_TO.to_owned()),
                Just(header::KEY.to_owned()),
                Just(header::SENT_AT.to_owned()),
                "[A-Za-z-]{1,12}".prop_map(|s| s.to_owned()),
            ],
            any::<String>(),
            0..4,
        );
        // Fewer cases: each one runs a consumer.
        let config = Config {
            cases: (config().cases / 4).max(8),
            ..config()
        };
        let runtime = &self.runtime;
        TestRunner::new(config)
            .run(&(payloads, headers), |(payload, headers)| {
                let decodes = M::decode(payload.as_slice()).is_ok();
                let (handled, dead) = runtime.block_on(deliver::<M>(payload, headers));
                if decodes {
                    prop_assert_eq!(handled, 1, "{}: a valid payload is handled once", name);
                    prop_assert!(dead.is_empty(), "{}: dead-lettered {:?}", name, dead);
                } else {
                    prop_assert_eq!(
                        handled,
                        0,
                        "{}: an invalid payload reached the handler",
                        name
                    );
                    prop_assert_eq!(dead.len(), 1, "{}: one dead letter", name);
                    let reason = dead[0]
                        .header(header::DEAD_LETTER_REASON)
                        .unwrap_or_default();
                    prop_assert!(
                        reason.contains(&name) && reason.contains("does not decode"),
                        "{}: reason {:?}",
                        name,
                        reason
                    );
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Publishes one envelope named after `M` with `payload` and `headers` to a fresh in-memory
/// broker whose consumer handles `M`; returns how often the handler ran and the dead letters.
async fn deliver<M: Message>(
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
) -> (usize, Vec<Envelope>) {
    const SUBJECT: &str = "fuzz.events.Any";
    let memory = Memory::new("fuzz");
    let bus = Bus::new(Arc::new(memory.clone()));
    let shutdown = messaging::CancellationToken::new();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let subscription = Subscription::new("fuzz-consumer", SUBJECT).on(move |_: M, _| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let consumer = bus
        .subscribe(subscription, shutdown.clone())
        .await
        .expect("subscribe");
    let mut envelope = Envelope::new(format!("fuzz.{SUBJECT}"), &messaging::Empty {});
    envelope.name = M::full_name();
    envelope.payload = payload.into();
    envelope.headers.extend(headers);
    memory.publish(&envelope).await.expect("publish");
    // Settled means handled (acked) or dead-lettered; nothing here is retried.
    let settled = tokio::time::timeout(Duration::from_secs(5), async {
        while consumer.status.settled() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    shutdown.cancel();
    assert!(settled.is_ok(), "the message was never settled");
    let dead = memory.published_on(&messaging::dead_letter_subject("fuzz", "fuzz-consumer"));
    (handled.load(Ordering::SeqCst), dead)
}

#[test]
fn undecodable_payloads_never_reach_a_handler_and_are_dead_lettered_with_a_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    visit_every_message(&mut DispatchDeadLettersWhatDoesNotDecode {
        descriptors: descriptors(),
        runtime,
    });
}
