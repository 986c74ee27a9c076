//! How store and product events and snapshots are written to the event store: protobuf
//! messages private to this service (they are our history, not a contract with anyone else),
//! each event under the name the original used (`stores.StoreCreated`…), schema version 1.
//!
//! Field numbers are fixed forever once written: a change of meaning gets a new field or a new
//! schema version with an upcaster, never a reused number.

use persistence::{DomainEvent, EventData};
use prost::Message;

use super::product::{Product, ProductEvent};
use super::store::{Store, StoreEvent};

/// Every event here is in its first format.
const SCHEMA_VERSION: i32 = 1;

const STORE_CREATED: &str = "stores.StoreCreated";
const STORE_PARTICIPATION_ENABLED: &str = "stores.StoreParticipationEnabled";
const STORE_PARTICIPATION_DISABLED: &str = "stores.StoreParticipationDisabled";
const STORE_REBRANDED: &str = "stores.StoreRebranded";
const PRODUCT_ADDED: &str = "stores.ProductAdded";
const PRODUCT_REBRANDED: &str = "stores.ProductRebranded";
const PRODUCT_PRICE_INCREASED: &str = "stores.ProductPriceIncreased";
const PRODUCT_PRICE_DECREASED: &str = "stores.ProductPriceDecreased";
const PRODUCT_REMOVED: &str = "stores.ProductRemoved";

#[derive(Clone, PartialEq, Message)]
struct StoreCreatedV1 {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    location: String,
}

#[derive(Clone, PartialEq, Message)]
struct StoreRebrandedV1 {
    #[prost(string, tag = "1")]
    name: String,
}

/// Events that carry nothing but their name (participation switches, removal).
#[derive(Clone, PartialEq, Message)]
struct NoFieldsV1 {}

#[derive(Clone, PartialEq, Message)]
struct ProductAddedV1 {
    #[prost(string, tag = "1")]
    store_id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "4")]
    sku: String,
    #[prost(double, tag = "5")]
    price: f64,
}

#[derive(Clone, PartialEq, Message)]
struct ProductRebrandedV1 {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct ProductPriceChangedV1 {
    #[prost(double, tag = "1")]
    delta: f64,
    #[prost(double, tag = "2")]
    price: f64,
}

/// Snapshot `stores.StoreV1`. Only streams with events are snapshotted, so the store exists.
#[derive(Clone, PartialEq, Message)]
struct StoreSnapshotV1 {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    location: String,
    #[prost(bool, tag = "3")]
    participating: bool,
}

/// Snapshot `stores.ProductV1`.
#[derive(Clone, PartialEq, Message)]
struct ProductSnapshotV1 {
    #[prost(string, tag = "1")]
    store_id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "4")]
    sku: String,
    #[prost(double, tag = "5")]
    price: f64,
    #[prost(bool, tag = "6")]
    removed: bool,
}

fn data(name: &str, message: &impl Message) -> EventData {
    EventData::new(name, SCHEMA_VERSION, message.encode_to_vec())
}

fn decode<M: Message + Default>(data: &EventData) -> Result<M, String> {
    if data.schema_version != SCHEMA_VERSION {
        return Err(format!("unknown schema version {}", data.schema_version));
    }
    M::decode(data.payload.as_ref()).map_err(|e| e.to_string())
}

impl DomainEvent for StoreEvent {
    fn encode(&self) -> EventData {
        match self {
            StoreEvent::Created { name, location } => data(
                STORE_CREATED,
                &StoreCreatedV1 {
                    name: name.clone(),
                    location: location.clone(),
                },
            ),
            StoreEvent::ParticipationEnabled => data(STORE_PARTICIPATION_ENABLED, &NoFieldsV1 {}),
            StoreEvent::ParticipationDisabled => data(STORE_PARTICIPATION_DISABLED, &NoFieldsV1 {}),
            StoreEvent::Rebranded { name } => {
                data(STORE_REBRANDED, &StoreRebrandedV1 { name: name.clone() })
            }
        }
    }

    fn decode(data: &EventData) -> Result<Self, String> {
        Ok(match data.name.as_str() {
            STORE_CREATED => {
                let e: StoreCreatedV1 = decode(data)?;
                StoreEvent::Created {
                    name: e.name,
                    location: e.location,
                }
            }
            STORE_PARTICIPATION_ENABLED => {
                decode::<NoFieldsV1>(data)?;
                StoreEvent::ParticipationEnabled
            }
            STORE_PARTICIPATION_DISABLED => {
                decode::<NoFieldsV1>(data)?;
                StoreEvent::ParticipationDisabled
            }
            STORE_REBRANDED => {
                let e: StoreRebrandedV1 = decode(data)?;
                StoreEvent::Rebranded { name: e.name }
            }
            other => return Err(format!("unknown store event {other:?}")),
        })
    }
}

impl DomainEvent for ProductEvent {
    fn encode(&self) -> EventData {
        match self {
            ProductEvent::Added {
                store_id,
                name,
                description,
                sku,
                price,
            } => data(
                PRODUCT_ADDED,
                &ProductAddedV1 {
                    store_id: store_id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    sku: sku.clone(),
                    price: *price,
                },
            ),
            ProductEvent::Rebranded { name, description } => data(
                PRODUCT_REBRANDED,
                &ProductRebrandedV1 {
                    name: name.clone(),
                    description: description.clone(),
                },
            ),
            ProductEvent::PriceIncreased { delta, price } => data(
                PRODUCT_PRICE_INCREASED,
                &ProductPriceChangedV1 {
                    delta: *delta,
                    price: *price,
                },
            ),
            ProductEvent::PriceDecreased { delta, price } => data(
                PRODUCT_PRICE_DECREASED,
                &ProductPriceChangedV1 {
                    delta: *delta,
                    price: *price,
                },
            ),
            ProductEvent::Removed => data(PRODUCT_REMOVED, &NoFieldsV1 {}),
        }
    }

    fn decode(data: &EventData) -> Result<Self, String> {
        Ok(match data.name.as_str() {
            PRODUCT_ADDED => {
                let e: ProductAddedV1 = decode(data)?;
                ProductEvent::Added {
                    store_id: e.store_id,
                    name: e.name,
                    description: e.description,
                    sku: e.sku,
                    price: e.price,
                }
            }
            PRODUCT_REBRANDED => {
                let e: ProductRebrandedV1 = decode(data)?;
                ProductEvent::Rebranded {
                    name: e.name,
                    description: e.description,
                }
            }
            PRODUCT_PRICE_INCREASED => {
                let e: ProductPriceChangedV1 = decode(data)?;
                ProductEvent::PriceIncreased {
                    delta: e.delta,
                    price: e.price,
                }
            }
            PRODUCT_PRICE_DECREASED => {
                let e: ProductPriceChangedV1 = decode(data)?;
                ProductEvent::PriceDecreased {
                    delta: e.delta,
                    price: e.price,
                }
            }
            PRODUCT_REMOVED => {
                decode::<NoFieldsV1>(data)?;
                ProductEvent::Removed
            }
            other => return Err(format!("unknown product event {other:?}")),
        })
    }
}

pub(super) fn store_snapshot(store: &Store) -> Vec<u8> {
    StoreSnapshotV1 {
        name: store.name.clone(),
        location: store.location.clone(),
        participating: store.participating,
    }
    .encode_to_vec()
}

pub(super) fn restore_store(payload: &[u8]) -> Result<Store, String> {
    let s = StoreSnapshotV1::decode(payload).map_err(|e| e.to_string())?;
    Ok(Store {
        created: true,
        name: s.name,
        location: s.location,
        participating: s.participating,
    })
}

pub(super) fn product_snapshot(product: &Product) -> Vec<u8> {
    ProductSnapshotV1 {
        store_id: product.store_id.clone(),
        name: product.name.clone(),
        description: product.description.clone(),
        sku: product.sku.clone(),
        price: product.price,
        removed: product.removed,
    }
    .encode_to_vec()
}

pub(super) fn restore_product(payload: &[u8]) -> Result<Product, String> {
    let p = ProductSnapshotV1::decode(payload).map_err(|e| e.to_string())?;
    Ok(Product {
        created: true,
        removed: p.removed,
        store_id: p.store_id,
        name: p.name,
        description: p.description,
        sku: p.sku,
        price: p.price,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_events_round_trip_under_the_original_names() {
        let events = [
            (
                StoreEvent::Created {
                    name: "n".into(),
                    location: "l".into(),
                },
                STORE_CREATED,
            ),
            (
                StoreEvent::ParticipationEnabled,
                STORE_PARTICIPATION_ENABLED,
            ),
            (
                StoreEvent::ParticipationDisabled,
                STORE_PARTICIPATION_DISABLED,
            ),
            (StoreEvent::Rebranded { name: "m".into() }, STORE_REBRANDED),
        ];
        for (event, name) in events {
            let data = event.encode();
            assert_eq!(data.name, name);
            assert_eq!(data.schema_version, 1);
            assert_eq!(StoreEvent::decode(&data).unwrap(), event);
        }
    }

    #[test]
    fn product_events_round_trip_under_the_original_names() {
        let events = [
            (
                ProductEvent::Added {
                    store_id: "s".into(),
                    name: "n".into(),
                    description: "d".into(),
                    sku: "k".into(),
                    price: 1.5,
                },
                PRODUCT_ADDED,
            ),
            (
                ProductEvent::Rebranded {
                    name: "n".into(),
                    description: "d".into(),
                },
                PRODUCT_REBRANDED,
            ),
            (
                ProductEvent::PriceIncreased {
                    delta: 0.5,
                    price: 2.0,
                },
                PRODUCT_PRICE_INCREASED,
            ),
            (
                ProductEvent::PriceDecreased {
                    delta: -1.0,
                    price: 1.0,
                },
                PRODUCT_PRICE_DECREASED,
            ),
            (ProductEvent::Removed, PRODUCT_REMOVED),
        ];
        for (event, name) in events {
            let data = event.encode();
            assert_eq!(data.name, name);
            assert_eq!(ProductEvent::decode(&data).unwrap(), event);
        }
    }

    #[test]
    fn unknown_names_formats_and_bad_payloads_are_errors() {
        let unknown = EventData::new("stores.StoreDemolished", 1, Vec::new());
        assert!(StoreEvent::decode(&unknown).is_err());
        assert!(ProductEvent::decode(&unknown).is_err());
        let future = EventData::new(STORE_REBRANDED, 2, Vec::new());
        assert!(StoreEvent::decode(&future).is_err());
        let garbage = EventData::new(PRODUCT_ADDED, 1, vec![0xff, 0xff, 0xff]);
        assert!(ProductEvent::decode(&garbage).is_err());
        assert!(restore_store(&[0xff, 0xff]).is_err());
    }
}
