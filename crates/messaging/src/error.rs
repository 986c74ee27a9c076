//! The crate's one error type: callers branch on the kind (no responder, timeout, publish failed...).

use std::time::Duration;

/// Errors from publishing, requesting and subscribing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker did not confirm a publish (connection lost, stream missing, timeout...).
    /// The message may or may not be stored: callers retry, and the broker de-duplicates by id.
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    /// A query found nobody serving its subject.
    #[error("no responder for query {subject}")]
    NoResponders { subject: String },
    /// A query got no answer within its timeout.
    #[error("query {subject} timed out after {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    /// The responder answered with an error.
    #[error("query {subject} failed: {message}")]
    Remote { subject: String, message: String },
    /// A message could not be decoded or lacks a required header.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Stream or consumer provisioning failed.
    #[error("provisioning {what} failed: {reason}")]
    Provision { what: String, reason: String },
    /// Connecting to the broker failed.
    #[error("connecting to NATS at {url} failed: {reason}")]
    Connect { url: String, reason: String },
    /// The transport has been shut down.
    #[error("the transport is closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Publish { .. }
                | Error::NoResponders { .. }
                | Error::Timeout { .. }
                | Error::Connect { .. }
                | Error::Provision { .. }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
