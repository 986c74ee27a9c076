//! The shared messaging crate.
//!
//! Services exchange protobuf messages (events, commands, replies, queries) wrapped in an
//! [`Envelope`] whose metadata travels in NATS headers. The [`Bus`] is the typed facade; a
//! [`Transport`] moves envelopes: [`jetstream::JetStream`] for real, [`memory::Memory`] for unit
//! tests. Consumers are durable, pull-based, acknowledge only after their handler succeeded,
//! retry with back-off and end in a dead-letter subject — never silently.

mod bus;
mod dispatch;
mod envelope;
mod error;
pub mod jetstream;
pub mod memory;
mod message;
#[cfg(test)]
mod proptests;
mod subscription;
mod tracecontext;
mod transport;

pub use bus::Bus;
pub use dispatch::dead_letter_subject;
pub use envelope::{Envelope, Outcome, PROTOBUF, TraceParent, header};
pub use error::{Error, Result};
pub use message::{Command, Empty, Event, Message, Query, Reply};
pub use subscription::{
    ConsumerPolicy, HandlerError, HandlerFuture, MessageContext, Subscription, with_state,
};
pub use tokio_util::sync::CancellationToken;
pub use tracecontext::{TraceHooks, current_trace, install_trace_hooks};
pub use transport::{ConsumerHandle, ConsumerStatus, ResponderFn, Transport};
