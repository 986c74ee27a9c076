//! The stores domain: the event-sourced `Store` and `Product` aggregates.
//!
//! Everything here is pure: an aggregate's state is rebuilt from its events, and each operation
//! takes the current state and a command's arguments and answers with the events to record or a
//! domain error. No I/O, so every rule is tested with plain given/when/then unit tests. How the
//! events and snapshots are encoded for the event store lives in [`stored`].

pub mod product;
pub mod store;
mod stored;

pub use product::{Product, ProductError, ProductEvent};
pub use store::{Store, StoreError, StoreEvent};

/// "Blank" as a person means it: empty or only whitespace. The original only refused `""`, which
/// let a name of spaces through.
fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}
