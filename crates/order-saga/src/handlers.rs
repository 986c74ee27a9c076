//! The saga's two durable consumers: `cosec-ordering` starts a saga per created order, and
//! `cosec-replies` feeds every reply on the saga's reply channel to the engine.

use contracts::depot::v1::CreatedShoppingList;
use contracts::ordering::v1::OrderCreated;
use contracts::subjects::{CREATE_ORDER_REPLIES, ORDER_EVENTS};
use messaging::{Empty, HandlerError, Message, Subscription};

use crate::create_order::CreateOrderData;
use crate::engine::Orchestrator;

/// Durable consumer of order events.
pub const ORDERING_CONSUMER: &str = "cosec-ordering";
/// Durable consumer of the create-order replies.
pub const REPLIES_CONSUMER: &str = "cosec-replies";

/// `cosec-ordering`: `OrderCreated` starts the saga whose id is the order id; the other order
/// events are known and skipped.
pub fn order_events(saga: Orchestrator<CreateOrderData>) -> Subscription {
    let created = OrderCreated::message_name();
    let others: Vec<String> = contracts::names_on(ORDER_EVENTS)
        .into_iter()
        .filter(|name| *name != created)
        .collect();
    Subscription::new(ORDERING_CONSUMER, ORDER_EVENTS)
        .on(move |event: OrderCreated, ctx| {
            let saga = saga.clone();
            async move {
                if event.id.is_empty() {
                    return Err(HandlerError::permanent("OrderCreated without an order id"));
                }
                let data = CreateOrderData::from(&event);
                saga.start(&ctx, &event.id, data).await
            }
        })
        .ignore(others)
}

/// `cosec-replies`: every reply type on the channel (bare `Empty` and the depot's
/// `CreatedShoppingList`) goes to the engine, which matches it to the outstanding command; a
/// name nobody catalogued is dead-lettered by the consumer.
pub fn replies(saga: Orchestrator<CreateOrderData>) -> Subscription {
    let on_created = saga.clone();
    Subscription::new(REPLIES_CONSUMER, CREATE_ORDER_REPLIES)
        .on(move |_: Empty, ctx| {
            let saga = saga.clone();
            async move { saga.handle_reply(&ctx).await }
        })
        .on(move |_: CreatedShoppingList, ctx| {
            let saga = on_created.clone();
            async move { saga.handle_reply(&ctx).await }
        })
}
