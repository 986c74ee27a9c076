//! Unit tests of the contracts: wire round trips, names, subjects and keys, checked against the
//! tables of spec/messaging.md so a typo in a proto or in the catalogue fails here, not in a
//! consumer that silently never sees its messages.

use std::collections::BTreeSet;
use std::fmt::Debug;

use messaging::{Command, Envelope, Event, Message, Query};
use prost::{Message as _, Name as _};

use super::*;

/// Encodes and decodes `message`, checks nothing was lost, and returns its full name.
fn round_trip<M: Message + PartialEq + Debug>(message: M) -> String {
    let bytes = message.encode_to_vec();
    let decoded = M::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, message, "{} lost data on the wire", M::full_name());
    M::full_name()
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// One populated instance of every catalogued message (all fields set, so a field that does not
/// survive the wire shows up), round-tripped; returns the names covered.
fn round_trip_everything() -> BTreeSet<String> {
    use baskets::v1 as b;
    use customers::v1 as c;
    use depot::v1 as d;
    use ordering::v1 as o;
    use payments::v1 as p;
    use stores::v1 as st;

    let store = st::Store {
        id: s("S"),
        name: s("Store ABC"),
        location: s("The mall"),
        participating: true,
    };
    let product = st::Product {
        id: s("P"),
        store_id: s("S"),
        name: s("Product ABC"),
        description: s("Product description"),
        sku: s("productABC"),
        price: 9.99,
    };
    let customer = c::Customer {
        id: s("C"),
        name: s("Customer ABC"),
        sms_number: s("555-555-1212"),
        enabled: true,
    };

    [
        // stores events
        round_trip(st::StoreCreated {
            id: s("S"),
            name: s("Store ABC"),
            location: s("The mall"),
        }),
        round_trip(st::StoreParticipationToggled {
            id: s("S"),
            participating: true,
        }),
        round_trip(st::StoreRebranded {
            id: s("S"),
            name: s("Store XYZ"),
        }),
        round_trip(st::ProductAdded {
            id: s("P"),
            store_id: s("S"),
            name: s("Product ABC"),
            description: s("Product description"),
            sku: s("productABC"),
            price: 9.99,
        }),
        round_trip(st::ProductRebranded {
            id: s("P"),
            name: s("Product XYZ"),
            description: s("New"),
        }),
        round_trip(st::ProductPriceIncreased {
            id: s("P"),
            delta: 1.01,
            price: 11.0,
        }),
        round_trip(st::ProductPriceDecreased {
            id: s("P"),
            delta: -2.0,
            price: 9.0,
        }),
        round_trip(st::ProductRemoved { id: s("P") }),
        // baskets events
        round_trip(b::BasketStarted {
            id: s("B"),
            customer_id: s("C"),
        }),
        round_trip(b::BasketCanceled { id: s("B") }),
        round_trip(b::BasketCheckedOut {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
            items: vec![b::basket_checked_out::Item {
                store_id: s("S"),
                product_id: s("P"),
                store_name: s("Store ABC"),
                product_name: s("Product ABC"),
                price: 9.99,
                quantity: 5,
            }],
        }),
        // customers events
        round_trip(c::CustomerRegistered {
            id: s("C"),
            name: s("Customer ABC"),
            sms_number: s("555"),
        }),
        round_trip(c::CustomerSmsChanged {
            id: s("C"),
            sms_number: s("556"),
        }),
        round_trip(c::CustomerEnabled { id: s("C") }),
        round_trip(c::CustomerDisabled { id: s("C") }),
        // depot events
        round_trip(d::ShoppingListCompleted {
            id: s("L"),
            order_id: s("B"),
        }),
        // ordering events
        round_trip(o::OrderCreated {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
            shopping_id: String::new(),
            items: vec![o::order_created::Item {
                product_id: s("P"),
                store_id: s("S"),
                price: 9.99,
                quantity: 5,
            }],
        }),
        round_trip(o::OrderRejected {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
        }),
        round_trip(o::OrderApproved {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
        }),
        round_trip(o::OrderReadied {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
            total: 49.95,
        }),
        round_trip(o::OrderCanceled {
            id: s("B"),
            customer_id: s("C"),
            payment_id: s("PAY"),
        }),
        round_trip(o::OrderCompleted {
            id: s("B"),
            customer_id: s("C"),
            invoice_id: s("I"),
        }),
        // payments events
        round_trip(p::InvoicePaid {
            id: s("I"),
            order_id: s("B"),
        }),
        // commands
        round_trip(c::AuthorizeCustomer { id: s("C") }),
        round_trip(d::CreateShoppingList {
            order_id: s("B"),
            items: vec![d::create_shopping_list::Item {
                product_id: s("P"),
                store_id: s("S"),
                quantity: 5,
            }],
        }),
        round_trip(d::CancelShoppingList { id: s("L") }),
        round_trip(d::InitiateShopping { id: s("L") }),
        round_trip(p::ConfirmPayment {
            id: s("PAY"),
            amount: 49.95,
        }),
        round_trip(o::RejectOrder { id: s("B") }),
        round_trip(o::ApproveOrder {
            id: s("B"),
            shopping_id: s("L"),
        }),
        // replies
        round_trip(d::CreatedShoppingList { id: s("L") }),
        round_trip(messaging::Empty {}),
        // queries and their answers, found and not found
        round_trip(st::GetStore { id: s("S") }),
        round_trip(st::GetStoreResponse { store: Some(store) }),
        round_trip(st::GetStoreResponse { store: None }),
        round_trip(st::GetProduct { id: s("P") }),
        round_trip(st::GetProductResponse {
            product: Some(product),
        }),
        round_trip(st::GetProductResponse { product: None }),
        round_trip(c::GetCustomer { id: s("C") }),
        round_trip(c::GetCustomerResponse {
            customer: Some(customer),
        }),
        round_trip(c::GetCustomerResponse { customer: None }),
    ]
    .into_iter()
    .collect()
}

#[test]
fn every_catalogued_message_round_trips() {
    let covered = round_trip_everything();
    for entry in CATALOGUE {
        assert!(
            covered.contains(&entry.name()),
            "{} has no round-trip case",
            entry.name()
        );
    }
}

#[test]
fn catalogue_counts_match_the_spec() {
    let count = |kind| CATALOGUE.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(Kind::Event), 23, "spec/messaging.md §5.1");
    assert_eq!(count(Kind::Command), 7, "spec/messaging.md §5.2");
    // CreatedShoppingList plus the bare success/failure payload.
    assert_eq!(count(Kind::Reply), 2, "spec/messaging.md §5.3");
    assert_eq!(count(Kind::Query), 3);
}

#[test]
fn names_are_unique_and_fully_qualified() {
    let mut seen = BTreeSet::new();
    for entry in CATALOGUE {
        let name = entry.name();
        assert!(seen.insert(name.clone()), "{name} is catalogued twice");
        if name == "messaging.Empty" {
            continue;
        }
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(parts.len(), 3, "{name} is not <service>.v1.<Message>");
        assert_eq!(parts[1], "v1", "{name}");
        // Events, commands and queries live on their own service's subjects; replies go to the
        // saga's.
        if entry.kind != Kind::Reply {
            let service = entry.subject.split('.').next().unwrap();
            assert_eq!(parts[0], service, "{name} travels on {}", entry.subject);
        }
    }
    assert_eq!(
        stores::v1::ProductAdded::full_name(),
        "stores.v1.ProductAdded"
    );
    assert_eq!(
        depot::v1::CreatedShoppingList::message_name(),
        "depot.v1.CreatedShoppingList"
    );
}

#[test]
fn names_on_the_product_subject_are_the_five_product_events() {
    assert_eq!(
        names_on("stores.events.Product"),
        [
            "stores.v1.ProductAdded",
            "stores.v1.ProductRebranded",
            "stores.v1.ProductPriceIncreased",
            "stores.v1.ProductPriceDecreased",
            "stores.v1.ProductRemoved",
        ]
    );
}

#[test]
fn names_on_other_subjects() {
    assert_eq!(
        names_on(subjects::STORE_EVENTS),
        [
            "stores.v1.StoreCreated",
            "stores.v1.StoreParticipationToggled",
            "stores.v1.StoreRebranded"
        ]
    );
    assert_eq!(
        names_on(CREATE_ORDER_REPLIES),
        ["depot.v1.CreatedShoppingList", "messaging.Empty"]
    );
    assert_eq!(
        names_on(subjects::DEPOT_COMMANDS),
        [
            "depot.v1.CreateShoppingList",
            "depot.v1.CancelShoppingList",
            "depot.v1.InitiateShopping"
        ]
    );
    assert_eq!(names_on(subjects::ORDER_EVENTS).len(), 6);
    assert_eq!(
        names_on("stores.queries.GetProduct"),
        ["stores.v1.GetProduct"]
    );
    assert!(names_on("nobody.events.Nothing").is_empty());
    // Relative subjects only: the deployment prefix is the bus's business.
    assert!(names_on("mallbots.stores.events.Product").is_empty());
}

#[test]
fn subjects_match_the_spec_table() {
    // spec/messaging.md §1, without the `mallbots.` prefix.
    assert_eq!(
        ALL_SUBJECTS,
        [
            "stores.events.Store",
            "stores.events.Product",
            "baskets.events.Basket",
            "customers.events.Customer",
            "depot.events.ShoppingList",
            "ordering.events.Order",
            "payments.events.Invoice",
            "customers.commands",
            "depot.commands",
            "ordering.commands",
            "payments.commands",
            "cosec.replies.CreateOrder",
        ]
    );
    // Every stream message is on a stream subject, and every stream subject carries something.
    for entry in CATALOGUE.iter().filter(|e| e.kind != Kind::Query) {
        assert!(
            ALL_SUBJECTS.contains(&entry.subject),
            "{} on {}",
            entry.name(),
            entry.subject
        );
    }
    for subject in ALL_SUBJECTS {
        assert!(
            !names_on(subject).is_empty(),
            "nothing travels on {subject}"
        );
    }
}

#[test]
fn each_message_is_on_its_spec_subject() {
    // A few rows of spec/messaging.md §5 checked through the trait constants themselves.
    assert_eq!(stores::v1::StoreRebranded::SUBJECT, "stores.events.Store");
    assert_eq!(
        stores::v1::ProductPriceDecreased::SUBJECT,
        "stores.events.Product"
    );
    assert_eq!(
        baskets::v1::BasketCheckedOut::SUBJECT,
        "baskets.events.Basket"
    );
    assert_eq!(
        customers::v1::CustomerSmsChanged::SUBJECT,
        "customers.events.Customer"
    );
    assert_eq!(
        depot::v1::ShoppingListCompleted::SUBJECT,
        "depot.events.ShoppingList"
    );
    assert_eq!(ordering::v1::OrderReadied::SUBJECT, "ordering.events.Order");
    assert_eq!(
        payments::v1::InvoicePaid::SUBJECT,
        "payments.events.Invoice"
    );
    assert_eq!(
        customers::v1::AuthorizeCustomer::SUBJECT,
        "customers.commands"
    );
    assert_eq!(depot::v1::InitiateShopping::SUBJECT, "depot.commands");
    assert_eq!(payments::v1::ConfirmPayment::SUBJECT, "payments.commands");
    assert_eq!(ordering::v1::ApproveOrder::SUBJECT, "ordering.commands");
    assert_eq!(stores::v1::GetStore::SUBJECT, "stores.queries.GetStore");
    assert_eq!(stores::v1::GetProduct::SUBJECT, "stores.queries.GetProduct");
    assert_eq!(
        customers::v1::GetCustomer::SUBJECT,
        "customers.queries.GetCustomer"
    );
    assert_eq!(
        entry("depot.v1.CreatedShoppingList").map(|e| e.subject),
        Some(CREATE_ORDER_REPLIES)
    );
    assert_eq!(
        entry("ordering.v1.OrderCreated").map(|e| e.kind),
        Some(Kind::Event)
    );
    assert!(
        entry("stores.v1.Store").is_none(),
        "query answers' parts are not catalogued"
    );
}

#[test]
fn keys_are_the_aggregate_ids() {
    let added = stores::v1::ProductAdded {
        id: s("P"),
        store_id: s("S"),
        ..Default::default()
    };
    assert_eq!(Event::key(&added), "P");
    let completed = depot::v1::ShoppingListCompleted {
        id: s("L"),
        order_id: s("B"),
    };
    assert_eq!(Event::key(&completed), "L");
    let paid = payments::v1::InvoicePaid {
        id: s("I"),
        order_id: s("B"),
    };
    assert_eq!(Event::key(&paid), "I");
    let create = depot::v1::CreateShoppingList {
        order_id: s("B"),
        items: vec![],
    };
    assert_eq!(Command::key(&create), "B");
    let approve = ordering::v1::ApproveOrder {
        id: s("B"),
        shopping_id: s("L"),
    };
    assert_eq!(Command::key(&approve), "B");
}

#[test]
fn an_envelope_carries_and_decodes_a_message() {
    let event = stores::v1::ProductPriceIncreased {
        id: s("P"),
        delta: 1.0,
        price: 10.99,
    };
    let envelope = Envelope::new(
        format!("mallbots.{}", stores::v1::ProductPriceIncreased::SUBJECT),
        &event,
    );
    assert_eq!(envelope.name, "stores.v1.ProductPriceIncreased");
    assert_eq!(envelope.subject, "mallbots.stores.events.Product");
    assert_eq!(
        envelope
            .decode::<stores::v1::ProductPriceIncreased>()
            .unwrap(),
        event
    );
    // Same subject, other type: refused by name, never misread.
    assert!(
        envelope
            .decode::<stores::v1::ProductPriceDecreased>()
            .is_err()
    );
}

#[test]
fn a_not_found_answer_is_an_unset_field() {
    let bytes = stores::v1::GetProductResponse { product: None }.encode_to_vec();
    assert!(bytes.is_empty(), "an unknown id costs no payload");
    let decoded = stores::v1::GetProductResponse::decode(bytes.as_slice()).unwrap();
    assert!(decoded.product.is_none());
    // A found entity with every field at its default is still "found".
    let found = customers::v1::GetCustomerResponse {
        customer: Some(Default::default()),
    };
    let decoded =
        customers::v1::GetCustomerResponse::decode(found.encode_to_vec().as_slice()).unwrap();
    assert!(decoded.customer.is_some());
}

#[test]
fn query_answer_types_are_wired() {
    fn answer_name<Q: Query>() -> String {
        <Q::Response as Message>::message_name()
    }
    assert_eq!(
        answer_name::<stores::v1::GetStore>(),
        "stores.v1.GetStoreResponse"
    );
    assert_eq!(
        answer_name::<stores::v1::GetProduct>(),
        "stores.v1.GetProductResponse"
    );
    assert_eq!(
        answer_name::<customers::v1::GetCustomer>(),
        "customers.v1.GetCustomerResponse"
    );
}
