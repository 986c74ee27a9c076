//! The contracts between services: every message that crosses a service boundary.
//!
//! The types are generated from the `.proto` files under the workspace's `proto/` folder (one
//! module per service and version, e.g. [`stores::v1`]); services share nothing else. This crate
//! adds what the protobuf files cannot say: the kind of each message (event, command, reply or
//! query), the subject it travels on and the key that orders it — by implementing the
//! [`messaging`] kind traits in one table, [`CATALOGUE`], which also answers "which message names
//! travel on this subject" ([`names_on`]) so a consumer can ignore the names it knows but does
//! not handle and still dead-letter the ones nobody knows.
//!
//! Subjects are relative: the bus puts the deployment prefix (e.g. `mallbots.`) in front.

/// Generated message types of the stores service.
pub mod stores {
    /// Version 1 of the stores contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/stores.v1.rs"));
    }
}

/// Generated message types of the customers service.
pub mod customers {
    /// Version 1 of the customers contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/customers.v1.rs"));
    }
}

/// Generated message types of the baskets service.
pub mod baskets {
    /// Version 1 of the baskets contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/baskets.v1.rs"));
    }
}

/// Generated message types of the ordering service.
pub mod ordering {
    /// Version 1 of the ordering contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/ordering.v1.rs"));
    }
}

/// Generated message types of the payments service.
pub mod payments {
    /// Version 1 of the payments contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/payments.v1.rs"));
    }
}

/// Generated message types of the depot service.
pub mod depot {
    /// Version 1 of the depot contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/depot.v1.rs"));
    }
}

/// The relative subjects of the stream, named once so subscriptions and the catalogue agree.
///
/// Events go to `<service>.events.<Aggregate>`, commands to `<service>.commands`, saga replies to
/// `<saga owner>.replies.<Saga>` (spec/messaging.md §1). Query subjects are not here: queries use
/// NATS request/reply outside the stream; each one's subject is its [`messaging::Query::SUBJECT`].
pub mod subjects {
    /// Store events (`stores.v1.Store*`).
    pub const STORE_EVENTS: &str = "stores.events.Store";
    /// Product events (`stores.v1.Product*`).
    pub const PRODUCT_EVENTS: &str = "stores.events.Product";
    /// Basket events.
    pub const BASKET_EVENTS: &str = "baskets.events.Basket";
    /// Customer events.
    pub const CUSTOMER_EVENTS: &str = "customers.events.Customer";
    /// Shopping-list events of the depot.
    pub const SHOPPING_LIST_EVENTS: &str = "depot.events.ShoppingList";
    /// Order events.
    pub const ORDER_EVENTS: &str = "ordering.events.Order";
    /// Invoice events of payments.
    pub const INVOICE_EVENTS: &str = "payments.events.Invoice";
    /// Commands for customers.
    pub const CUSTOMERS_COMMANDS: &str = "customers.commands";
    /// Commands for the depot.
    pub const DEPOT_COMMANDS: &str = "depot.commands";
    /// Commands for ordering.
    pub const ORDERING_COMMANDS: &str = "ordering.commands";
    /// Commands for payments.
    pub const PAYMENTS_COMMANDS: &str = "payments.commands";
    /// Every reply to a command of the create-order saga (cosec). The saga names it as the reply
    /// channel of each command it sends.
    pub const CREATE_ORDER_REPLIES: &str = "cosec.replies.CreateOrder";

    /// Every subject that travels in the stream, in the order of the spec's subject table.
    pub const ALL_SUBJECTS: [&str; 12] = [
        STORE_EVENTS,
        PRODUCT_EVENTS,
        BASKET_EVENTS,
        CUSTOMER_EVENTS,
        SHOPPING_LIST_EVENTS,
        ORDER_EVENTS,
        INVOICE_EVENTS,
        CUSTOMERS_COMMANDS,
        DEPOT_COMMANDS,
        ORDERING_COMMANDS,
        PAYMENTS_COMMANDS,
        CREATE_ORDER_REPLIES,
    ];
}

pub use subjects::{ALL_SUBJECTS, CREATE_ORDER_REPLIES};

/// What a catalogued message is for; decides which [`messaging`] trait it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An integration event ([`messaging::Event`]).
    Event,
    /// A command ([`messaging::Command`]).
    Command,
    /// A command reply payload ([`messaging::Reply`]).
    Reply,
    /// A synchronous question ([`messaging::Query`]); its answer type is not catalogued, since it
    /// travels on the asker's private inbox rather than on a subject.
    Query,
}

/// One row of the [`CATALOGUE`]: a message, its kind and the relative subject it travels on.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Event, command, reply or query.
    pub kind: Kind,
    /// Relative subject, e.g. `stores.events.Product`.
    pub subject: &'static str,
    // A function rather than a string: `prost::Name` builds the full name at run time, and
    // pointing at it keeps the table a pure consequence of the trait impls.
    full_name: fn() -> String,
}

impl Entry {
    /// The fully qualified message name, e.g. `stores.v1.ProductAdded` — the `Message-Name`
    /// header of every envelope carrying it.
    pub fn name(&self) -> String {
        (self.full_name)()
    }
}

/// Implements the [`messaging`] kind traits for every message and builds [`CATALOGUE`] from the
/// same rows, so a message's subject cannot differ between its trait impl and the table.
///
/// Rows: `Type => subject, key_field;` for events and commands (the key is the field naming the
/// aggregate instance the message is about), `Type => subject;` for replies, `Type => subject,
/// Response;` for queries. `catalogued_only` lists messages defined elsewhere (whose traits their
/// own crate implements) that also travel on one of our subjects.
macro_rules! catalogue {
    (
        events { $($event:ty => $event_subject:expr, $event_key:ident;)* }
        commands { $($command:ty => $command_subject:expr, $command_key:ident;)* }
        replies { $($reply:ty => $reply_subject:expr;)* }
        queries { $($query:ty => $query_subject:expr, $response:ty;)* }
        catalogued_only { $($other:ty => $other_kind:ident, $other_subject:expr;)* }
    ) => {
        /// Calls `visitor` with the Rust type of every catalogued message and every query
        /// answer, from the same rows as [`CATALOGUE`]: the property tests run one generic
        /// check per type and cannot miss one the table gains.
        #[cfg(test)]
        pub(crate) fn visit_every_message<V: MessageVisitor>(visitor: &mut V) {
            $(visitor.visit::<$event>();)*
            $(visitor.visit::<$command>();)*
            $(visitor.visit::<$reply>();)*
            $(visitor.visit::<$query>(); visitor.visit::<$response>();)*
            $(visitor.visit::<$other>();)*
        }

        $(
            impl messaging::Event for $event {
                const SUBJECT: &'static str = $event_subject;
                fn key(&self) -> String {
                    self.$event_key.clone()
                }
            }
        )*
        $(
            impl messaging::Command for $command {
                const SUBJECT: &'static str = $command_subject;
                fn key(&self) -> String {
                    self.$command_key.clone()
                }
            }
        )*
        $(
            impl messaging::Reply for $reply {}
        )*
        $(
            impl messaging::Query for $query {
                const SUBJECT: &'static str = $query_subject;
                type Response = $response;
            }
        )*

        /// Every message that travels on a known subject, with its kind and subject: the 23
        /// integration events, the 7 commands, the replies of the create-order saga and the
        /// queries. Built from the same macro rows that implement the kind traits, so the table
        /// and the impls cannot disagree.
        pub static CATALOGUE: &[Entry] = &[
            $(Entry {
                kind: Kind::Event,
                subject: <$event as messaging::Event>::SUBJECT,
                full_name: <$event as prost::Name>::full_name,
            },)*
            $(Entry {
                kind: Kind::Command,
                subject: <$command as messaging::Command>::SUBJECT,
                full_name: <$command as prost::Name>::full_name,
            },)*
            $(Entry {
                kind: Kind::Reply,
                subject: $reply_subject,
                full_name: <$reply as prost::Name>::full_name,
            },)*
            $(Entry {
                kind: Kind::Query,
                subject: <$query as messaging::Query>::SUBJECT,
                full_name: <$query as prost::Name>::full_name,
            },)*
            $(Entry {
                kind: Kind::$other_kind,
                subject: $other_subject,
                full_name: <$other as prost::Name>::full_name,
            },)*
        ];
    };
}

catalogue! {
    events {
        stores::v1::StoreCreated => subjects::STORE_EVENTS, id;
        stores::v1::StoreParticipationToggled => subjects::STORE_EVENTS, id;
        stores::v1::StoreRebranded => subjects::STORE_EVENTS, id;
        stores::v1::ProductAdded => subjects::PRODUCT_EVENTS, id;
        stores::v1::ProductRebranded => subjects::PRODUCT_EVENTS, id;
        stores::v1::ProductPriceIncreased => subjects::PRODUCT_EVENTS, id;
        stores::v1::ProductPriceDecreased => subjects::PRODUCT_EVENTS, id;
        stores::v1::ProductRemoved => subjects::PRODUCT_EVENTS, id;
        baskets::v1::BasketStarted => subjects::BASKET_EVENTS, id;
        baskets::v1::BasketCanceled => subjects::BASKET_EVENTS, id;
        baskets::v1::BasketCheckedOut => subjects::BASKET_EVENTS, id;
        customers::v1::CustomerRegistered => subjects::CUSTOMER_EVENTS, id;
        customers::v1::CustomerSmsChanged => subjects::CUSTOMER_EVENTS, id;
        customers::v1::CustomerEnabled => subjects::CUSTOMER_EVENTS, id;
        customers::v1::CustomerDisabled => subjects::CUSTOMER_EVENTS, id;
        depot::v1::ShoppingListCompleted => subjects::SHOPPING_LIST_EVENTS, id;
        ordering::v1::OrderCreated => subjects::ORDER_EVENTS, id;
        ordering::v1::OrderRejected => subjects::ORDER_EVENTS, id;
        ordering::v1::OrderApproved => subjects::ORDER_EVENTS, id;
        ordering::v1::OrderReadied => subjects::ORDER_EVENTS, id;
        ordering::v1::OrderCanceled => subjects::ORDER_EVENTS, id;
        ordering::v1::OrderCompleted => subjects::ORDER_EVENTS, id;
        payments::v1::InvoicePaid => subjects::INVOICE_EVENTS, id;
    }
    commands {
        customers::v1::AuthorizeCustomer => subjects::CUSTOMERS_COMMANDS, id;
        // The list does not exist yet: the order it is made for is what the command is about.
        depot::v1::CreateShoppingList => subjects::DEPOT_COMMANDS, order_id;
        depot::v1::CancelShoppingList => subjects::DEPOT_COMMANDS, id;
        depot::v1::InitiateShopping => subjects::DEPOT_COMMANDS, id;
        payments::v1::ConfirmPayment => subjects::PAYMENTS_COMMANDS, id;
        ordering::v1::RejectOrder => subjects::ORDERING_COMMANDS, id;
        ordering::v1::ApproveOrder => subjects::ORDERING_COMMANDS, id;
    }
    replies {
        depot::v1::CreatedShoppingList => subjects::CREATE_ORDER_REPLIES;
    }
    queries {
        stores::v1::GetStore => "stores.queries.GetStore", stores::v1::GetStoreResponse;
        stores::v1::GetProduct => "stores.queries.GetProduct", stores::v1::GetProductResponse;
        customers::v1::GetCustomer =>
            "customers.queries.GetCustomer", customers::v1::GetCustomerResponse;
    }
    catalogued_only {
        // The bare success/failure reply of every command but CreateShoppingList.
        messaging::Empty => Reply, subjects::CREATE_ORDER_REPLIES;
    }
}

/// A check generic over a message type, run for each by `visit_every_message`.
#[cfg(test)]
pub(crate) trait MessageVisitor {
    fn visit<M: messaging::Message + PartialEq + std::fmt::Debug>(&mut self);
}

/// The fully qualified names of every message that travels on the relative `subject`, in table
/// order; empty for an unknown subject.
///
/// A consumer that handles only some of them passes the rest to `Subscription::ignore`, so known
/// but uninteresting messages are acked and skipped while a truly unknown name still fails (and
/// ends in the dead-letter subject) instead of vanishing.
pub fn names_on(subject: &str) -> Vec<String> {
    CATALOGUE
        .iter()
        .filter(|entry| entry.subject == subject)
        .map(Entry::name)
        .collect()
}

/// The catalogue row of the message with this fully qualified name, if it is one of ours.
pub fn entry(name: &str) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|entry| entry.name() == name)
}

pub mod topology;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
