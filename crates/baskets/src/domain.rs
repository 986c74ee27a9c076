//! The basket aggregate, pure: its state, the rules each command checks and the events it
//! decides, with no I/O. The application layer loads a basket from its events, asks it to
//! decide, and saves what it decided; the same events rebuild the state ([`Basket::apply`]).
//!
//! Lifecycle (spec modules.md §2): new → `open` (started) → `checked_out` | `canceled`. Items can
//! only change while the basket is open. Two rules differ from the original on purpose
//! (spec weaknesses.md A10, A15): removing items deletes the line only when nothing remains
//! (the original deleted it when one item was left), and a quantity of 0 is refused instead of
//! adding an empty line.

mod storage;

/// Where a basket is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// No event yet: the id names no basket.
    #[default]
    New,
    /// Started; items may be added and removed.
    Open,
    /// Checked out: handed to ordering, frozen.
    CheckedOut,
    /// Cancelled: emptied and frozen.
    Canceled,
}

/// A product as the basket captures it when an item is added: its name and price are frozen in
/// the line, so later catalogue changes do not alter baskets already filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Product id.
    pub id: String,
    /// The store selling it.
    pub store_id: String,
    /// Name at the time of the lookup.
    pub name: String,
    /// Price at the time of the lookup.
    pub price: f64,
}

/// A store as the basket captures it (its name is copied into the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Store id.
    pub id: String,
    /// Name at the time of the lookup.
    pub name: String,
}

/// One basket line: a product, with the names and price captured at the first add.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The store selling the product.
    pub store_id: String,
    /// The product (unique within a basket).
    pub product_id: String,
    /// Store name when first added.
    pub store_name: String,
    /// Product name when first added.
    pub product_name: String,
    /// Unit price when first added.
    pub product_price: f64,
    /// How many; always positive in a line.
    pub quantity: i32,
}

/// What happened to a basket. Stored in the event store (see `storage`) and replayed to rebuild
/// the state.
#[derive(Debug, Clone, PartialEq)]
pub enum BasketEvent {
    /// The basket was started for a customer.
    Started {
        /// Who the basket belongs to.
        customer_id: String,
    },
    /// Items were added. For a product already in the basket only `quantity` counts: the line
    /// keeps the names and price of its first add.
    ItemAdded {
        /// The line as it would be created, with the added quantity.
        item: Item,
    },
    /// Items were removed; the line goes when none remain.
    ItemRemoved {
        /// The product.
        product_id: String,
        /// How many were removed.
        quantity: i32,
    },
    /// The basket was cancelled: emptied and closed.
    Canceled,
    /// The basket was checked out with a payment.
    CheckedOut {
        /// The authorized payment that pays for it.
        payment_id: String,
    },
}

/// Why a basket refused a command. The texts are the API's error messages (spec api.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BasketError {
    /// Not open: new (unknown id), checked out or cancelled.
    #[error("the basket cannot be modified")]
    CannotBeModified,
    /// Start without a customer.
    #[error("the customer id cannot be blank")]
    BlankCustomerId,
    /// A negative item quantity.
    #[error("the item quantity cannot be negative")]
    NegativeQuantity,
    /// A zero item quantity (accepted by the original, which then kept an empty line).
    #[error("the item quantity cannot be zero")]
    ZeroQuantity,
    /// The line's quantity would not fit an `int32` (the API's type).
    #[error("the item quantity is too large")]
    QuantityTooLarge,
    /// Cancel of a basket that is not open (unknown ids included).
    #[error("the basket cannot be cancelled")]
    CannotBeCancelled,
    /// Checkout of an empty basket.
    #[error("the basket has no items")]
    NoItems,
    /// Checkout without a payment.
    #[error("the payment id cannot be blank")]
    BlankPaymentId,
}

/// What a command decided: the events to save, or why it was refused.
pub type Decision = Result<Vec<BasketEvent>, BasketError>;

/// A shopping basket, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Basket {
    customer_id: String,
    payment_id: String,
    /// In the order products were first added (the original's order was random).
    items: Vec<Item>,
    status: Status,
}

impl Basket {
    /// The lifecycle state.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The customer the basket was started for ("" before it starts).
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The payment given at checkout ("" before).
    pub fn payment_id(&self) -> &str {
        &self.payment_id
    }

    /// The lines, in the order their products were first added.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Whether the basket has a line for `product_id`.
    pub fn has_item(&self, product_id: &str) -> bool {
        self.item(product_id).is_some()
    }

    fn item(&self, product_id: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.product_id == product_id)
    }

    /// Starts a new basket for `customer_id`. Whether the customer exists is not checked here
    /// (nor in the original): baskets keep no customer data.
    pub fn start(&self, customer_id: &str) -> Decision {
        if self.status != Status::New {
            return Err(BasketError::CannotBeModified);
        }
        if customer_id.trim().is_empty() {
            return Err(BasketError::BlankCustomerId);
        }
        Ok(vec![BasketEvent::Started {
            customer_id: customer_id.to_owned(),
        }])
    }

    /// Adds `quantity` of `product` (sold by `store`). A product already in the basket gets
    /// its quantity raised and keeps its captured names and price.
    pub fn add_item(&self, store: &Store, product: &Product, quantity: i32) -> Decision {
        if self.status != Status::Open {
            return Err(BasketError::CannotBeModified);
        }
        check_quantity(quantity)?;
        if let Some(line) = self.item(&product.id)
            && line.quantity.checked_add(quantity).is_none()
        {
            return Err(BasketError::QuantityTooLarge);
        }
        Ok(vec![BasketEvent::ItemAdded {
            item: Item {
                store_id: store.id.clone(),
                product_id: product.id.clone(),
                store_name: store.name.clone(),
                product_name: product.name.clone(),
                product_price: product.price,
                quantity,
            },
        }])
    }

    /// Removes `quantity` of a product; the line goes when none remain. Removing a product that
    /// is not in the basket changes nothing and is not an error (as in the original).
    pub fn remove_item(&self, product_id: &str, quantity: i32) -> Decision {
        if self.status != Status::Open {
            return Err(BasketError::CannotBeModified);
        }
        check_quantity(quantity)?;
        if !self.has_item(product_id) {
            return Ok(Vec::new());
        }
        Ok(vec![BasketEvent::ItemRemoved {
            product_id: product_id.to_owned(),
            quantity,
        }])
    }

    /// Cancels an open basket.
    pub fn cancel(&self) -> Decision {
        if self.status != Status::Open {
            return Err(BasketError::CannotBeCancelled);
        }
        Ok(vec![BasketEvent::Canceled])
    }

    /// Checks the basket out with an authorized payment. Checks in the spec's order: open, not
    /// empty, payment given. The payment itself is verified later by the order saga.
    pub fn checkout(&self, payment_id: &str) -> Decision {
        if self.status != Status::Open {
            return Err(BasketError::CannotBeModified);
        }
        if self.items.is_empty() {
            return Err(BasketError::NoItems);
        }
        if payment_id.trim().is_empty() {
            return Err(BasketError::BlankPaymentId);
        }
        Ok(vec![BasketEvent::CheckedOut {
            payment_id: payment_id.to_owned(),
        }])
    }

    /// Applies one event. Infallible: the event was checked when it was decided, and replaying
    /// history must never fail on a rule that changed since.
    pub fn apply(&mut self, event: &BasketEvent) {
        match event {
            BasketEvent::Started { customer_id } => {
                self.customer_id.clone_from(customer_id);
                self.status = Status::Open;
            }
            BasketEvent::ItemAdded { item } => {
                match self
                    .items
                    .iter_mut()
                    .find(|line| line.product_id == item.product_id)
                {
                    Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
                    None => self.items.push(item.clone()),
                }
            }
            BasketEvent::ItemRemoved {
                product_id,
                quantity,
            } => {
                if let Some(index) = self
                    .items
                    .iter()
                    .position(|line| &line.product_id == product_id)
                {
                    let remaining = self.items[index].quantity.saturating_sub(*quantity);
                    if remaining <= 0 {
                        self.items.remove(index);
                    } else {
                        self.items[index].quantity = remaining;
                    }
                }
            }
            BasketEvent::Canceled => {
                self.items.clear();
                self.status = Status::Canceled;
            }
            BasketEvent::CheckedOut { payment_id } => {
                self.payment_id.clone_from(payment_id);
                self.status = Status::CheckedOut;
            }
        }
    }
}

/// Quantities must be positive: negative is the original's rule, zero is ours (A15).
fn check_quantity(quantity: i32) -> Result<(), BasketError> {
    if quantity < 0 {
        Err(BasketError::NegativeQuantity)
    } else if quantity == 0 {
        Err(BasketError::ZeroQuantity)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state after `events`.
    fn given(events: &[BasketEvent]) -> Basket {
        let mut basket = Basket::default();
        for event in events {
            basket.apply(event);
        }
        basket
    }

    fn started() -> BasketEvent {
        BasketEvent::Started {
            customer_id: "customer-1".into(),
        }
    }

    fn store() -> Store {
        Store {
            id: "store-1".into(),
            name: "Store ABC".into(),
        }
    }

    fn product(id: &str, price: f64) -> Product {
        Product {
            id: id.into(),
            store_id: "store-1".into(),
            name: format!("Product {id}"),
            price,
        }
    }

    fn item(product_id: &str, price: f64, quantity: i32) -> Item {
        Item {
            store_id: "store-1".into(),
            product_id: product_id.into(),
            store_name: "Store ABC".into(),
            product_name: format!("Product {product_id}"),
            product_price: price,
            quantity,
        }
    }

    fn added(product_id: &str, price: f64, quantity: i32) -> BasketEvent {
        BasketEvent::ItemAdded {
            item: item(product_id, price, quantity),
        }
    }

    fn removed(product_id: &str, quantity: i32) -> BasketEvent {
        BasketEvent::ItemRemoved {
            product_id: product_id.into(),
            quantity,
        }
    }

    fn checked_out() -> BasketEvent {
        BasketEvent::CheckedOut {
            payment_id: "payment-1".into(),
        }
    }

    // --- start -------------------------------------------------------------------------------

    #[test]
    fn a_new_basket_starts_open_for_its_customer() {
        let basket = given(&[]);
        assert_eq!(basket.status(), Status::New);
        let events = basket.start("customer-1").unwrap();
        assert_eq!(events, vec![started()]);
        let basket = given(&events);
        assert_eq!(basket.status(), Status::Open);
        assert_eq!(basket.customer_id(), "customer-1");
        assert!(basket.items().is_empty());
    }

    #[test]
    fn start_needs_a_customer() {
        assert_eq!(given(&[]).start(""), Err(BasketError::BlankCustomerId));
        assert_eq!(given(&[]).start("  "), Err(BasketError::BlankCustomerId));
    }

    #[test]
    fn a_started_basket_cannot_start_again() {
        for history in [
            vec![started()],
            vec![started(), BasketEvent::Canceled],
            vec![started(), added("p", 1.0, 1), checked_out()],
        ] {
            assert_eq!(
                given(&history).start("customer-2"),
                Err(BasketError::CannotBeModified),
                "{history:?}"
            );
        }
    }

    // --- add item ----------------------------------------------------------------------------

    #[test]
    fn adding_captures_store_and_product() {
        let basket = given(&[started()]);
        let events = basket.add_item(&store(), &product("p", 9.99), 5).unwrap();
        assert_eq!(events, vec![added("p", 9.99, 5)]);
        assert_eq!(
            given(&[started(), added("p", 9.99, 5)]).items(),
            &[item("p", 9.99, 5)]
        );
    }

    #[test]
    fn adding_a_product_again_raises_its_quantity_and_keeps_its_first_price_and_names() {
        let mut later = item("p", 12.5, 2);
        later.product_name = "Renamed".into();
        later.store_name = "Rebranded".into();
        let basket = given(&[
            started(),
            added("p", 9.99, 5),
            BasketEvent::ItemAdded { item: later },
        ]);
        assert_eq!(basket.items(), &[item("p", 9.99, 7)]);
    }

    #[test]
    fn lines_keep_the_order_of_their_first_add() {
        let basket = given(&[
            started(),
            added("b", 1.0, 1),
            added("a", 2.0, 1),
            added("b", 1.0, 1),
        ]);
        let ids: Vec<&str> = basket
            .items()
            .iter()
            .map(|i| i.product_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[test]
    fn adding_needs_an_open_basket() {
        for history in [
            vec![],
            vec![started(), BasketEvent::Canceled],
            vec![started(), added("p", 1.0, 1), checked_out()],
        ] {
            assert_eq!(
                given(&history).add_item(&store(), &product("p", 1.0), 1),
                Err(BasketError::CannotBeModified),
                "{history:?}"
            );
        }
    }

    #[test]
    fn the_basket_state_is_checked_before_the_quantity() {
        assert_eq!(
            given(&[]).add_item(&store(), &product("p", 1.0), -1),
            Err(BasketError::CannotBeModified)
        );
        assert_eq!(
            given(&[]).remove_item("p", -1),
            Err(BasketError::CannotBeModified)
        );
    }

    #[test]
    fn adding_refuses_negative_and_zero_quantities() {
        let basket = given(&[started()]);
        assert_eq!(
            basket.add_item(&store(), &product("p", 1.0), -1),
            Err(BasketError::NegativeQuantity)
        );
        assert_eq!(
            basket.add_item(&store(), &product("p", 1.0), 0),
            Err(BasketError::ZeroQuantity)
        );
    }

    #[test]
    fn adding_refuses_a_line_quantity_beyond_int32() {
        let basket = given(&[started(), added("p", 1.0, i32::MAX - 1)]);
        assert!(basket.add_item(&store(), &product("p", 1.0), 1).is_ok());
        assert_eq!(
            basket.add_item(&store(), &product("p", 1.0), 2),
            Err(BasketError::QuantityTooLarge)
        );
    }

    // --- remove item -------------------------------------------------------------------------

    #[test]
    fn removing_some_items_reduces_the_line() {
        let basket = given(&[started(), added("p", 1.0, 2)]);
        let events = basket.remove_item("p", 1).unwrap();
        assert_eq!(events, vec![removed("p", 1)]);
        // The original deleted the line here (remaining 1 ≤ 1, spec weaknesses.md A10).
        let basket = given(&[started(), added("p", 1.0, 2), removed("p", 1)]);
        assert_eq!(basket.items(), &[item("p", 1.0, 1)]);
    }

    #[test]
    fn removing_all_or_more_deletes_the_line() {
        for quantity in [3, 4, i32::MAX] {
            let basket = given(&[
                started(),
                added("p", 1.0, 3),
                added("q", 1.0, 1),
                removed("p", quantity),
            ]);
            assert_eq!(basket.items(), &[item("q", 1.0, 1)], "removing {quantity}");
        }
    }

    #[test]
    fn removing_a_product_not_in_the_basket_changes_nothing() {
        let basket = given(&[started(), added("p", 1.0, 1)]);
        assert_eq!(basket.remove_item("other", 1), Ok(vec![]));
    }

    #[test]
    fn removing_needs_an_open_basket() {
        for history in [
            vec![],
            vec![started(), BasketEvent::Canceled],
            vec![started(), added("p", 1.0, 1), checked_out()],
        ] {
            assert_eq!(
                given(&history).remove_item("p", 1),
                Err(BasketError::CannotBeModified),
                "{history:?}"
            );
        }
    }

    #[test]
    fn removing_refuses_negative_and_zero_quantities() {
        let basket = given(&[started(), added("p", 1.0, 1)]);
        assert_eq!(
            basket.remove_item("p", -1),
            Err(BasketError::NegativeQuantity)
        );
        assert_eq!(basket.remove_item("p", 0), Err(BasketError::ZeroQuantity));
    }

    // --- cancel ------------------------------------------------------------------------------

    #[test]
    fn cancelling_empties_and_closes_the_basket() {
        let basket = given(&[started(), added("p", 1.0, 1)]);
        assert_eq!(basket.cancel(), Ok(vec![BasketEvent::Canceled]));
        let basket = given(&[started(), added("p", 1.0, 1), BasketEvent::Canceled]);
        assert_eq!(basket.status(), Status::Canceled);
        assert!(basket.items().is_empty());
    }

    #[test]
    fn only_an_open_basket_can_be_cancelled() {
        for history in [
            vec![],
            vec![started(), BasketEvent::Canceled],
            vec![started(), added("p", 1.0, 1), checked_out()],
        ] {
            assert_eq!(
                given(&history).cancel(),
                Err(BasketError::CannotBeCancelled),
                "{history:?}"
            );
        }
    }

    // --- checkout ----------------------------------------------------------------------------

    #[test]
    fn checking_out_records_the_payment_and_keeps_the_items() {
        let basket = given(&[started(), added("p", 9.99, 5)]);
        assert_eq!(basket.checkout("payment-1"), Ok(vec![checked_out()]));
        let basket = given(&[started(), added("p", 9.99, 5), checked_out()]);
        assert_eq!(basket.status(), Status::CheckedOut);
        assert_eq!(basket.payment_id(), "payment-1");
        assert_eq!(basket.items(), &[item("p", 9.99, 5)]);
    }

    #[test]
    fn checkout_checks_open_then_items_then_payment() {
        // Every rule broken at once: the first one in the spec's order wins.
        assert_eq!(given(&[]).checkout(""), Err(BasketError::CannotBeModified));
        assert_eq!(
            given(&[started(), BasketEvent::Canceled]).checkout(""),
            Err(BasketError::CannotBeModified)
        );
        assert_eq!(
            given(&[started(), added("p", 1.0, 1), checked_out()]).checkout("payment-2"),
            Err(BasketError::CannotBeModified)
        );
        assert_eq!(given(&[started()]).checkout(""), Err(BasketError::NoItems));
        assert_eq!(
            given(&[started(), added("p", 1.0, 1), removed("p", 1)]).checkout("payment-1"),
            Err(BasketError::NoItems)
        );
        let basket = given(&[started(), added("p", 1.0, 1)]);
        assert_eq!(basket.checkout(""), Err(BasketError::BlankPaymentId));
        assert_eq!(basket.checkout(" \t"), Err(BasketError::BlankPaymentId));
    }

    #[test]
    fn error_texts_are_the_api_messages() {
        let texts = [
            (
                BasketError::CannotBeModified,
                "the basket cannot be modified",
            ),
            (
                BasketError::BlankCustomerId,
                "the customer id cannot be blank",
            ),
            (
                BasketError::NegativeQuantity,
                "the item quantity cannot be negative",
            ),
            (
                BasketError::ZeroQuantity,
                "the item quantity cannot be zero",
            ),
            (
                BasketError::CannotBeCancelled,
                "the basket cannot be cancelled",
            ),
            (BasketError::NoItems, "the basket has no items"),
            (
                BasketError::BlankPaymentId,
                "the payment id cannot be blank",
            ),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text);
        }
    }
}
