//! The envelope: what travels on NATS. The payload is the protobuf encoding of one message; every
//! piece of metadata rides in NATS headers so the broker, the `nats` CLI and other languages can
//! read it without decoding the body.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::message::Message;

/// Header names. `Nats-Msg-Id` is JetStream's de-duplication key; the rest are ours.
pub mod header {
    /// JetStream de-duplication id (= envelope id).
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
    /// Fully qualified message name.
    pub const NAME: &str = "Message-Name";
    /// When the message was created (RFC 3339, UTC).
    pub const SENT_AT: &str = "Sent-At";
    /// The conversation the message belongs to (first message's id, or a saga id).
    pub const CORRELATION_ID: &str = "Correlation-Id";
    /// The id of the message whose handling produced this one.
    pub const CAUSATION_ID: &str = "Causation-Id";
    /// Ordering key (aggregate id).
    pub const KEY: &str = "Message-Key";
    /// For commands: the subject the reply must be published to.
    pub const REPLY_TO: &str = "Reply-To";
    /// For replies: `success` or `failure`.
    pub const REPLY_OUTCOME: &str = "Reply-Outcome";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// Payload encoding.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// For query answers: the responder's error text.
    pub const QUERY_ERROR: &str = "Query-Error";
    /// Dead letters: why the message was given up.
    pub const DEAD_LETTER_REASON: &str = "Dead-Letter-Reason";
    /// Dead letters: how many deliveries were attempted.
    pub const DEAD_LETTER_ATTEMPTS: &str = "Dead-Letter-Attempts";
    /// Dead letters: the durable consumer that gave up.
    pub const DEAD_LETTER_CONSUMER: &str = "Dead-Letter-Consumer";
    /// Dead letters: the id of the message that was given up.
    pub const DEAD_LETTER_ORIGINAL_ID: &str = "Dead-Letter-Original-Id";
    /// Dead letters: the subject the message was originally published to.
    pub const DEAD_LETTER_SUBJECT: &str = "Dead-Letter-Subject";
    /// Dead letters: when it was given up.
    pub const DEAD_LETTER_AT: &str = "Dead-Letter-At";
}

/// The content type of every payload we publish.
pub const PROTOBUF: &str = "application/protobuf";

/// Outcome of a command, carried in the `Reply-Outcome` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command did what it was asked.
    Success,
    /// The command was refused or failed; the saga compensates.
    Failure,
}

impl Outcome {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// Parses a header value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// A message ready to publish or just received: id, name, subject, payload and headers.
///
/// Serializable so an outbox can keep it in a table row until the broker confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (UUID v7: time-ordered, so ids sort by creation).
    pub id: Uuid,
    /// Fully qualified message name.
    pub name: String,
    /// Full NATS subject, prefix included.
    pub subject: String,
    /// Protobuf-encoded body.
    #[serde(with = "serde_bytes_b64")]
    pub payload: Bytes,
    /// Every header except the id and name, which have their own fields.
    pub headers: BTreeMap<String, String>,
}

impl Envelope {
    /// Wraps `message` for `subject` with a fresh id, the send time and a new trace.
    pub fn new<M: Message>(subject: impl Into<String>, message: &M) -> Self {
        let id = Uuid::now_v7();
        let mut headers = BTreeMap::new();
        headers.insert(header::SENT_AT.to_owned(), now_rfc3339());
        headers.insert(
            header::TRACEPARENT.to_owned(),
            crate::tracecontext::current_trace()
                .unwrap_or_else(TraceParent::new_root)
                .to_string(),
        );
        Envelope {
            id,
            name: M::message_name(),
            subject: subject.into(),
            payload: Bytes::from(message.encode_to_vec()),
            headers,
        }
    }

    /// Decodes the payload as `M`, checking the name first.
    pub fn decode<M: Message>(&self) -> Result<M> {
        let expected = M::message_name();
        if self.name != expected {
            return Err(Error::Malformed(format!(
                "expected {expected}, got {} (message {})",
                self.name, self.id
            )));
        }
        M::decode(self.payload.as_ref()).map_err(|e| {
            Error::Malformed(format!(
                "payload of {} ({}) does not decode: {e}",
                self.name, self.id
            ))
        })
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Sets a header, replacing an earlier value.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.insert(name.into(), value.into());
    }

    /// Builder form of [`set_header`](Self::set_header).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_header(name, value);
        self
    }

    /// The payload's content type. Protobuf is the default and is not written on the wire (it
    /// would cost ~36 bytes on every stored and delivered message); anything else is explicit.
    pub fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE).unwrap_or(PROTOBUF)
    }

    /// The ordering key, if any.
    pub fn key(&self) -> Option<&str> {
        self.header(header::KEY)
    }

    /// The correlation id. A message that starts a conversation carries no header (it would
    /// only repeat the id on every root message): its own id is the correlation id.
    pub fn correlation_id(&self) -> String {
        self.header(header::CORRELATION_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| self.id.to_string())
    }

    /// The causation id, if the message was caused by another one.
    pub fn causation_id(&self) -> Option<&str> {
        self.header(header::CAUSATION_ID)
    }

    /// When the message was created, if the header parses.
    pub fn sent_at(&self) -> Option<OffsetDateTime> {
        self.header(header::SENT_AT)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    }

    /// Marks this envelope as caused by `cause`: same correlation id, causation = cause's id, and
    /// the same trace (a child span id), so one checkout is one conversation and one trace.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.set_header(header::CORRELATION_ID, cause.correlation_id());
        self.set_header(header::CAUSATION_ID, cause.id.to_string());
        if let Some(parent) = cause
            .header(header::TRACEPARENT)
            .and_then(TraceParent::parse)
        {
            // Inside the handler of `cause` the current span continues its trace: name it as
            // the parent. Otherwise a new span id in the cause's trace.
            let traced = crate::tracecontext::current_trace()
                .filter(|current| current.trace_id == parent.trace_id)
                .unwrap_or_else(|| parent.child());
            self.set_header(header::TRACEPARENT, traced.to_string());
        }
        if let Some(state) = cause.header(header::TRACESTATE) {
            self.set_header(header::TRACESTATE, state.to_owned());
        }
        self
    }

    /// The W3C trace context, if present and well formed.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.header(header::TRACEPARENT)
            .and_then(TraceParent::parse)
    }
}

/// Milliseconds are enough for humans and latency metrics; every header byte is stored and sent
/// with every message. Written by hand (`2026-11-27T09:41:05.123Z`, always three fraction
/// digits): `time`'s general RFC 3339 formatter was a visible share of building an envelope.
fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let year = now.year();
    if !(0..=9999).contains(&year) {
        return now.format(&Rfc3339).unwrap_or_default();
    }
    let (hour, minute, second, milli) = now.to_hms_milli();
    let mut out = String::with_capacity(24);
    let mut digits = |value: u32, width: u32, sep: char| {
        for i in (0..width).rev() {
            let d = (value / 10u32.pow(i)) % 10;
            out.push(char::from(b'0' + d as u8));
        }
        out.push(sep);
    };
    digits(year as u32, 4, '-');
    digits(u32::from(u8::from(now.month())), 2, '-');
    digits(u32::from(now.day()), 2, 'T');
    digits(u32::from(hour), 2, ':');
    digits(u32::from(minute), 2, ':');
    digits(u32::from(second), 2, '.');
    digits(u32::from(milli), 3, 'Z');
    out
}

/// A W3C `traceparent` value: version 00, trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 128-bit trace id.
    pub trace_id: u128,
    /// 64-bit span id of the sender.
    pub span_id: u64,
    /// Trace flags (01 = sampled).
    pub flags: u8,
}

impl TraceParent {
    /// A new trace with a random id.
    pub fn new_root() -> Self {
        TraceParent {
            trace_id: Uuid::new_v4().as_u128(),
            span_id: random_span_id(),
            flags: 1,
        }
    }

    /// The same trace, a new span.
    pub fn child(&self) -> Self {
        TraceParent {
            span_id: random_span_id(),
            ..*self
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl std::fmt::Display for TraceParent {
    /// `00-<trace id>-<span id>-<flags>` in lowercase hex, written into a stack buffer (one
    /// is formatted for every message sent).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        fn put(out: &mut [u8], value: u128) {
            let n = out.len();
            for (i, b) in out.iter_mut().enumerate() {
                *b = HEX[((value >> (4 * (n - 1 - i))) & 0xf) as usize];
            }
        }
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put(&mut buf[3..35], self.trace_id);
        put(&mut buf[36..52], u128::from(self.span_id));
        put(&mut buf[53..55], u128::from(self.flags));
        f.write_str(std::str::from_utf8(&buf).map_err(|_| std::fmt::Error)?)
    }
}

fn random_span_id() -> u64 {
    let v = Uuid::new_v4().as_u64_pair().0;
    if v == 0 { 1 } else { v }
}

/// Payload bytes as base64 in JSON (used when an outbox row or a dead letter is shown as JSON).
mod serde_bytes_b64 {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text)
            .map(Bytes::from)
            .ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }

    pub(super) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(super) fn decode(input: &str) -> Option<Vec<u8>> {
        let clean: Vec<u8> = input.bytes().filter(|b| *b != b'=').collect();
        let mut out = Vec::with_capacity(clean.len() * 3 / 4);
        for chunk in clean.chunks(4) {
            let mut n: u32 = 0;
            for (i, c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceParent::new_root();
        let parsed = TraceParent::parse(&root.to_string()).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert!(TraceParent::parse("00-zz-11-01").is_none());
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-0000000000000001-01").is_none()
        );
    }

    #[test]
    fn traceparent_is_written_in_the_w3c_form() {
        let tp = TraceParent {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0x00f067aa0ba902b7,
            flags: 1,
        };
        assert_eq!(
            tp.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn sent_at_is_rfc3339_in_milliseconds() {
        let before = OffsetDateTime::now_utc();
        let text = now_rfc3339();
        let parsed = OffsetDateTime::parse(&text, &Rfc3339).unwrap();
        assert_eq!(text.len(), 24, "{text}");
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parsed.nanosecond() % 1_000_000, 0);
        let lag = parsed
            - before
                .replace_nanosecond(before.millisecond() as u32 * 1_000_000)
                .unwrap();
        assert!(
            lag >= time::Duration::ZERO && lag < time::Duration::seconds(1),
            "{text}"
        );
        let round_trip = parsed.format(&Rfc3339).unwrap();
        assert_eq!(
            OffsetDateTime::parse(&round_trip, &Rfc3339).unwrap(),
            parsed
        );
    }

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..20u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let text = serde_bytes_b64::encode(&data);
            assert_eq!(serde_bytes_b64::decode(&text).unwrap(), data);
        }
        assert_eq!(serde_bytes_b64::encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn outcome_parses_its_own_text() {
        for o in [Outcome::Success, Outcome::Failure] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("SUCCESS"), None);
    }
}
