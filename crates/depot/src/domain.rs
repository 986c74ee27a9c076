//! The shopping list a bot picks for one order: pure state and its rules, no I/O.
//!
//! A list groups the order's lines by store ("stops"), with the store's name and location and
//! each product's name, looked up when the list is made. Its life (spec modules.md §4, with the
//! fixes of weaknesses.md A1/A2/A13):
//!
//! ```text
//! pending --initiate--> available --assign(bot)--> assigned --complete--> completed
//!    \____________________\___________________________\--cancel--> canceled
//! ```
//!
//! `active` (a bot on its way) is a status of the original that nothing sets yet; a list in it
//! may still be completed or cancelled. Each change returns the domain events it caused; the
//! application publishes the one other services need (ShoppingListCompleted).

use serde::{Deserialize, Serialize};

/// Where a list stands (the original's spellings, single "l" in `canceled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStatus {
    /// Made by the saga, waiting for the order's payment to be confirmed.
    Pending,
    /// Released to the bots.
    Available,
    /// A bot took it.
    Assigned,
    /// A bot is shopping (never set today).
    Active,
    /// Every item picked.
    Completed,
    /// Called off.
    Canceled,
}

impl ListStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ListStatus::Pending => "pending",
            ListStatus::Available => "available",
            ListStatus::Assigned => "assigned",
            ListStatus::Active => "active",
            ListStatus::Completed => "completed",
            ListStatus::Canceled => "canceled",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(text: &str) -> Option<Self> {
        [
            ListStatus::Pending,
            ListStatus::Available,
            ListStatus::Assigned,
            ListStatus::Active,
            ListStatus::Completed,
            ListStatus::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A store as the depot needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// Its id.
    pub id: String,
    /// Where the bot goes.
    pub name: String,
    /// Where in the mall.
    pub location: String,
}

/// A product as the depot needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    /// Its id.
    pub id: String,
    /// The store that sells it.
    pub store_id: String,
    /// What the bot looks for.
    pub name: String,
}

/// One order line as asked for: which product, from which store, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedItem {
    /// The product.
    pub product_id: String,
    /// The store.
    pub store_id: String,
    /// How many.
    pub quantity: i32,
}

/// One order line with its store and product looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    /// The store.
    pub store: StoreInfo,
    /// The product.
    pub product: ProductInfo,
    /// How many.
    pub quantity: i32,
}

/// One product to pick at a stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopItem {
    /// The product.
    pub product_id: String,
    /// Its name.
    pub product_name: String,
    /// How many, all lines of the product summed.
    pub quantity: i32,
}

/// One store to visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// The store.
    pub store_id: String,
    /// Its name.
    pub store_name: String,
    /// Its location.
    pub store_location: String,
    /// What to pick there, in the order first asked for.
    pub items: Vec<StopItem>,
}

/// A shopping list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShoppingList {
    /// Its id.
    pub id: String,
    /// The order it is for.
    pub order_id: String,
    /// The stores to visit, in the order first asked for.
    pub stops: Vec<Stop>,
    /// The bot that took it (empty until assigned).
    pub assigned_bot_id: String,
    /// Where it stands.
    pub status: ListStatus,
}

/// What happened to a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEvent {
    /// It was made.
    Created,
    /// It was called off.
    Canceled,
    /// It was released to the bots.
    Initiated,
    /// Bot `bot_id` took it.
    Assigned {
        /// The bot.
        bot_id: String,
    },
    /// Every item was picked.
    Completed,
}

/// A rule a request would break. The transition texts are the original's (spec api.md §2.5);
/// the input checks are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// A list for no order.
    #[error("the order id cannot be blank")]
    BlankOrder,
    /// A list with nothing to pick.
    #[error("the shopping list has no items")]
    NoItems,
    /// A line of zero or fewer items.
    #[error("the item quantity must be greater than zero")]
    BadQuantity,
    /// A line whose product belongs to another store than the one given.
    #[error("the product does not belong to the store")]
    ProductNotInStore,
    /// Cancel when completed or already canceled.
    #[error("the shopping list cannot be canceled")]
    CannotCancel,
    /// Initiate when not pending.
    #[error("the shopping list cannot be initiated")]
    CannotInitiate,
    /// Assign when not available.
    #[error("the shopping list cannot be assigned")]
    CannotAssign,
    /// Assign to no bot.
    #[error("the bot id cannot be blank")]
    BlankBot,
    /// Complete when not assigned (or active).
    #[error("the shopping list cannot be completed")]
    CannotComplete,
}

/// What a change returns: the events it caused.
pub type Change = Result<Vec<ListEvent>, ListError>;

/// Checks a request before anything is looked up: an order, at least one line, and positive
/// quantities.
pub fn check_request(order_id: &str, items: &[RequestedItem]) -> Result<(), ListError> {
    if order_id.trim().is_empty() {
        return Err(ListError::BlankOrder);
    }
    if items.is_empty() {
        return Err(ListError::NoItems);
    }
    if items.iter().any(|i| i.quantity <= 0) {
        return Err(ListError::BadQuantity);
    }
    Ok(())
}

impl ShoppingList {
    /// A pending list `id` for order `order_id`: lines grouped by store, repeated products'
    /// quantities summed (the original kept only the first quantity, weaknesses.md A13).
    pub fn create(
        id: impl Into<String>,
        order_id: &str,
        items: Vec<PlannedItem>,
    ) -> Result<(ShoppingList, Vec<ListEvent>), ListError> {
        let requested: Vec<RequestedItem> = items
            .iter()
            .map(|i| RequestedItem {
                product_id: i.product.id.clone(),
                store_id: i.store.id.clone(),
                quantity: i.quantity,
            })
            .collect();
        check_request(order_id, &requested)?;
        let mut stops: Vec<Stop> = Vec::new();
        for item in items {
            if item.product.store_id != item.store.id {
                return Err(ListError::ProductNotInStore);
            }
            let stop = match stops.iter().position(|s| s.store_id == item.store.id) {
                Some(at) => &mut stops[at],
                None => {
                    stops.push(Stop {
                        store_id: item.store.id,
                        store_name: item.store.name,
                        store_location: item.store.location,
                        items: Vec::new(),
                    });
                    let last = stops.len() - 1;
                    &mut stops[last]
                }
            };
            match stop
                .items
                .iter_mut()
                .find(|i| i.product_id == item.product.id)
            {
                Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
                None => stop.items.push(StopItem {
                    product_id: item.product.id,
                    product_name: item.product.name,
                    quantity: item.quantity,
                }),
            }
        }
        let list = ShoppingList {
            id: id.into(),
            order_id: order_id.to_owned(),
            stops,
            assigned_bot_id: String::new(),
            status: ListStatus::Pending,
        };
        Ok((list, vec![ListEvent::Created]))
    }

    /// Calls the list off: possible until it is completed.
    pub fn cancel(&mut self) -> Change {
        match self.status {
            ListStatus::Pending
            | ListStatus::Available
            | ListStatus::Assigned
            | ListStatus::Active => {
                self.status = ListStatus::Canceled;
                Ok(vec![ListEvent::Canceled])
            }
            ListStatus::Completed | ListStatus::Canceled => Err(ListError::CannotCancel),
        }
    }

    /// Releases a pending list to the bots (the original left it pending, so no bot could ever
    /// take it, weaknesses.md A1/A2).
    pub fn initiate(&mut self) -> Change {
        match self.status {
            ListStatus::Pending => {
                self.status = ListStatus::Available;
                Ok(vec![ListEvent::Initiated])
            }
            _ => Err(ListError::CannotInitiate),
        }
    }

    /// Bot `bot_id` takes an available list.
    pub fn assign(&mut self, bot_id: &str) -> Change {
        if self.status != ListStatus::Available {
            return Err(ListError::CannotAssign);
        }
        if bot_id.trim().is_empty() {
            return Err(ListError::BlankBot);
        }
        self.assigned_bot_id = bot_id.to_owned();
        self.status = ListStatus::Assigned;
        Ok(vec![ListEvent::Assigned {
            bot_id: bot_id.to_owned(),
        }])
    }

    /// The bot picked everything.
    pub fn complete(&mut self) -> Change {
        match self.status {
            ListStatus::Assigned | ListStatus::Active => {
                self.status = ListStatus::Completed;
                Ok(vec![ListEvent::Completed])
            }
            _ => Err(ListError::CannotComplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: &str) -> StoreInfo {
        StoreInfo {
            id: id.into(),
            name: format!("Store {id}"),
            location: format!("Aisle {id}"),
        }
    }

    fn planned(store_id: &str, product_id: &str, quantity: i32) -> PlannedItem {
        PlannedItem {
            store: store(store_id),
            product: ProductInfo {
                id: product_id.into(),
                store_id: store_id.into(),
                name: format!("Product {product_id}"),
            },
            quantity,
        }
    }

    /// Given a list in `status`.
    fn given(status: ListStatus) -> ShoppingList {
        let (mut list, _) = ShoppingList::create("L", "O", vec![planned("s1", "p1", 1)]).unwrap();
        list.status = status;
        if matches!(
            status,
            ListStatus::Assigned | ListStatus::Active | ListStatus::Completed
        ) {
            list.assigned_bot_id = "bot".into();
        }
        list
    }

    const ALL: [ListStatus; 6] = [
        ListStatus::Pending,
        ListStatus::Available,
        ListStatus::Assigned,
        ListStatus::Active,
        ListStatus::Completed,
        ListStatus::Canceled,
    ];

    #[test]
    fn create_groups_lines_by_store_and_sums_repeated_products() {
        let (list, events) = ShoppingList::create(
            "L",
            "O",
            vec![
                planned("s1", "p1", 2),
                planned("s2", "p2", 1),
                planned("s1", "p3", 4),
                planned("s1", "p1", 3),
            ],
        )
        .unwrap();
        assert_eq!(events, vec![ListEvent::Created]);
        assert_eq!(list.status, ListStatus::Pending);
        assert_eq!(list.order_id, "O");
        assert_eq!(list.assigned_bot_id, "");
        let stops: Vec<(&str, Vec<(&str, i32)>)> = list
            .stops
            .iter()
            .map(|s| {
                (
                    s.store_id.as_str(),
                    s.items
                        .iter()
                        .map(|i| (i.product_id.as_str(), i.quantity))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            stops,
            vec![("s1", vec![("p1", 5), ("p3", 4)]), ("s2", vec![("p2", 1)])]
        );
        assert_eq!(list.stops[0].store_name, "Store s1");
        assert_eq!(list.stops[0].store_location, "Aisle s1");
        assert_eq!(list.stops[0].items[1].product_name, "Product p3");
    }

    #[test]
    fn create_refuses_bad_requests() {
        assert_eq!(
            ShoppingList::create("L", " ", vec![planned("s", "p", 1)]).unwrap_err(),
            ListError::BlankOrder
        );
        assert_eq!(
            ShoppingList::create("L", "O", vec![]).unwrap_err(),
            ListError::NoItems
        );
        assert_eq!(
            ShoppingList::create("L", "O", vec![planned("s", "p", 0)]).unwrap_err(),
            ListError::BadQuantity
        );
        let mut elsewhere = planned("s1", "p", 1);
        elsewhere.product.store_id = "s2".into();
        assert_eq!(
            ShoppingList::create("L", "O", vec![elsewhere]).unwrap_err(),
            ListError::ProductNotInStore
        );
    }

    #[test]
    fn initiate_releases_only_a_pending_list() {
        let mut list = given(ListStatus::Pending);
        assert_eq!(list.initiate(), Ok(vec![ListEvent::Initiated]));
        assert_eq!(list.status, ListStatus::Available);
        for status in ALL.into_iter().filter(|s| *s != ListStatus::Pending) {
            let mut list = given(status);
            assert_eq!(
                list.initiate(),
                Err(ListError::CannotInitiate),
                "{status:?}"
            );
            assert_eq!(list.status, status);
        }
    }

    #[test]
    fn assign_only_an_available_list_to_a_bot() {
        let mut list = given(ListStatus::Available);
        assert_eq!(list.assign(" "), Err(ListError::BlankBot));
        assert_eq!(list.status, ListStatus::Available);
        assert_eq!(
            list.assign("bot-7"),
            Ok(vec![ListEvent::Assigned {
                bot_id: "bot-7".into()
            }])
        );
        assert_eq!(list.status, ListStatus::Assigned);
        assert_eq!(list.assigned_bot_id, "bot-7");
        for status in ALL.into_iter().filter(|s| *s != ListStatus::Available) {
            let mut list = given(status);
            assert_eq!(
                list.assign("bot"),
                Err(ListError::CannotAssign),
                "{status:?}"
            );
            assert_eq!(list.status, status);
        }
    }

    #[test]
    fn complete_only_an_assigned_or_active_list() {
        for status in [ListStatus::Assigned, ListStatus::Active] {
            let mut list = given(status);
            assert_eq!(list.complete(), Ok(vec![ListEvent::Completed]));
            assert_eq!(list.status, ListStatus::Completed);
        }
        for status in [
            ListStatus::Pending,
            ListStatus::Available,
            ListStatus::Completed,
            ListStatus::Canceled,
        ] {
            let mut list = given(status);
            assert_eq!(
                list.complete(),
                Err(ListError::CannotComplete),
                "{status:?}"
            );
            assert_eq!(list.status, status);
        }
    }

    #[test]
    fn cancel_until_completed() {
        for status in [
            ListStatus::Pending,
            ListStatus::Available,
            ListStatus::Assigned,
            ListStatus::Active,
        ] {
            let mut list = given(status);
            assert_eq!(list.cancel(), Ok(vec![ListEvent::Canceled]), "{status:?}");
            assert_eq!(list.status, ListStatus::Canceled);
        }
        for status in [ListStatus::Completed, ListStatus::Canceled] {
            let mut list = given(status);
            assert_eq!(list.cancel(), Err(ListError::CannotCancel), "{status:?}");
            assert_eq!(list.status, status);
        }
    }

    #[test]
    fn statuses_round_trip_their_spelling() {
        for s in ALL {
            assert_eq!(ListStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ListStatus::Canceled.as_str(), "canceled");
        assert_eq!(ListStatus::parse("cancelled"), None);
    }
}
