//! The SMS port: how a text leaves the system. The service depends only on [`SmsSender`]; the
//! default adapter ([`LogSmsSender`]) writes a structured log line, and a real gateway adapter
//! plugs in through [`NotificationsModule::new`](crate::NotificationsModule::new).
//!
//! A sender is called inside the transaction that records the notification, and the record
//! commits only if the send succeeded: a failed send leaves nothing behind and the message is
//! retried. The one window left — the send succeeded but the commit failed — would send again on
//! the retry; [`Sms::idempotency_key`] is stable for (order, kind) so a gateway that supports
//! idempotency keys drops that copy too.

use async_trait::async_trait;

/// One text to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// The recipient's number, as the customer registered it.
    pub to: String,
    /// The text.
    pub text: String,
    /// The order it is about (for logs and gateway metadata).
    pub order_id: String,
    /// The notification kind (`order-created`, ...).
    pub kind: String,
    /// `<order id>/<kind>`: the same for every attempt at the same notification.
    pub idempotency_key: String,
}

/// Why a text was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The gateway is unreachable or overloaded: try again later.
    #[error("SMS gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused this text for good (invalid number...): retrying cannot help.
    #[error("SMS rejected: {0}")]
    Rejected(String),
}

/// Sends texts. Implementations must be cheap to call concurrently.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    /// Sends one text; returns once the gateway accepted it.
    async fn send(&self, sms: &Sms) -> Result<(), SmsError>;
}

/// The default adapter: no gateway, a structured `info` log line per text (target
/// `notifications::sms`), so a deployment without an SMS provider still shows what would have
/// been sent. Every text is also recorded in the `notifications` table by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSmsSender;

#[async_trait]
impl SmsSender for LogSmsSender {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        tracing::info!(
            target: "notifications::sms",
            to = %sms.to,
            text = %sms.text,
            order_id = %sms.order_id,
            kind = %sms.kind,
            "SMS sent"
        );
        Ok(())
    }
}
