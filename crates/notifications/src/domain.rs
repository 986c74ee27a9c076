//! What a notification is: which order events a customer is told about, what the text says and
//! when nothing can be sent. Pure — no I/O — so every rule is tested without a database.

use std::fmt;

/// The order notifications a customer receives. One per (order, kind), ever: the table's unique
/// key turns a second event of the same kind into a no-op, so a customer is never texted twice
/// about the same thing.
///
/// `OrderApproved` and `OrderCompleted` are deliberately not notified: approval follows the
/// "order received" text within seconds, and completion happens while the customer is at the
/// counter paying. `OrderRejected` is: the customer was told the order was received and must
/// learn that it will not come (the original never published it, spec flows.md F23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// `ordering.v1.OrderCreated`: the order was received.
    OrderCreated,
    /// `ordering.v1.OrderReadied`: the order is ready for pickup.
    OrderReady,
    /// `ordering.v1.OrderCanceled`: the order was canceled.
    OrderCanceled,
    /// `ordering.v1.OrderRejected`: the order could not be accepted.
    OrderRejected,
}

impl NotificationKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::OrderCreated,
        NotificationKind::OrderReady,
        NotificationKind::OrderCanceled,
        NotificationKind::OrderRejected,
    ];

    /// The stored and displayed name (`kind` column and JSON field).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::OrderCreated => "order-created",
            NotificationKind::OrderReady => "order-ready",
            NotificationKind::OrderCanceled => "order-canceled",
            NotificationKind::OrderRejected => "order-rejected",
        }
    }

    /// The text sent to the customer.
    pub fn text(self, customer_name: &str, order_id: &str) -> String {
        let name = customer_name.trim();
        let greeting = if name.is_empty() {
            "Hello".to_owned()
        } else {
            format!("Hello {name}")
        };
        match self {
            NotificationKind::OrderCreated => format!(
                "{greeting}, we have received your order {order_id}. \
                 We will text you again when it is ready for pickup."
            ),
            NotificationKind::OrderReady => {
                format!("{greeting}, your order {order_id} is ready for pickup.")
            }
            NotificationKind::OrderCanceled => {
                format!("{greeting}, your order {order_id} has been canceled.")
            }
            NotificationKind::OrderRejected => {
                format!("{greeting}, we are sorry: your order {order_id} could not be accepted.")
            }
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order event worth a text: which order, whose, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNotice {
    /// The order the event is about.
    pub order_id: String,
    /// The customer who placed it.
    pub customer_id: String,
    /// What to tell them.
    pub kind: NotificationKind,
}

/// Why an event cannot be turned into a notification at all (the message is malformed: retrying
/// cannot help, so it is dead-lettered where someone will see it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNotice {
    /// The event names no order.
    #[error("the event has no order id")]
    NoOrder,
    /// The event names no customer to text.
    #[error("order {0}: the event has no customer id")]
    NoCustomer(String),
}

impl OrderNotice {
    /// A notice, checked: both ids are required.
    pub fn new(
        order_id: &str,
        customer_id: &str,
        kind: NotificationKind,
    ) -> Result<Self, InvalidNotice> {
        let order_id = order_id.trim();
        let customer_id = customer_id.trim();
        if order_id.is_empty() {
            return Err(InvalidNotice::NoOrder);
        }
        if customer_id.is_empty() {
            return Err(InvalidNotice::NoCustomer(order_id.to_owned()));
        }
        Ok(OrderNotice {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
            kind,
        })
    }
}

/// What we know of a customer: enough to text them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Customer id.
    pub id: String,
    /// Display name (may be empty).
    pub name: String,
    /// Where texts go.
    pub sms_number: String,
}

/// A text ready to be sent and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The number it goes to.
    pub to: String,
    /// What it says.
    pub text: String,
}

/// Why a notice was not sent although the event was fine. The message is acked: no retry can
/// produce a number that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    /// Neither the cache nor the customers service knows the customer (an order created over
    /// REST for an unknown customer id; the saga rejects it).
    #[error("customer {0} is unknown")]
    UnknownCustomer(String),
    /// The customer has no SMS number on file.
    #[error("customer {0} has no SMS number")]
    NoNumber(String),
}

/// Decides the text for `notice` to `recipient` (`None`: the customer is unknown).
pub fn compose(notice: &OrderNotice, recipient: Option<&Recipient>) -> Result<Message, Unsendable> {
    let recipient =
        recipient.ok_or_else(|| Unsendable::UnknownCustomer(notice.customer_id.clone()))?;
    let to = recipient.sms_number.trim();
    if to.is_empty() {
        return Err(Unsendable::NoNumber(recipient.id.clone()));
    }
    Ok(Message {
        to: to.to_owned(),
        text: notice.kind.text(&recipient.name, &notice.order_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Recipient {
        Recipient {
            id: "c1".into(),
            name: "Ada".into(),
            sms_number: " 555-0100 ".into(),
        }
    }

    #[test]
    fn a_notice_needs_an_order_and_a_customer() {
        assert_eq!(
            OrderNotice::new(" ", "c1", NotificationKind::OrderCreated),
            Err(InvalidNotice::NoOrder)
        );
        assert_eq!(
            OrderNotice::new("o1", "", NotificationKind::OrderReady),
            Err(InvalidNotice::NoCustomer("o1".into()))
        );
        let notice = OrderNotice::new(" o1 ", "c1", NotificationKind::OrderReady).unwrap();
        assert_eq!(notice.order_id, "o1");
    }

    #[test]
    fn the_text_names_the_customer_and_the_order() {
        let notice = OrderNotice::new("o1", "c1", NotificationKind::OrderReady).unwrap();
        let message = compose(&notice, Some(&ada())).unwrap();
        assert_eq!(message.to, "555-0100");
        assert_eq!(
            message.text,
            "Hello Ada, your order o1 is ready for pickup."
        );
    }

    #[test]
    fn every_kind_has_its_own_name_and_text() {
        let names: std::collections::HashSet<_> =
            NotificationKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), NotificationKind::ALL.len());
        for kind in NotificationKind::ALL {
            let text = kind.text("", "o9");
            assert!(text.starts_with("Hello, "), "{text}");
            assert!(text.contains("o9"), "{text}");
        }
        assert!(
            NotificationKind::OrderCanceled
                .text("Bo", "o")
                .contains("canceled")
        );
        assert!(
            NotificationKind::OrderRejected
                .text("Bo", "o")
                .contains("could not be accepted")
        );
        assert!(
            NotificationKind::OrderCreated
                .text("Bo", "o")
                .contains("received")
        );
    }

    #[test]
    fn nothing_is_sent_without_a_customer_or_a_number() {
        let notice = OrderNotice::new("o1", "c1", NotificationKind::OrderCreated).unwrap();
        assert_eq!(
            compose(&notice, None),
            Err(Unsendable::UnknownCustomer("c1".into()))
        );
        let silent = Recipient {
            sms_number: "  ".into(),
            ..ada()
        };
        assert_eq!(
            compose(&notice, Some(&silent)),
            Err(Unsendable::NoNumber("c1".into()))
        );
    }
}
