//! The two durable consumers (spec messaging.md §6 #7, #8, each under its own durable name, not
//! shared with search as in the original, weakness B2):
//!
//! - `notifications-customers` on `customers.events.Customer`: `CustomerRegistered`,
//!   `CustomerSmsChanged` keep the cache; the other customer events are acked and skipped.
//! - `notifications-orders` on `ordering.events.Order`: `OrderCreated`, `OrderReadied`,
//!   `OrderCanceled`, `OrderRejected` text the customer; `OrderApproved` and `OrderCompleted` are
//!   acked and skipped on purpose (see [`NotificationKind`]).

use contracts::customers::v1::{CustomerRegistered, CustomerSmsChanged};
use contracts::ordering::v1::{OrderCanceled, OrderCreated, OrderReadied, OrderRejected};
use contracts::subjects;
use messaging::{MessageContext, Subscription};

use crate::application::{AppError, Notifier};
use crate::domain::{NotificationKind, OrderNotice};

/// Durable consumer of customer events.
pub const CUSTOMERS_DURABLE: &str = "notifications-customers";
/// Durable consumer of order events.
pub const ORDERS_DURABLE: &str = "notifications-orders";

/// The customers-cache consumer.
pub fn customers_subscription(app: &Notifier) -> Subscription {
    Subscription::new(CUSTOMERS_DURABLE, subjects::CUSTOMER_EVENTS)
        .on::<CustomerRegistered, _, _>({
            let app = app.clone();
            move |event, ctx: MessageContext| {
                let app = app.clone();
                async move {
                    app.customer_registered(&event, &ctx.envelope, &ctx.consumer)
                        .await
                        .map_err(AppError::into_handler_error)
                }
            }
        })
        .on::<CustomerSmsChanged, _, _>({
            let app = app.clone();
            move |event, ctx: MessageContext| {
                let app = app.clone();
                async move {
                    app.sms_changed(&event, &ctx.envelope, &ctx.consumer)
                        .await
                        .map_err(AppError::into_handler_error)
                }
            }
        })
        .ignore(contracts::names_on(subjects::CUSTOMER_EVENTS))
}

/// The order-notifications consumer.
pub fn orders_subscription(app: &Notifier) -> Subscription {
    let sub = Subscription::new(ORDERS_DURABLE, subjects::ORDER_EVENTS);
    let sub = on_order::<OrderCreated>(sub, app, NotificationKind::OrderCreated);
    let sub = on_order::<OrderReadied>(sub, app, NotificationKind::OrderReady);
    let sub = on_order::<OrderCanceled>(sub, app, NotificationKind::OrderCanceled);
    let sub = on_order::<OrderRejected>(sub, app, NotificationKind::OrderRejected);
    sub.ignore(contracts::names_on(subjects::ORDER_EVENTS))
}

/// An order event that names its order and customer.
trait AboutOrder: messaging::Message {
    /// (order id, customer id).
    fn into_ids(self) -> (String, String);
}

macro_rules! about_order {
    ($($event:ty),*) => {
        $(impl AboutOrder for $event {
            fn into_ids(self) -> (String, String) {
                (self.id, self.customer_id)
            }
        })*
    };
}

about_order!(OrderCreated, OrderReadied, OrderCanceled, OrderRejected);

/// Handles events `M` by sending a `kind` notification.
fn on_order<M: AboutOrder>(
    sub: Subscription,
    app: &Notifier,
    kind: NotificationKind,
) -> Subscription {
    let app = app.clone();
    sub.on::<M, _, _>(move |event: M, ctx: MessageContext| {
        let app = app.clone();
        async move {
            let (order_id, customer_id) = event.into_ids();
            let notice = OrderNotice::new(&order_id, &customer_id, kind);
            app.notify(notice, &ctx.envelope, &ctx.consumer)
                .await
                .map(|_| ())
                .map_err(AppError::into_handler_error)
        }
    })
}
