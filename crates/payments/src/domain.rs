//! Payment authorizations and invoices as pure decisions, tested without I/O.
//!
//! A *payment* is what a customer authorizes before checkout (an amount it may be charged);
//! the create-order saga later confirms it covers the order total. An *invoice* is what the
//! customer owes once the order is ready: `pending` until it is `paid`, or `canceled` with its
//! order. Each decision checks the rules, changes the state and returns the domain event it
//! raised or a domain error whose text is the API's message.

/// Rounding slack when comparing money: amounts are IEEE doubles on the wire, and the saga's
/// total (Σ quantity × price) can land a few ulps above the sum a client typed in (3 × 1.1 is
/// 3.3000000000000003). Half of the smallest unit the original stored (4 decimals) is far
/// above float noise and far below any real price difference.
pub const AMOUNT_TOLERANCE: f64 = 0.00005;

/// Whitespace alone is as blank as nothing.
fn is_blank(value: &str) -> bool {
    value.trim().is_empty()
}

/// A payment authorization: `customer_id` may be charged up to `amount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Server-generated id the customer passes at checkout.
    pub id: String,
    /// Who authorized it.
    pub customer_id: String,
    /// The most it covers; never negative.
    pub amount: f64,
}

/// Why a payment was refused or not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum PaymentError {
    /// Authorize without a customer.
    #[error("the customer id cannot be blank")]
    BlankCustomerId,
    /// Authorize a negative amount.
    #[error("the payment amount cannot be negative")]
    NegativeAmount,
    /// Authorize `NaN` or an infinity (reachable through numbers sent as strings).
    #[error("the payment amount must be a finite number")]
    NotFinite,
    /// Confirm for more than was authorized.
    #[error("payment cannot be confirmed: it covers {authorized}, the order needs {required}")]
    Insufficient {
        /// What the payment covers.
        authorized: f64,
        /// What the confirmation asked for.
        required: f64,
    },
}

/// Checks an amount of money: finite, then not negative.
fn check_amount<E>(amount: f64, not_finite: E, negative: E) -> Result<(), E> {
    if !amount.is_finite() {
        Err(not_finite)
    } else if amount < 0.0 {
        Err(negative)
    } else {
        Ok(())
    }
}

impl Payment {
    /// A new authorization. Checked in this order: customer id, amount.
    pub fn authorize(
        id: impl Into<String>,
        customer_id: impl Into<String>,
        amount: f64,
    ) -> Result<Payment, PaymentError> {
        let customer_id = customer_id.into();
        if is_blank(&customer_id) {
            return Err(PaymentError::BlankCustomerId);
        }
        check_amount(
            amount,
            PaymentError::NotFinite,
            PaymentError::NegativeAmount,
        )?;
        Ok(Payment {
            id: id.into(),
            customer_id,
            amount,
        })
    }

    /// Whether the payment covers `required` (the order total the saga sends). A required
    /// amount that is not a number is never covered.
    pub fn confirm(&self, required: f64) -> Result<(), PaymentError> {
        if required.is_finite() && self.amount + AMOUNT_TOLERANCE >= required {
            Ok(())
        } else {
            Err(PaymentError::Insufficient {
                authorized: self.amount,
                required,
            })
        }
    }
}

/// Where an invoice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Waiting for the customer to pay.
    Pending,
    /// Paid; final.
    Paid,
    /// Its order was cancelled before payment; final.
    Canceled,
}

impl InvoiceStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Pending => "pending",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Canceled => "canceled",
        }
    }

    /// Reads the stored text; every status we write reads back (the original could not read
    /// `canceled`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(InvoiceStatus::Pending),
            "paid" => Some(InvoiceStatus::Paid),
            "canceled" => Some(InvoiceStatus::Canceled),
            _ => None,
        }
    }
}

/// What a customer owes for an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    /// Equals the order id (one invoice per order).
    pub id: String,
    /// The order invoiced.
    pub order_id: String,
    /// The order total; never negative.
    pub amount: f64,
    /// Pending, paid or canceled.
    pub status: InvoiceStatus,
}

/// What happened to an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceEvent {
    /// The customer paid; ordering completes the order.
    Paid {
        /// The invoice.
        id: String,
        /// Its order.
        order_id: String,
    },
    /// The order was cancelled before payment.
    Canceled {
        /// The invoice.
        id: String,
    },
}

/// Why an invoice decision was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// Invoice an order without an id.
    #[error("the order id cannot be blank")]
    BlankOrderId,
    /// Invoice a negative total.
    #[error("the invoice amount cannot be negative")]
    NegativeAmount,
    /// Invoice `NaN` or an infinity.
    #[error("the invoice amount must be a finite number")]
    NotFinite,
    /// Pay an invoice that is not pending (the API's text).
    #[error("invoice cannot be paid for")]
    CannotBePaid,
    /// Cancel an invoice that is not pending.
    #[error("invoice cannot be canceled")]
    CannotBeCanceled,
}

impl Invoice {
    /// The pending invoice of a ready order; its id is the order id, so invoicing one order
    /// twice names the same invoice.
    pub fn create(order_id: impl Into<String>, amount: f64) -> Result<Invoice, InvoiceError> {
        let order_id = order_id.into();
        if is_blank(&order_id) {
            return Err(InvoiceError::BlankOrderId);
        }
        check_amount(
            amount,
            InvoiceError::NotFinite,
            InvoiceError::NegativeAmount,
        )?;
        Ok(Invoice {
            id: order_id.clone(),
            order_id,
            amount,
            status: InvoiceStatus::Pending,
        })
    }

    /// Pays a pending invoice.
    pub fn pay(&mut self) -> Result<InvoiceEvent, InvoiceError> {
        if self.status != InvoiceStatus::Pending {
            return Err(InvoiceError::CannotBePaid);
        }
        self.status = InvoiceStatus::Paid;
        Ok(InvoiceEvent::Paid {
            id: self.id.clone(),
            order_id: self.order_id.clone(),
        })
    }

    /// Cancels a pending invoice.
    pub fn cancel(&mut self) -> Result<InvoiceEvent, InvoiceError> {
        if self.status != InvoiceStatus::Pending {
            return Err(InvoiceError::CannotBeCanceled);
        }
        self.status = InvoiceStatus::Canceled;
        Ok(InvoiceEvent::Canceled {
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(amount: f64) -> Payment {
        Payment::authorize("p-1", "c-1", amount).unwrap()
    }

    fn invoice(status: InvoiceStatus) -> Invoice {
        Invoice {
            id: "o-1".into(),
            order_id: "o-1".into(),
            amount: 49.95,
            status,
        }
    }

    #[test]
    fn authorize_keeps_customer_and_amount() {
        assert_eq!(
            Payment::authorize("p-1", "c-1", 200.0),
            Ok(Payment {
                id: "p-1".into(),
                customer_id: "c-1".into(),
                amount: 200.0
            })
        );
        assert_eq!(payment(0.0).amount, 0.0, "zero is allowed");
        assert_eq!(payment(150_000.0).amount, 150_000.0);
    }

    #[test]
    fn authorize_checks_customer_then_amount() {
        assert_eq!(
            Payment::authorize("p-1", " ", -1.0),
            Err(PaymentError::BlankCustomerId)
        );
        assert_eq!(
            Payment::authorize("p-1", "c-1", -0.01),
            Err(PaymentError::NegativeAmount)
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                Payment::authorize("p-1", "c-1", bad),
                Err(PaymentError::NotFinite)
            );
        }
        assert_eq!(
            PaymentError::BlankCustomerId.to_string(),
            "the customer id cannot be blank"
        );
        assert_eq!(
            PaymentError::NegativeAmount.to_string(),
            "the payment amount cannot be negative"
        );
    }

    #[test]
    fn confirm_succeeds_when_the_amount_covers_the_total() {
        assert_eq!(payment(200.0).confirm(200.0), Ok(()));
        assert_eq!(payment(200.0).confirm(49.95), Ok(()));
        assert_eq!(payment(200.0).confirm(0.0), Ok(()));
    }

    #[test]
    fn confirm_tolerates_float_noise_in_the_total() {
        let total = 3.0 * 1.1;
        assert!(total > 3.3, "the premise: {total}");
        assert_eq!(payment(3.3).confirm(total), Ok(()));
        let total = 0.1 + 2.0 * 0.1;
        assert!(total > 0.3, "the premise: {total}");
        assert_eq!(payment(0.3).confirm(total), Ok(()));
    }

    #[test]
    fn confirm_fails_when_the_total_is_larger_or_not_a_number() {
        assert_eq!(
            payment(49.95).confirm(49.96),
            Err(PaymentError::Insufficient {
                authorized: 49.95,
                required: 49.96
            })
        );
        assert!(payment(10.0).confirm(f64::NAN).is_err());
        assert!(payment(10.0).confirm(f64::INFINITY).is_err());
    }

    #[test]
    fn create_invoice_is_pending_with_the_order_id() {
        assert_eq!(
            Invoice::create("o-1", 49.95),
            Ok(invoice(InvoiceStatus::Pending))
        );
        assert_eq!(Invoice::create("", 1.0), Err(InvoiceError::BlankOrderId));
        assert_eq!(
            Invoice::create("o-1", -1.0),
            Err(InvoiceError::NegativeAmount)
        );
        assert_eq!(
            Invoice::create("o-1", f64::NAN),
            Err(InvoiceError::NotFinite)
        );
    }

    #[test]
    fn pay_a_pending_invoice() {
        let mut given = invoice(InvoiceStatus::Pending);
        let event = given.pay().unwrap();
        assert_eq!(
            event,
            InvoiceEvent::Paid {
                id: "o-1".into(),
                order_id: "o-1".into()
            }
        );
        assert_eq!(given.status, InvoiceStatus::Paid);
    }

    #[test]
    fn pay_a_paid_or_canceled_invoice_is_refused_and_changes_nothing() {
        for status in [InvoiceStatus::Paid, InvoiceStatus::Canceled] {
            let mut given = invoice(status);
            assert_eq!(given.pay(), Err(InvoiceError::CannotBePaid));
            assert_eq!(given, invoice(status));
        }
        assert_eq!(
            InvoiceError::CannotBePaid.to_string(),
            "invoice cannot be paid for"
        );
    }

    #[test]
    fn cancel_a_pending_invoice() {
        let mut given = invoice(InvoiceStatus::Pending);
        assert_eq!(
            given.cancel(),
            Ok(InvoiceEvent::Canceled { id: "o-1".into() })
        );
        assert_eq!(given.status, InvoiceStatus::Canceled);
    }

    #[test]
    fn cancel_a_paid_or_canceled_invoice_is_refused_and_changes_nothing() {
        for status in [InvoiceStatus::Paid, InvoiceStatus::Canceled] {
            let mut given = invoice(status);
            assert_eq!(given.cancel(), Err(InvoiceError::CannotBeCanceled));
            assert_eq!(given, invoice(status));
        }
    }

    #[test]
    fn every_status_reads_back() {
        for status in [
            InvoiceStatus::Pending,
            InvoiceStatus::Paid,
            InvoiceStatus::Canceled,
        ] {
            assert_eq!(InvoiceStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(InvoiceStatus::parse("cancelled"), None);
    }
}
