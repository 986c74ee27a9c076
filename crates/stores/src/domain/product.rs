//! The `Product` aggregate: an article of a store's catalogue with a name, a description, a SKU
//! and a price.
//!
//! Rules (spec modules.md §1, with the defects of weaknesses.md F1/F5/A15 fixed):
//! - a product is added once, with a non-blank name and a finite, non-negative price (0 is a
//!   valid price);
//! - `increase_price` / `decrease_price` take the NEW absolute price and refuse a change in the
//!   other direction (an equal price is accepted by both: a zero change); a decrease may not go
//!   below zero;
//! - price events carry the change (`delta`, what the original published) and the absolute price
//!   after it, and the state takes the absolute price, so rounding never accumulates;
//! - a rebrand needs a non-blank name;
//! - a removed product is gone: every later command is refused as for an unknown id, so no
//!   command creates an orphan stream or announces a change to something that does not exist.

use persistence::Aggregate;

use super::{is_blank, stored};

/// The state of one product, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Product {
    pub(super) created: bool,
    pub(super) removed: bool,
    pub(super) store_id: String,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) sku: String,
    pub(super) price: f64,
}

/// What can happen to a product. Each variant is stored under its own name
/// (`stores.ProductAdded`…, see [`stored`](super::stored)).
#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    /// The product was added to a store's catalogue.
    Added {
        /// The store selling it.
        store_id: String,
        /// Its name.
        name: String,
        /// Free text.
        description: String,
        /// Stock-keeping unit (free text).
        sku: String,
        /// The initial price.
        price: f64,
    },
    /// Name and description changed.
    Rebranded {
        /// The new name.
        name: String,
        /// The new description.
        description: String,
    },
    /// The price went up (or stayed, `delta` 0).
    PriceIncreased {
        /// New minus old price (≥ 0).
        delta: f64,
        /// The price after the change.
        price: f64,
    },
    /// The price went down (or stayed, `delta` 0).
    PriceDecreased {
        /// New minus old price (≤ 0).
        delta: f64,
        /// The price after the change.
        price: f64,
    },
    /// The product left the catalogue.
    Removed,
}

/// Why a product operation was refused. The texts are the API's (spec api.md §2.2); the
/// application adds the `initializing product: ` context to the errors of `add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// Add or rebrand without a name.
    #[error("the product name cannot be blank")]
    BlankName,
    /// A price below zero (on add, or where a decrease would lead).
    #[error("the product price cannot be negative")]
    NegativePrice,
    /// NaN or an infinity: no price can be compared with it, and JSON cannot render it.
    #[error("the product price must be a finite number")]
    PriceNotFinite,
    /// `increase_price` with a lower price.
    #[error("the price change would be a decrease")]
    WouldDecrease,
    /// `decrease_price` with a higher price.
    #[error("the price change would be an increase")]
    WouldIncrease,
    /// Any operation but add on a product never added, or already removed.
    #[error("product with that ID does not exist")]
    NotFound,
    /// Add on an id that is already a product.
    #[error("the product already exists")]
    AlreadyExists,
}

impl Product {
    /// Whether the product is in the catalogue (added and not removed).
    pub fn exists(&self) -> bool {
        self.created && !self.removed
    }

    /// The store selling it.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The current name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The SKU.
    pub fn sku(&self) -> &str {
        &self.sku
    }

    /// The current price.
    pub fn price(&self) -> f64 {
        self.price
    }

    /// Adds the product to `store_id`'s catalogue. The name is checked before the price, as
    /// the original did. Whether the store exists is the application's question (it needs the
    /// database), asked after this validation.
    pub fn add(
        &self,
        store_id: &str,
        name: &str,
        description: &str,
        sku: &str,
        price: f64,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        if self.created {
            return Err(ProductError::AlreadyExists);
        }
        if is_blank(name) {
            return Err(ProductError::BlankName);
        }
        check_price(price)?;
        Ok(vec![ProductEvent::Added {
            store_id: store_id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            sku: sku.to_owned(),
            price,
        }])
    }

    /// Renames the product and replaces its description (which may be empty).
    pub fn rebrand(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        self.must_exist()?;
        if is_blank(name) {
            return Err(ProductError::BlankName);
        }
        Ok(vec![ProductEvent::Rebranded {
            name: name.to_owned(),
            description: description.to_owned(),
        }])
    }

    /// Sets a price at least as high as the current one.
    pub fn increase_price(&self, price: f64) -> Result<Vec<ProductEvent>, ProductError> {
        self.must_exist()?;
        if !price.is_finite() {
            return Err(ProductError::PriceNotFinite);
        }
        if price < self.price {
            return Err(ProductError::WouldDecrease);
        }
        Ok(vec![ProductEvent::PriceIncreased {
            delta: price - self.price,
            price,
        }])
    }

    /// Sets a price at most as high as the current one, and not below zero.
    pub fn decrease_price(&self, price: f64) -> Result<Vec<ProductEvent>, ProductError> {
        self.must_exist()?;
        if !price.is_finite() {
            return Err(ProductError::PriceNotFinite);
        }
        if price > self.price {
            return Err(ProductError::WouldIncrease);
        }
        check_price(price)?;
        Ok(vec![ProductEvent::PriceDecreased {
            delta: price - self.price,
            price,
        }])
    }

    /// Takes the product out of the catalogue.
    pub fn remove(&self) -> Result<Vec<ProductEvent>, ProductError> {
        self.must_exist()?;
        Ok(vec![ProductEvent::Removed])
    }

    fn must_exist(&self) -> Result<(), ProductError> {
        if self.exists() {
            Ok(())
        } else {
            Err(ProductError::NotFound)
        }
    }
}

fn check_price(price: f64) -> Result<(), ProductError> {
    if !price.is_finite() {
        Err(ProductError::PriceNotFinite)
    } else if price < 0.0 {
        Err(ProductError::NegativePrice)
    } else {
        Ok(())
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "stores.Product";
    type Event = ProductEvent;

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::Added {
                store_id,
                name,
                description,
                sku,
                price,
            } => {
                self.created = true;
                self.store_id.clone_from(store_id);
                self.name.clone_from(name);
                self.description.clone_from(description);
                self.sku.clone_from(sku);
                self.price = *price;
            }
            ProductEvent::Rebranded { name, description } => {
                self.name.clone_from(name);
                self.description.clone_from(description);
            }
            ProductEvent::PriceIncreased { price, .. }
            | ProductEvent::PriceDecreased { price, .. } => self.price = *price,
            ProductEvent::Removed => self.removed = true,
        }
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(stored::product_snapshot(self))
    }

    fn restore(payload: &[u8]) -> Result<Self, String> {
        stored::restore_product(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[ProductEvent]) -> Product {
        let mut product = Product::default();
        for event in events {
            product.apply(event);
        }
        product
    }

    fn added(price: f64) -> ProductEvent {
        ProductEvent::Added {
            store_id: "s1".into(),
            name: "Product ABC".into(),
            description: "Product description".into(),
            sku: "productABC".into(),
            price,
        }
    }

    #[test]
    fn add_records_every_field() {
        let events = given(&[])
            .add(
                "s1",
                "Product ABC",
                "Product description",
                "productABC",
                9.99,
            )
            .unwrap();
        assert_eq!(events, vec![added(9.99)]);
        let product = given(&events);
        assert!(product.exists());
        assert_eq!(product.store_id(), "s1");
        assert_eq!(product.name(), "Product ABC");
        assert_eq!(product.description(), "Product description");
        assert_eq!(product.sku(), "productABC");
        assert_eq!(product.price(), 9.99);
    }

    #[test]
    fn add_accepts_a_zero_price_and_empty_description_and_sku() {
        assert!(given(&[]).add("s1", "x", "", "", 0.0).is_ok());
        assert!(given(&[]).add("s1", "x", "", "", 123_456.789).is_ok());
    }

    #[test]
    fn add_refuses_a_blank_name_before_a_bad_price() {
        assert_eq!(
            given(&[]).add("s1", "", "d", "s", -1.0),
            Err(ProductError::BlankName)
        );
        assert_eq!(
            given(&[]).add("s1", " ", "d", "s", 1.0),
            Err(ProductError::BlankName)
        );
        assert_eq!(
            given(&[]).add("s1", "x", "d", "s", -0.01),
            Err(ProductError::NegativePrice)
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                given(&[]).add("s1", "x", "d", "s", bad),
                Err(ProductError::PriceNotFinite)
            );
        }
    }

    #[test]
    fn add_refuses_an_existing_product() {
        assert_eq!(
            given(&[added(1.0)]).add("s1", "x", "", "", 1.0),
            Err(ProductError::AlreadyExists)
        );
    }

    #[test]
    fn rebrand_replaces_name_and_description_and_refuses_a_blank_name() {
        let product = given(&[added(1.0)]);
        let events = product.rebrand("New name", "").unwrap();
        assert_eq!(
            events,
            vec![ProductEvent::Rebranded {
                name: "New name".into(),
                description: String::new()
            }]
        );
        let renamed = given(&[added(1.0), events[0].clone()]);
        assert_eq!(renamed.name(), "New name");
        assert_eq!(renamed.description(), "");
        assert_eq!(renamed.sku(), "productABC");
        assert_eq!(product.rebrand("", "d"), Err(ProductError::BlankName));
    }

    #[test]
    fn increase_takes_the_new_price_and_records_delta_and_price() {
        let product = given(&[added(10.0)]);
        let events = product.increase_price(12.5).unwrap();
        assert_eq!(
            events,
            vec![ProductEvent::PriceIncreased {
                delta: 2.5,
                price: 12.5
            }]
        );
        assert_eq!(given(&[added(10.0), events[0].clone()]).price(), 12.5);
        assert_eq!(
            product.increase_price(10.0),
            Ok(vec![ProductEvent::PriceIncreased {
                delta: 0.0,
                price: 10.0
            }]),
            "an equal price is a zero increase"
        );
    }

    #[test]
    fn increase_refuses_a_lower_or_non_finite_price() {
        let product = given(&[added(10.0)]);
        assert_eq!(
            product.increase_price(9.99),
            Err(ProductError::WouldDecrease)
        );
        assert_eq!(
            product.increase_price(f64::NAN),
            Err(ProductError::PriceNotFinite)
        );
        assert_eq!(
            product.increase_price(f64::INFINITY),
            Err(ProductError::PriceNotFinite)
        );
    }

    #[test]
    fn decrease_takes_the_new_price_and_records_delta_and_price() {
        let product = given(&[added(10.0)]);
        let events = product.decrease_price(7.5).unwrap();
        assert_eq!(
            events,
            vec![ProductEvent::PriceDecreased {
                delta: -2.5,
                price: 7.5
            }]
        );
        assert_eq!(given(&[added(10.0), events[0].clone()]).price(), 7.5);
        assert!(product.decrease_price(10.0).is_ok(), "equal price accepted");
        assert!(product.decrease_price(0.0).is_ok(), "down to zero");
    }

    #[test]
    fn decrease_refuses_a_higher_negative_or_non_finite_price() {
        let product = given(&[added(10.0)]);
        assert_eq!(
            product.decrease_price(10.01),
            Err(ProductError::WouldIncrease)
        );
        assert_eq!(
            product.decrease_price(-1.0),
            Err(ProductError::NegativePrice)
        );
        assert_eq!(
            product.decrease_price(f64::NEG_INFINITY),
            Err(ProductError::PriceNotFinite)
        );
    }

    #[test]
    fn the_state_keeps_the_absolute_price_of_the_last_change() {
        let product = given(&[
            added(0.1),
            ProductEvent::PriceIncreased {
                delta: 0.2,
                price: 0.3,
            },
            ProductEvent::PriceDecreased {
                delta: -0.1,
                price: 0.2,
            },
        ]);
        assert_eq!(product.price(), 0.2, "no floating-point drift from deltas");
    }

    #[test]
    fn remove_takes_the_product_out_and_later_commands_are_refused() {
        let product = given(&[added(1.0)]);
        assert_eq!(product.remove(), Ok(vec![ProductEvent::Removed]));
        let removed = given(&[added(1.0), ProductEvent::Removed]);
        assert!(!removed.exists());
        assert_eq!(removed.remove(), Err(ProductError::NotFound));
        assert_eq!(removed.rebrand("x", ""), Err(ProductError::NotFound));
        assert_eq!(removed.increase_price(2.0), Err(ProductError::NotFound));
        assert_eq!(removed.decrease_price(0.5), Err(ProductError::NotFound));
        assert_eq!(
            removed.add("s1", "x", "", "", 1.0),
            Err(ProductError::AlreadyExists)
        );
    }

    #[test]
    fn commands_on_an_unknown_product_are_refused() {
        let unknown = given(&[]);
        assert!(!unknown.exists());
        assert_eq!(unknown.rebrand("x", ""), Err(ProductError::NotFound));
        assert_eq!(unknown.increase_price(1.0), Err(ProductError::NotFound));
        assert_eq!(unknown.decrease_price(0.0), Err(ProductError::NotFound));
        assert_eq!(unknown.remove(), Err(ProductError::NotFound));
    }

    #[test]
    fn snapshots_restore_the_same_state() {
        for product in [
            given(&[added(100_000.5)]),
            given(&[added(1.0), ProductEvent::Removed]),
        ] {
            let bytes = product.snapshot().unwrap();
            assert_eq!(Product::restore(&bytes).unwrap(), product);
        }
    }
}
