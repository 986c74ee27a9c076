//! How baskets live in the event store: the stream type, the stored name and protobuf payload
//! of each event, and the snapshot format.
//!
//! The records are private protobuf messages (not in `proto/`): they never leave this service,
//! and keeping them next to the aggregate lets the stored format change with an upcaster
//! instead of touching the shared contracts. Field numbers are never reused.

use persistence::{Aggregate, DomainEvent, EventData};
use prost::Message;

use super::{Basket, BasketEvent, Item, Status};

/// Stored names of the events (the original's names, spec messaging.md §8).
const STARTED: &str = "baskets.BasketStarted";
const ITEM_ADDED: &str = "baskets.BasketItemAdded";
const ITEM_REMOVED: &str = "baskets.BasketItemRemoved";
const CANCELED: &str = "baskets.BasketCanceled";
const CHECKED_OUT: &str = "baskets.BasketCheckedOut";

/// Format of every event payload; bump per name on an incompatible change.
const SCHEMA_VERSION: i32 = 1;

#[derive(Clone, PartialEq, Message)]
struct StartedRecord {
    #[prost(string, tag = "1")]
    customer_id: String,
}

#[derive(Clone, PartialEq, Message)]
struct ItemRecord {
    #[prost(string, tag = "1")]
    store_id: String,
    #[prost(string, tag = "2")]
    product_id: String,
    #[prost(string, tag = "3")]
    store_name: String,
    #[prost(string, tag = "4")]
    product_name: String,
    #[prost(double, tag = "5")]
    product_price: f64,
    #[prost(int32, tag = "6")]
    quantity: i32,
}

#[derive(Clone, PartialEq, Message)]
struct ItemAddedRecord {
    #[prost(message, optional, tag = "1")]
    item: Option<ItemRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemRemovedRecord {
    #[prost(string, tag = "1")]
    product_id: String,
    #[prost(int32, tag = "2")]
    quantity: i32,
}

#[derive(Clone, PartialEq, Message)]
struct CanceledRecord {}

#[derive(Clone, PartialEq, Message)]
struct CheckedOutRecord {
    #[prost(string, tag = "1")]
    payment_id: String,
}

/// The whole state, for snapshots.
#[derive(Clone, PartialEq, Message)]
struct SnapshotRecord {
    #[prost(string, tag = "1")]
    customer_id: String,
    #[prost(string, tag = "2")]
    payment_id: String,
    #[prost(message, repeated, tag = "3")]
    items: Vec<ItemRecord>,
    /// `open`, `checked_out`, `canceled` (the original's status strings); "" for new.
    #[prost(string, tag = "4")]
    status: String,
}

impl From<&Item> for ItemRecord {
    fn from(item: &Item) -> Self {
        ItemRecord {
            store_id: item.store_id.clone(),
            product_id: item.product_id.clone(),
            store_name: item.store_name.clone(),
            product_name: item.product_name.clone(),
            product_price: item.product_price,
            quantity: item.quantity,
        }
    }
}

impl From<ItemRecord> for Item {
    fn from(record: ItemRecord) -> Self {
        Item {
            store_id: record.store_id,
            product_id: record.product_id,
            store_name: record.store_name,
            product_name: record.product_name,
            product_price: record.product_price,
            quantity: record.quantity,
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::New => "",
        Status::Open => "open",
        Status::CheckedOut => "checked_out",
        Status::Canceled => "canceled",
    }
}

fn parse_status(name: &str) -> Result<Status, String> {
    match name {
        "" => Ok(Status::New),
        "open" => Ok(Status::Open),
        "checked_out" => Ok(Status::CheckedOut),
        "canceled" => Ok(Status::Canceled),
        other => Err(format!("unknown basket status {other:?}")),
    }
}

fn decode<M: Message + Default>(data: &EventData) -> Result<M, String> {
    M::decode(data.payload.as_ref()).map_err(|e| e.to_string())
}

impl DomainEvent for BasketEvent {
    fn encode(&self) -> EventData {
        let (name, payload) = match self {
            BasketEvent::Started { customer_id } => (
                STARTED,
                StartedRecord {
                    customer_id: customer_id.clone(),
                }
                .encode_to_vec(),
            ),
            BasketEvent::ItemAdded { item } => (
                ITEM_ADDED,
                ItemAddedRecord {
                    item: Some(item.into()),
                }
                .encode_to_vec(),
            ),
            BasketEvent::ItemRemoved {
                product_id,
                quantity,
            } => (
                ITEM_REMOVED,
                ItemRemovedRecord {
                    product_id: product_id.clone(),
                    quantity: *quantity,
                }
                .encode_to_vec(),
            ),
            BasketEvent::Canceled => (CANCELED, CanceledRecord {}.encode_to_vec()),
            BasketEvent::CheckedOut { payment_id } => (
                CHECKED_OUT,
                CheckedOutRecord {
                    payment_id: payment_id.clone(),
                }
                .encode_to_vec(),
            ),
        };
        EventData::new(name, SCHEMA_VERSION, payload)
    }

    fn decode(data: &EventData) -> Result<Self, String> {
        if data.schema_version != SCHEMA_VERSION {
            return Err(format!("unknown schema version {}", data.schema_version));
        }
        match data.name.as_str() {
            STARTED => {
                let record: StartedRecord = decode(data)?;
                Ok(BasketEvent::Started {
                    customer_id: record.customer_id,
                })
            }
            ITEM_ADDED => {
                let record: ItemAddedRecord = decode(data)?;
                let item = record.item.ok_or("the added item is missing")?;
                Ok(BasketEvent::ItemAdded { item: item.into() })
            }
            ITEM_REMOVED => {
                let record: ItemRemovedRecord = decode(data)?;
                Ok(BasketEvent::ItemRemoved {
                    product_id: record.product_id,
                    quantity: record.quantity,
                })
            }
            CANCELED => {
                let _: CanceledRecord = decode(data)?;
                Ok(BasketEvent::Canceled)
            }
            CHECKED_OUT => {
                let record: CheckedOutRecord = decode(data)?;
                Ok(BasketEvent::CheckedOut {
                    payment_id: record.payment_id,
                })
            }
            other => Err(format!("unknown basket event {other:?}")),
        }
    }
}

impl Aggregate for Basket {
    const TYPE: &'static str = "baskets.Basket";
    type Event = BasketEvent;

    fn apply(&mut self, event: &BasketEvent) {
        Basket::apply(self, event);
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let record = SnapshotRecord {
            customer_id: self.customer_id.clone(),
            payment_id: self.payment_id.clone(),
            items: self.items.iter().map(ItemRecord::from).collect(),
            status: status_name(self.status).to_owned(),
        };
        Some(record.encode_to_vec())
    }

    fn restore(payload: &[u8]) -> Result<Self, String> {
        let record = SnapshotRecord::decode(payload).map_err(|e| e.to_string())?;
        Ok(Basket {
            customer_id: record.customer_id,
            payment_id: record.payment_id,
            items: record.items.into_iter().map(Item::from).collect(),
            status: parse_status(&record.status)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Item {
            store_id: "s".into(),
            product_id: "p".into(),
            store_name: "Store".into(),
            product_name: "Product".into(),
            product_price: 9.99,
            quantity: 3,
        }
    }

    #[test]
    fn every_event_survives_the_store() {
        let events = [
            BasketEvent::Started {
                customer_id: "c".into(),
            },
            BasketEvent::ItemAdded { item: item() },
            BasketEvent::ItemRemoved {
                product_id: "p".into(),
                quantity: 2,
            },
            BasketEvent::Canceled,
            BasketEvent::CheckedOut {
                payment_id: "pay".into(),
            },
        ];
        for event in events {
            let data = event.encode();
            assert!(data.name.starts_with("baskets.Basket"), "{}", data.name);
            assert_eq!(BasketEvent::decode(&data), Ok(event));
        }
    }

    #[test]
    fn unknown_or_broken_events_are_errors_not_skipped() {
        let unknown = EventData::new("baskets.Nope", 1, Vec::new());
        assert!(BasketEvent::decode(&unknown).is_err());
        let future = EventData::new(STARTED, 2, Vec::new());
        assert!(BasketEvent::decode(&future).is_err());
        let garbage = EventData::new(ITEM_REMOVED, 1, vec![0xff, 0xff, 0xff]);
        assert!(BasketEvent::decode(&garbage).is_err());
        let no_item = EventData::new(ITEM_ADDED, 1, Vec::new());
        assert!(BasketEvent::decode(&no_item).is_err());
    }

    #[test]
    fn snapshots_restore_the_same_state() {
        let mut basket = Basket::default();
        for event in [
            BasketEvent::Started {
                customer_id: "c".into(),
            },
            BasketEvent::ItemAdded { item: item() },
            BasketEvent::CheckedOut {
                payment_id: "pay".into(),
            },
        ] {
            basket.apply(&event);
        }
        let bytes = Aggregate::snapshot(&basket).unwrap();
        assert_eq!(Basket::restore(&bytes), Ok(basket));
        assert_eq!(
            Basket::restore(&Aggregate::snapshot(&Basket::default()).unwrap()),
            Ok(Basket::default())
        );
    }

    #[test]
    fn a_snapshot_with_an_unknown_status_is_refused() {
        let record = SnapshotRecord {
            status: "lost".into(),
            ..SnapshotRecord::default()
        };
        assert!(Basket::restore(&record.encode_to_vec()).is_err());
    }
}
