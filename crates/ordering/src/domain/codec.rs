//! How orders are stored: each [`OrderEvent`] as a small protobuf message under a stable name
//! (`ordering.OrderCreated`, ...), and the whole state as a snapshot. The formats are private to
//! this service (they are not contracts), but stored history must stay readable: change a
//! message only by adding fields, or bump its schema version and upcast.

use persistence::{Aggregate, DomainEvent, EventData};
use prost::Message as _;

use super::{Order, OrderEvent, OrderItem, OrderStatus};

/// The stream type of orders.
pub const ORDER_TYPE: &str = "ordering.Order";

const CREATED: &str = "ordering.OrderCreated";
const REJECTED: &str = "ordering.OrderRejected";
const APPROVED: &str = "ordering.OrderApproved";
const CANCELED: &str = "ordering.OrderCanceled";
const READIED: &str = "ordering.OrderReadied";
const COMPLETED: &str = "ordering.OrderCompleted";

#[derive(Clone, PartialEq, prost::Message)]
struct StoredItem {
    #[prost(string, tag = "1")]
    product_id: String,
    #[prost(string, tag = "2")]
    store_id: String,
    #[prost(string, tag = "3")]
    store_name: String,
    #[prost(string, tag = "4")]
    product_name: String,
    #[prost(double, tag = "5")]
    price: f64,
    #[prost(int32, tag = "6")]
    quantity: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Created {
    #[prost(string, tag = "1")]
    customer_id: String,
    #[prost(string, tag = "2")]
    payment_id: String,
    #[prost(message, repeated, tag = "3")]
    items: Vec<StoredItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Approved {
    #[prost(string, tag = "1")]
    shopping_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Readied {
    #[prost(double, tag = "1")]
    total: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Completed {
    #[prost(string, tag = "1")]
    invoice_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Snapshot {
    #[prost(string, tag = "1")]
    customer_id: String,
    #[prost(string, tag = "2")]
    payment_id: String,
    #[prost(string, tag = "3")]
    shopping_id: String,
    #[prost(string, tag = "4")]
    invoice_id: String,
    #[prost(message, repeated, tag = "5")]
    items: Vec<StoredItem>,
    #[prost(string, tag = "6")]
    status: String,
}

impl From<&OrderItem> for StoredItem {
    fn from(i: &OrderItem) -> Self {
        StoredItem {
            product_id: i.product_id.clone(),
            store_id: i.store_id.clone(),
            store_name: i.store_name.clone(),
            product_name: i.product_name.clone(),
            price: i.price,
            quantity: i.quantity,
        }
    }
}

impl From<StoredItem> for OrderItem {
    fn from(i: StoredItem) -> Self {
        OrderItem {
            product_id: i.product_id,
            store_id: i.store_id,
            store_name: i.store_name,
            product_name: i.product_name,
            price: i.price,
            quantity: i.quantity,
        }
    }
}

impl DomainEvent for OrderEvent {
    fn encode(&self) -> EventData {
        let (name, payload) = match self {
            OrderEvent::Created {
                customer_id,
                payment_id,
                items,
            } => (
                CREATED,
                Created {
                    customer_id: customer_id.clone(),
                    payment_id: payment_id.clone(),
                    items: items.iter().map(StoredItem::from).collect(),
                }
                .encode_to_vec(),
            ),
            OrderEvent::Rejected => (REJECTED, Vec::new()),
            OrderEvent::Approved { shopping_id } => (
                APPROVED,
                Approved {
                    shopping_id: shopping_id.clone(),
                }
                .encode_to_vec(),
            ),
            OrderEvent::Canceled => (CANCELED, Vec::new()),
            OrderEvent::Readied { total } => (READIED, Readied { total: *total }.encode_to_vec()),
            OrderEvent::Completed { invoice_id } => (
                COMPLETED,
                Completed {
                    invoice_id: invoice_id.clone(),
                }
                .encode_to_vec(),
            ),
        };
        EventData::new(name, 1, payload)
    }

    fn decode(data: &EventData) -> Result<Self, String> {
        let bytes = data.payload.as_ref();
        let err = |e: prost::DecodeError| e.to_string();
        Ok(match data.name.as_str() {
            CREATED => {
                let c = Created::decode(bytes).map_err(err)?;
                OrderEvent::Created {
                    customer_id: c.customer_id,
                    payment_id: c.payment_id,
                    items: c.items.into_iter().map(OrderItem::from).collect(),
                }
            }
            REJECTED => OrderEvent::Rejected,
            APPROVED => OrderEvent::Approved {
                shopping_id: Approved::decode(bytes).map_err(err)?.shopping_id,
            },
            CANCELED => OrderEvent::Canceled,
            READIED => OrderEvent::Readied {
                total: Readied::decode(bytes).map_err(err)?.total,
            },
            COMPLETED => OrderEvent::Completed {
                invoice_id: Completed::decode(bytes).map_err(err)?.invoice_id,
            },
            other => return Err(format!("unknown order event {other:?}")),
        })
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = ORDER_TYPE;
    type Event = OrderEvent;

    fn apply(&mut self, event: &OrderEvent) {
        self.apply_event(event);
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(
            Snapshot {
                customer_id: self.customer_id.clone(),
                payment_id: self.payment_id.clone(),
                shopping_id: self.shopping_id.clone(),
                invoice_id: self.invoice_id.clone(),
                items: self.items.iter().map(StoredItem::from).collect(),
                status: self
                    .status
                    .map(OrderStatus::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }
            .encode_to_vec(),
        )
    }

    fn restore(payload: &[u8]) -> Result<Self, String> {
        let s = Snapshot::decode(payload).map_err(|e| e.to_string())?;
        let status = match s.status.as_str() {
            "" => None,
            text => Some(
                OrderStatus::parse(text).ok_or_else(|| format!("unknown order status {text:?}"))?,
            ),
        };
        Ok(Order {
            customer_id: s.customer_id,
            payment_id: s.payment_id,
            shopping_id: s.shopping_id,
            invoice_id: s.invoice_id,
            items: s.items.into_iter().map(OrderItem::from).collect(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_events() -> Vec<OrderEvent> {
        vec![
            OrderEvent::Created {
                customer_id: "c".into(),
                payment_id: "p".into(),
                items: vec![OrderItem {
                    product_id: "pr".into(),
                    store_id: "st".into(),
                    store_name: "Store".into(),
                    product_name: "Product".into(),
                    price: 1.25,
                    quantity: 4,
                }],
            },
            OrderEvent::Rejected,
            OrderEvent::Approved {
                shopping_id: "L".into(),
            },
            OrderEvent::Canceled,
            OrderEvent::Readied { total: 5.0 },
            OrderEvent::Completed {
                invoice_id: "I".into(),
            },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for event in all_events() {
            let data = event.encode();
            assert_eq!(data.schema_version, 1);
            assert_eq!(OrderEvent::decode(&data), Ok(event));
        }
        let unknown = EventData::new("ordering.Nope", 1, Vec::new());
        assert!(OrderEvent::decode(&unknown).is_err());
    }

    #[test]
    fn snapshots_round_trip() {
        let mut order = Order::default();
        assert_eq!(
            Order::restore(&order.snapshot().unwrap()),
            Ok(order.clone())
        );
        for e in &all_events()[..3] {
            order.apply(e);
        }
        let restored = Order::restore(&order.snapshot().unwrap()).unwrap();
        assert_eq!(restored, order);
        assert_eq!(restored.status, Some(OrderStatus::Approved));
    }
}
