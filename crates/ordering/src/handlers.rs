//! The messages ordering consumes (spec messaging.md §6, plus the InvoicePaid consumer the
//! original lacked, weaknesses.md A4):
//!
//! | durable | subject | handles |
//! |---|---|---|
//! | `ordering-baskets` | `baskets.events.Basket` | BasketCheckedOut → create the order (id = basket id) |
//! | `ordering-depot` | `depot.events.ShoppingList` | ShoppingListCompleted → ready the order |
//! | `ordering-payments` | `payments.events.Invoice` | InvoicePaid → complete the order |
//! | `ordering-commands` | `ordering.commands` | RejectOrder, ApproveOrder → reply |
//!
//! Every handler records the message in the inbox in the transaction of its effects, so a
//! redelivered message changes nothing. Events the service does not need on those subjects are
//! acked and skipped; unknown names are dead-lettered by the consumer.

use contracts::baskets::v1::BasketCheckedOut;
use contracts::depot::v1::ShoppingListCompleted;
use contracts::ordering::v1::{ApproveOrder, RejectOrder};
use contracts::payments::v1::InvoicePaid;
use contracts::subjects;
use messaging::{Empty, HandlerError, MessageContext, Outcome, Subscription, with_state};
use persistence::{inbox, outbox};

use crate::application::{AppError, Orders};
use crate::domain::{Decision, Order, OrderItem};

/// The durable consumers of the service, ready for `ModuleContext::subscribe`.
pub fn subscriptions(orders: &Orders) -> Vec<Subscription> {
    vec![
        Subscription::new("ordering-baskets", subjects::BASKET_EVENTS)
            .on::<BasketCheckedOut, _, _>(with_state(orders, on_basket_checked_out))
            .ignore(contracts::names_on(subjects::BASKET_EVENTS)),
        Subscription::new("ordering-depot", subjects::SHOPPING_LIST_EVENTS)
            .on::<ShoppingListCompleted, _, _>(with_state(orders, on_shopping_list_completed))
            .ignore(contracts::names_on(subjects::SHOPPING_LIST_EVENTS)),
        Subscription::new("ordering-payments", subjects::INVOICE_EVENTS)
            .on::<InvoicePaid, _, _>(with_state(orders, on_invoice_paid))
            .ignore(contracts::names_on(subjects::INVOICE_EVENTS)),
        Subscription::new("ordering-commands", subjects::ORDERING_COMMANDS)
            .on::<RejectOrder, _, _>(with_state(orders, on_reject_order))
            .on::<ApproveOrder, _, _>(with_state(orders, on_approve_order))
            .ignore(contracts::names_on(subjects::ORDERING_COMMANDS)),
    ]
}

/// Infrastructure trouble is retried; anything else cannot improve by waiting.
fn failure(e: AppError) -> HandlerError {
    if e.is_retryable() {
        HandlerError::retryable(e)
    } else {
        HandlerError::permanent(e)
    }
}

fn db(e: impl Into<AppError>) -> HandlerError {
    failure(e.into())
}

/// Applies an event-driven change to order `id`: inbox, decision, events, commit.
async fn apply_event(
    orders: &Orders,
    ctx: &MessageContext,
    id: &str,
    decide: impl FnOnce(&Order) -> Decision,
) -> Result<(), HandlerError> {
    let mut tx = orders.pool().begin().await.map_err(db)?;
    if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    orders
        .execute(&mut tx, id, Some(&ctx.envelope), decide)
        .await
        .map_err(failure)?;
    tx.commit().await.map_err(db)
}

/// A checked-out basket becomes an order with the basket's id. A second checkout message for
/// the same basket (a republished event) is acked without change.
async fn on_basket_checked_out(
    orders: Orders,
    msg: BasketCheckedOut,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    if msg.id.trim().is_empty() {
        return Err(HandlerError::permanent(
            "BasketCheckedOut without a basket id",
        ));
    }
    let items: Vec<OrderItem> = msg
        .items
        .into_iter()
        .map(|i| OrderItem {
            product_id: i.product_id,
            store_id: i.store_id,
            store_name: i.store_name,
            product_name: i.product_name,
            price: i.price,
            quantity: i.quantity,
        })
        .collect();
    let basket = msg.id.clone();
    apply_event(&orders, &ctx, &msg.id, move |order| {
        if order.exists() {
            tracing::info!(order = %basket, "order already created for this basket");
            return Ok(vec![]);
        }
        order.create(&msg.customer_id, &msg.payment_id, items)
    })
    .await
}

/// The depot picked every item: the order is ready for pickup (and payments invoices it).
async fn on_shopping_list_completed(
    orders: Orders,
    msg: ShoppingListCompleted,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    apply_event(&orders, &ctx, &msg.order_id, Order::ready).await
}

/// The invoice was paid: the order is completed with that invoice.
async fn on_invoice_paid(
    orders: Orders,
    msg: InvoicePaid,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    apply_event(&orders, &ctx, &msg.order_id, |order| {
        order.complete(&msg.id)
    })
    .await
}

/// Runs a saga command: the decision's outcome is the reply, enqueued with the change (or
/// alone, on a refusal) in one transaction.
async fn answer_command(
    orders: &Orders,
    ctx: &MessageContext,
    id: &str,
    decide: impl FnOnce(&Order) -> Decision,
) -> Result<(), HandlerError> {
    let mut tx = orders.pool().begin().await.map_err(db)?;
    if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    let outcome = match orders
        .execute(&mut tx, id, Some(&ctx.envelope), decide)
        .await
    {
        Ok(_) => Outcome::Success,
        Err(AppError::Domain(refusal)) => {
            tracing::info!(order = %id, command = %ctx.envelope.name, %refusal, "command refused");
            Outcome::Failure
        }
        Err(e) => return Err(failure(e)),
    };
    let reply = ctx.reply(outcome, &Empty {})?;
    outbox::enqueue(&mut tx, &[reply]).await.map_err(db)?;
    tx.commit().await.map_err(db)
}

/// The saga's compensation: reject the order.
async fn on_reject_order(
    orders: Orders,
    cmd: RejectOrder,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    answer_command(&orders, &ctx, &cmd.id, Order::reject).await
}

/// The saga's last step: approve the order with its shopping list.
async fn on_approve_order(
    orders: Orders,
    cmd: ApproveOrder,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    answer_command(&orders, &ctx, &cmd.id, |order| {
        order.approve(&cmd.shopping_id)
    })
    .await
}
