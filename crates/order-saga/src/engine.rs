//! A generic saga orchestrator. A saga is described once as a [`SagaDefinition`]: typed data
//! (stored as JSON) and ordered [`Step`]s, each with an optional forward action and an optional
//! compensation that build one command from the data, and optional reply hooks that fold a
//! reply into the data. The engine sends each step's command, waits for the reply that answers
//! it, goes forwards on success and backwards through the compensations on failure or when a
//! step's deadline passes.
//!
//! - [`definition`]: the typed step description;
//! - [`decision`]: the pure core (state + start / reply / timeout → new state + command);
//! - [`Orchestrator`]: the same against PostgreSQL (saga store with versions, command log,
//!   inbox, outbox — one transaction per input) and the deadline sweeper.
//!
//! Nothing here knows the create-order saga; it only needs a definition.

pub mod decision;
pub mod definition;
mod orchestrator;
mod postgres;

pub use decision::{Decision, Effect, Pending, Record, Settlement, Status};
pub use definition::{Mode, SagaDefinition, Step};
pub use orchestrator::{EngineError, Orchestrator, SagaData, SagaView, Settings};
pub use postgres::CommandRow;
