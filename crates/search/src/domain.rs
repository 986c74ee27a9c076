//! The search read model's rules: an indexed order (names resolved, total computed, id arrays for
//! overlap filters) and the status lifecycle it follows. Pure — no I/O. What a search may ask
//! (filters, page size, cursor) is in [`query`].

pub mod query;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An indexed order's status. The spec names `New`, `Ready For Pickup`, `Canceled` and
/// `Completed`; `Approved` and `Rejected` are added because we publish the saga's outcome (the
/// original never did, weakness A3), so a search can tell a rejected order from a waiting one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Indexed from `OrderCreated`.
    New,
    /// `OrderApproved`: the saga accepted it.
    Approved,
    /// `OrderRejected`: the saga refused it.
    Rejected,
    /// `OrderReadied`: the depot finished shopping.
    ReadyForPickup,
    /// `OrderCanceled`.
    Canceled,
    /// `OrderCompleted`: paid and picked up.
    Completed,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::New,
        OrderStatus::Approved,
        OrderStatus::Rejected,
        OrderStatus::ReadyForPickup,
        OrderStatus::Canceled,
        OrderStatus::Completed,
    ];

    /// The stored and displayed text.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "New",
            OrderStatus::Approved => "Approved",
            OrderStatus::Rejected => "Rejected",
            OrderStatus::ReadyForPickup => "Ready For Pickup",
            OrderStatus::Canceled => "Canceled",
            OrderStatus::Completed => "Completed",
        }
    }

    /// Parses a status, ignoring case and surrounding space (`ready for pickup` is fine).
    pub fn parse(text: &str) -> Option<Self> {
        let wanted = text.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(wanted))
    }

    /// How far along the lifecycle a status is. The last three end the order's life.
    fn stage(self) -> u8 {
        match self {
            OrderStatus::New => 0,
            OrderStatus::Approved => 1,
            OrderStatus::ReadyForPickup => 2,
            OrderStatus::Rejected | OrderStatus::Canceled | OrderStatus::Completed => 3,
        }
    }

    /// The status after `incoming` arrives on an order in `self`: a later stage replaces an
    /// earlier one, anything else is stale (a late or replayed event) and changes nothing, and
    /// an ended order stays as it ended. So the outcome does not depend on the order in which
    /// events of different consumers or redeliveries arrive.
    pub fn advance(self, incoming: OrderStatus) -> OrderStatus {
        if incoming.stage() > self.stage() {
            incoming
        } else {
            self
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an indexed order, names resolved. Stored as JSON in the `items` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Product id.
    pub product_id: String,
    /// Store id.
    pub store_id: String,
    /// Product name at indexing time (empty when nobody knew the product).
    pub product_name: String,
    /// Store name at indexing time (empty when nobody knew the store).
    pub store_name: String,
    /// Unit price from the order.
    pub price: f64,
    /// Quantity (int64 in the API).
    pub quantity: i64,
}

/// An order as the read model keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedOrder {
    /// Order id.
    pub order_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Customer name at indexing time.
    pub customer_name: String,
    /// Lines.
    pub items: Vec<Item>,
    /// Σ price × quantity (the original computed it and threw it away, weakness A8).
    pub total: f64,
    /// Current status.
    pub status: OrderStatus,
    /// Distinct product ids, for the `productIds` overlap filter.
    pub product_ids: Vec<String>,
    /// Distinct store ids, for the `storeIds` overlap filter.
    pub store_ids: Vec<String>,
    /// When the order was created (the event's send time; the original wrote year 1).
    pub created_at: OffsetDateTime,
}

impl IndexedOrder {
    /// Indexes a new order with `status` (`New`, or a status that arrived before the order).
    pub fn new(
        order_id: String,
        customer_id: String,
        customer_name: String,
        items: Vec<Item>,
        status: OrderStatus,
        created_at: OffsetDateTime,
    ) -> Self {
        let total = items.iter().map(|i| i.price * i.quantity as f64).sum();
        let product_ids = distinct(items.iter().map(|i| i.product_id.as_str()));
        let store_ids = distinct(items.iter().map(|i| i.store_id.as_str()));
        IndexedOrder {
            order_id,
            customer_id,
            customer_name,
            items,
            total,
            status,
            product_ids,
            store_ids,
            created_at,
        }
    }
}

/// The non-empty values, first occurrence kept, in order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !v.is_empty() && !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(product: &str, store: &str, price: f64, quantity: i64) -> Item {
        Item {
            product_id: product.into(),
            store_id: store.into(),
            product_name: String::new(),
            store_name: String::new(),
            price,
            quantity,
        }
    }

    #[test]
    fn statuses_round_trip_and_parse_loosely() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            OrderStatus::parse(" ready for PICKUP "),
            Some(OrderStatus::ReadyForPickup)
        );
        assert_eq!(OrderStatus::parse("cancelled"), None);
        assert_eq!(OrderStatus::parse(""), None);
    }

    #[test]
    fn the_status_only_moves_forward_and_ended_orders_stay_ended() {
        use OrderStatus::*;
        assert_eq!(New.advance(Approved), Approved);
        assert_eq!(Approved.advance(ReadyForPickup), ReadyForPickup);
        assert_eq!(ReadyForPickup.advance(Completed), Completed);
        assert_eq!(New.advance(Canceled), Canceled);
        // Late or replayed events change nothing.
        assert_eq!(ReadyForPickup.advance(Approved), ReadyForPickup);
        assert_eq!(Completed.advance(New), Completed);
        // An ended order keeps the way it ended.
        assert_eq!(Canceled.advance(Approved), Canceled);
        assert_eq!(Rejected.advance(Completed), Rejected);
        assert_eq!(Completed.advance(Canceled), Completed);
        // An order created after its status arrived starts from that status.
        assert_eq!(New.advance(ReadyForPickup), ReadyForPickup);
    }

    #[test]
    fn an_indexed_order_has_its_total_and_distinct_ids() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let order = IndexedOrder::new(
            "o1".into(),
            "c1".into(),
            "Ada".into(),
            vec![
                item("p1", "s1", 2.5, 2),
                item("p2", "s1", 1.25, 4),
                item("p1", "s2", 10.0, 1),
            ],
            OrderStatus::New,
            at,
        );
        assert_eq!(order.total, 20.0);
        assert_eq!(order.product_ids, vec!["p1", "p2"]);
        assert_eq!(order.store_ids, vec!["s1", "s2"]);
        let empty = IndexedOrder::new(
            "o2".into(),
            "c1".into(),
            String::new(),
            vec![],
            OrderStatus::New,
            at,
        );
        assert_eq!(empty.total, 0.0);
        assert!(empty.store_ids.is_empty());
    }
}
