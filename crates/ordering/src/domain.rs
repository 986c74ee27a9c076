//! The order aggregate: pure state plus decisions. A decision looks at the current state and a
//! command and answers with the events to record, or with the domain rule it would break; the
//! state only ever changes by applying recorded events. No I/O happens here.
//!
//! The life of an order (spec modules.md §5, with the guards the original lacked, weaknesses.md
//! A11/F4):
//!
//! ```text
//! (none) --create--> pending --approve--> approved --ready--> ready --complete--> completed
//!                       |  \--reject--> rejected
//!                       \--cancel--> cancelled
//! ```
//!
//! A repeated decision that would leave the order exactly as it is (approve with the same
//! shopping list, reject a rejected order, ...) records nothing and succeeds: the saga may send a
//! command again after a timeout, and its second answer must match the first.

mod codec;

pub use codec::ORDER_TYPE;

/// Where an order stands. Rendered in the REST API with the original's spellings (note the
/// double "l" of `cancelled`, spec api.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Created, waiting for the create-order saga.
    Pending,
    /// The saga failed and compensated.
    Rejected,
    /// The saga succeeded: shopping list made, payment confirmed.
    Approved,
    /// The depot finished shopping; an invoice is being raised.
    Ready,
    /// The invoice was paid.
    Completed,
    /// Cancelled by the customer while still pending.
    Cancelled,
}

impl OrderStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Approved => "approved",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(text: &str) -> Option<Self> {
        [
            OrderStatus::Pending,
            OrderStatus::Rejected,
            OrderStatus::Approved,
            OrderStatus::Ready,
            OrderStatus::Completed,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One order line, with the names and price captured when the item was put in the basket.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// The product.
    pub product_id: String,
    /// The store selling it.
    pub store_id: String,
    /// The store's name at the time.
    pub store_name: String,
    /// The product's name at the time.
    pub product_name: String,
    /// Unit price.
    pub price: f64,
    /// How many.
    pub quantity: i32,
}

/// The state of one order. `status` is `None` while the order does not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    /// Who ordered.
    pub customer_id: String,
    /// The payment authorization the order is paid with.
    pub payment_id: String,
    /// The depot shopping list, once the saga made one and approved the order.
    pub shopping_id: String,
    /// The paid invoice, once the order is completed.
    pub invoice_id: String,
    /// The lines.
    pub items: Vec<OrderItem>,
    /// Where the order stands.
    pub status: Option<OrderStatus>,
}

/// What can happen to an order; each is recorded in the order's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// The order was placed.
    Created {
        /// Who ordered.
        customer_id: String,
        /// The payment authorization.
        payment_id: String,
        /// The lines.
        items: Vec<OrderItem>,
    },
    /// The saga rejected it.
    Rejected,
    /// The saga approved it; the depot shops with list `shopping_id`.
    Approved {
        /// The depot shopping list.
        shopping_id: String,
    },
    /// The customer cancelled it.
    Canceled,
    /// The depot finished shopping; `total` is what the invoice asks for.
    Readied {
        /// Σ price × quantity.
        total: f64,
    },
    /// Invoice `invoice_id` was paid.
    Completed {
        /// The paid invoice.
        invoice_id: String,
    },
}

/// A rule a command would break. The texts are the API's messages (spec api.md §2.6); the
/// guards after creation are ours (the original had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Create on an order that exists.
    #[error("the order cannot be recreated")]
    AlreadyExists,
    /// Create without lines.
    #[error("the order has no items")]
    NoItems,
    /// Create without a customer.
    #[error("the customer id cannot be blank")]
    BlankCustomer,
    /// Create without a payment.
    #[error("the payment id cannot be blank")]
    BlankPayment,
    /// A line without a product.
    #[error("the item product id cannot be blank")]
    BlankProduct,
    /// A line without a store.
    #[error("the item store id cannot be blank")]
    BlankStore,
    /// A line with a quantity of zero or less.
    #[error("the item quantity must be greater than zero")]
    BadQuantity,
    /// A line with a negative (or not finite) price.
    #[error("the item price cannot be negative")]
    BadPrice,
    /// A command on an order that was never created.
    #[error("the order does not exist")]
    NotFound,
    /// Reject when not pending.
    #[error("the order cannot be rejected")]
    CannotReject,
    /// Approve when not pending, or approved with another list.
    #[error("the order cannot be approved")]
    CannotApprove,
    /// Approve without a shopping list.
    #[error("the shopping id cannot be blank")]
    BlankShopping,
    /// Cancel when not pending.
    #[error("the order cannot be cancelled")]
    CannotCancel,
    /// Ready while the saga has not approved the order yet: may resolve itself shortly.
    #[error("the order is not approved yet")]
    NotApprovedYet,
    /// Ready when rejected or cancelled.
    #[error("the order cannot be readied")]
    CannotReady,
    /// Complete when not ready, or completed with another invoice.
    #[error("the order cannot be completed")]
    CannotComplete,
    /// Complete without an invoice.
    #[error("the invoice id cannot be blank")]
    BlankInvoice,
}

/// What a decision returns: the events to record (empty: nothing to change).
pub type Decision = Result<Vec<OrderEvent>, OrderError>;

impl Order {
    /// Whether the order was created.
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// The amount the order costs: Σ price × quantity.
    pub fn total(&self) -> f64 {
        self.items
            .iter()
            .map(|i| i.price * f64::from(i.quantity))
            .sum()
    }

    /// Places the order. Checks run in the original's order (items, customer, payment), then
    /// the line checks the original lacked.
    pub fn create(&self, customer_id: &str, payment_id: &str, items: Vec<OrderItem>) -> Decision {
        if self.exists() {
            return Err(OrderError::AlreadyExists);
        }
        if items.is_empty() {
            return Err(OrderError::NoItems);
        }
        if customer_id.trim().is_empty() {
            return Err(OrderError::BlankCustomer);
        }
        if payment_id.trim().is_empty() {
            return Err(OrderError::BlankPayment);
        }
        for item in &items {
            if item.product_id.trim().is_empty() {
                return Err(OrderError::BlankProduct);
            }
            if item.store_id.trim().is_empty() {
                return Err(OrderError::BlankStore);
            }
            if item.quantity <= 0 {
                return Err(OrderError::BadQuantity);
            }
            if !item.price.is_finite() || item.price < 0.0 {
                return Err(OrderError::BadPrice);
            }
        }
        Ok(vec![OrderEvent::Created {
            customer_id: customer_id.to_owned(),
            payment_id: payment_id.to_owned(),
            items,
        }])
    }

    /// The saga's compensation. A cancelled order is already out of the way, so rejecting it
    /// succeeds without changing it: the saga must be able to finish compensating.
    pub fn reject(&self) -> Decision {
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Pending) => Ok(vec![OrderEvent::Rejected]),
            Some(OrderStatus::Rejected | OrderStatus::Cancelled) => Ok(vec![]),
            Some(_) => Err(OrderError::CannotReject),
        }
    }

    /// The saga's last step. Refused unless pending: in particular an order cancelled while
    /// the saga ran stays cancelled, and the refusal makes the saga compensate.
    pub fn approve(&self, shopping_id: &str) -> Decision {
        if shopping_id.trim().is_empty() {
            return Err(OrderError::BlankShopping);
        }
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Pending) => Ok(vec![OrderEvent::Approved {
                shopping_id: shopping_id.to_owned(),
            }]),
            Some(OrderStatus::Approved) if self.shopping_id == shopping_id => Ok(vec![]),
            Some(_) => Err(OrderError::CannotApprove),
        }
    }

    /// The customer's cancel: only while pending (an unknown order cannot be cancelled either).
    pub fn cancel(&self) -> Decision {
        match self.status {
            Some(OrderStatus::Pending) => Ok(vec![OrderEvent::Canceled]),
            _ => Err(OrderError::CannotCancel),
        }
    }

    /// The depot finished shopping: only an approved order becomes ready. A pending order may
    /// still be approved (the saga's approval can trail a quick bot), which the caller may wait
    /// for; a ready or completed order was readied before.
    pub fn ready(&self) -> Decision {
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Approved) => Ok(vec![OrderEvent::Readied {
                total: self.total(),
            }]),
            Some(OrderStatus::Pending) => Err(OrderError::NotApprovedYet),
            Some(OrderStatus::Ready | OrderStatus::Completed) => Ok(vec![]),
            Some(OrderStatus::Rejected | OrderStatus::Cancelled) => Err(OrderError::CannotReady),
        }
    }

    /// Invoice `invoice_id` was paid: only a ready order completes.
    pub fn complete(&self, invoice_id: &str) -> Decision {
        if invoice_id.trim().is_empty() {
            return Err(OrderError::BlankInvoice);
        }
        match self.status {
            None => Err(OrderError::NotFound),
            Some(OrderStatus::Ready) => Ok(vec![OrderEvent::Completed {
                invoice_id: invoice_id.to_owned(),
            }]),
            Some(OrderStatus::Completed) if self.invoice_id == invoice_id => Ok(vec![]),
            Some(_) => Err(OrderError::CannotComplete),
        }
    }

    /// Applies one recorded event.
    pub fn apply_event(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Created {
                customer_id,
                payment_id,
                items,
            } => {
                self.customer_id.clone_from(customer_id);
                self.payment_id.clone_from(payment_id);
                self.items.clone_from(items);
                self.status = Some(OrderStatus::Pending);
            }
            OrderEvent::Rejected => self.status = Some(OrderStatus::Rejected),
            OrderEvent::Approved { shopping_id } => {
                self.shopping_id.clone_from(shopping_id);
                self.status = Some(OrderStatus::Approved);
            }
            OrderEvent::Canceled => self.status = Some(OrderStatus::Cancelled),
            OrderEvent::Readied { .. } => self.status = Some(OrderStatus::Ready),
            OrderEvent::Completed { invoice_id } => {
                self.invoice_id.clone_from(invoice_id);
                self.status = Some(OrderStatus::Completed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(product: &str, price: f64, quantity: i32) -> OrderItem {
        OrderItem {
            product_id: product.into(),
            store_id: "s1".into(),
            store_name: "Store".into(),
            product_name: format!("Product {product}"),
            price,
            quantity,
        }
    }

    fn created() -> OrderEvent {
        OrderEvent::Created {
            customer_id: "c1".into(),
            payment_id: "p1".into(),
            items: vec![item("a", 2.5, 2), item("b", 10.0, 1)],
        }
    }

    /// Given these events happened, the order's state.
    fn given(events: &[OrderEvent]) -> Order {
        let mut order = Order::default();
        for e in events {
            order.apply_event(e);
        }
        order
    }

    #[test]
    fn create_places_a_pending_order() {
        let order = given(&[]);
        let events = order
            .create("c1", "p1", vec![item("a", 2.5, 2), item("b", 10.0, 1)])
            .unwrap();
        assert_eq!(events, vec![created()]);
        let after = given(&events);
        assert_eq!(after.status, Some(OrderStatus::Pending));
        assert_eq!(after.customer_id, "c1");
        assert_eq!(after.total(), 15.0);
    }

    #[test]
    fn create_checks_in_the_original_order_then_each_line() {
        let order = given(&[]);
        assert_eq!(order.create("", "", vec![]), Err(OrderError::NoItems));
        assert_eq!(
            order.create(" ", "", vec![item("a", 1.0, 1)]),
            Err(OrderError::BlankCustomer)
        );
        assert_eq!(
            order.create("c", "", vec![item("a", 1.0, 1)]),
            Err(OrderError::BlankPayment)
        );
        assert_eq!(
            order.create("c", "p", vec![item("", 1.0, 1)]),
            Err(OrderError::BlankProduct)
        );
        let mut no_store = item("a", 1.0, 1);
        no_store.store_id.clear();
        assert_eq!(
            order.create("c", "p", vec![no_store]),
            Err(OrderError::BlankStore)
        );
        assert_eq!(
            order.create("c", "p", vec![item("a", 1.0, 0)]),
            Err(OrderError::BadQuantity)
        );
        assert_eq!(
            order.create("c", "p", vec![item("a", -0.01, 1)]),
            Err(OrderError::BadPrice)
        );
        assert_eq!(
            order.create("c", "p", vec![item("a", f64::NAN, 1)]),
            Err(OrderError::BadPrice)
        );
        assert!(order.create("c", "p", vec![item("a", 0.0, 1)]).is_ok());
    }

    #[test]
    fn an_existing_order_cannot_be_recreated() {
        let order = given(&[created()]);
        assert_eq!(
            order.create("c1", "p1", vec![item("a", 1.0, 1)]),
            Err(OrderError::AlreadyExists)
        );
    }

    #[test]
    fn approve_only_a_pending_order_and_keep_the_shopping_id() {
        let order = given(&[created()]);
        let events = order.approve("L1").unwrap();
        assert_eq!(
            events,
            vec![OrderEvent::Approved {
                shopping_id: "L1".into()
            }]
        );
        let approved = given(&[created(), events[0].clone()]);
        assert_eq!(approved.status, Some(OrderStatus::Approved));
        assert_eq!(approved.shopping_id, "L1");
        assert_eq!(
            approved.approve("L1"),
            Ok(vec![]),
            "the same approval again"
        );
        assert_eq!(approved.approve("L2"), Err(OrderError::CannotApprove));
        assert_eq!(order.approve(" "), Err(OrderError::BlankShopping));
        assert_eq!(given(&[]).approve("L1"), Err(OrderError::NotFound));
    }

    #[test]
    fn a_cancelled_order_stays_cancelled_when_the_saga_approves_it() {
        let order = given(&[created(), OrderEvent::Canceled]);
        assert_eq!(order.status, Some(OrderStatus::Cancelled));
        assert_eq!(order.approve("L1"), Err(OrderError::CannotApprove));
        // ... and the saga's compensation still succeeds, changing nothing.
        assert_eq!(order.reject(), Ok(vec![]));
    }

    #[test]
    fn reject_only_a_pending_order() {
        assert_eq!(given(&[created()]).reject(), Ok(vec![OrderEvent::Rejected]));
        assert_eq!(
            given(&[created(), OrderEvent::Rejected]).reject(),
            Ok(vec![])
        );
        let approved = given(&[
            created(),
            OrderEvent::Approved {
                shopping_id: "L".into(),
            },
        ]);
        assert_eq!(approved.reject(), Err(OrderError::CannotReject));
        assert_eq!(given(&[]).reject(), Err(OrderError::NotFound));
    }

    #[test]
    fn cancel_only_a_pending_order() {
        assert_eq!(given(&[created()]).cancel(), Ok(vec![OrderEvent::Canceled]));
        assert_eq!(given(&[]).cancel(), Err(OrderError::CannotCancel));
        for later in [
            OrderEvent::Canceled,
            OrderEvent::Rejected,
            OrderEvent::Approved {
                shopping_id: "L".into(),
            },
        ] {
            assert_eq!(
                given(&[created(), later]).cancel(),
                Err(OrderError::CannotCancel)
            );
        }
    }

    #[test]
    fn ready_only_an_approved_order_with_its_total() {
        let approved = [
            created(),
            OrderEvent::Approved {
                shopping_id: "L".into(),
            },
        ];
        assert_eq!(
            given(&approved).ready(),
            Ok(vec![OrderEvent::Readied { total: 15.0 }])
        );
        let mut ready = approved.to_vec();
        ready.push(OrderEvent::Readied { total: 15.0 });
        assert_eq!(given(&ready).status, Some(OrderStatus::Ready));
        assert_eq!(given(&ready).ready(), Ok(vec![]));
        assert_eq!(given(&[created()]).ready(), Err(OrderError::NotApprovedYet));
        assert_eq!(
            given(&[created(), OrderEvent::Canceled]).ready(),
            Err(OrderError::CannotReady)
        );
        assert_eq!(
            given(&[created(), OrderEvent::Rejected]).ready(),
            Err(OrderError::CannotReady)
        );
        assert_eq!(given(&[]).ready(), Err(OrderError::NotFound));
    }

    #[test]
    fn complete_only_a_ready_order_with_its_invoice() {
        let ready = [
            created(),
            OrderEvent::Approved {
                shopping_id: "L".into(),
            },
            OrderEvent::Readied { total: 15.0 },
        ];
        let events = given(&ready).complete("I1").unwrap();
        assert_eq!(
            events,
            vec![OrderEvent::Completed {
                invoice_id: "I1".into()
            }]
        );
        let mut done = ready.to_vec();
        done.extend(events);
        let completed = given(&done);
        assert_eq!(completed.status, Some(OrderStatus::Completed));
        assert_eq!(completed.invoice_id, "I1");
        assert_eq!(completed.complete("I1"), Ok(vec![]));
        assert_eq!(completed.complete("I2"), Err(OrderError::CannotComplete));
        assert_eq!(
            given(&ready[..2]).complete("I1"),
            Err(OrderError::CannotComplete)
        );
        assert_eq!(given(&ready).complete(""), Err(OrderError::BlankInvoice));
        assert_eq!(given(&[]).complete("I1"), Err(OrderError::NotFound));
    }

    #[test]
    fn statuses_round_trip_their_api_spelling() {
        for s in [
            OrderStatus::Pending,
            OrderStatus::Rejected,
            OrderStatus::Approved,
            OrderStatus::Ready,
            OrderStatus::Completed,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::Cancelled.as_str(), "cancelled");
        assert_eq!(OrderStatus::parse(""), None);
    }
}
