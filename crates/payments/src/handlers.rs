//! Messages the payments service handles:
//! - [`COMMANDS_DURABLE`] on `payments.commands`: the saga's `ConfirmPayment`, answered with a
//!   success or failure reply;
//! - [`ORDERS_DURABLE`] on `ordering.events.Order`: `OrderReadied` creates the order's invoice,
//!   `OrderCanceled` cancels it while still pending; the other order events are skipped.
//!
//! Each message is handled in one transaction with its inbox row, so a redelivered copy
//! changes nothing and a command is answered once.

use contracts::ordering::v1::{OrderCanceled, OrderReadied};
use contracts::payments::v1::ConfirmPayment;
use contracts::subjects;
use messaging::{Empty, HandlerError, Message, MessageContext, Outcome, Subscription};
use persistence::{inbox, outbox};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{Invoice, InvoiceError};
use crate::postgres;

/// The durable consumer of `payments.commands` (the spec's `payment-commands` group, renamed to
/// the `<service>-<what>` convention).
pub const COMMANDS_DURABLE: &str = "payments-commands";

/// The durable consumer of `ordering.events.Order` (the spec's `payment-orders` group, renamed
/// likewise).
pub const ORDERS_DURABLE: &str = "payments-orders";

/// The names on `subject` this consumer knows but has no handler for.
fn others(subject: &str, handled: &[String]) -> Vec<String> {
    contracts::names_on(subject)
        .into_iter()
        .filter(|name| !handled.contains(name))
        .collect()
}

/// The consumer of the payments command subject.
pub fn commands(pool: PgPool) -> Subscription {
    let handled = [ConfirmPayment::message_name()];
    Subscription::new(COMMANDS_DURABLE, subjects::PAYMENTS_COMMANDS)
        .on::<ConfirmPayment, _, _>(move |command, ctx| {
            let pool = pool.clone();
            async move { confirm_payment(&pool, command, ctx).await }
        })
        .ignore(others(subjects::PAYMENTS_COMMANDS, &handled))
}

/// The consumer of order events.
pub fn orders(pool: PgPool) -> Subscription {
    let handled = [OrderReadied::message_name(), OrderCanceled::message_name()];
    let on_canceled = pool.clone();
    Subscription::new(ORDERS_DURABLE, subjects::ORDER_EVENTS)
        .on::<OrderReadied, _, _>(move |event, ctx| {
            let pool = pool.clone();
            async move { order_readied(&pool, event, ctx).await }
        })
        .on::<OrderCanceled, _, _>(move |event, ctx| {
            let pool = on_canceled.clone();
            async move { order_canceled(&pool, event, ctx).await }
        })
        .ignore(others(subjects::ORDER_EVENTS, &handled))
}

/// Opens the handler's transaction and records the message; `None` for a duplicate.
async fn begin(
    pool: &PgPool,
    ctx: &MessageContext,
) -> Result<Option<Transaction<'static, Postgres>>, HandlerError> {
    let mut tx = pool.begin().await.map_err(HandlerError::retryable)?;
    let first = inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(HandlerError::retryable)?;
    Ok(first.then_some(tx))
}

/// Replies success when the payment exists and covers the command's amount (the order
/// total), failure otherwise. Only infrastructure failures are errors: they are retried.
pub(crate) async fn confirm_payment(
    pool: &PgPool,
    command: ConfirmPayment,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let Some(mut tx) = begin(pool, &ctx).await? else {
        return Ok(());
    };
    let payment = postgres::find_payment(&mut tx, &command.id)
        .await
        .map_err(HandlerError::retryable)?;
    let outcome = match payment.as_ref().map(|p| p.confirm(command.amount)) {
        Some(Ok(())) => Outcome::Success,
        Some(Err(e)) => {
            tracing::info!(payment = %command.id, reason = %e, "payment not confirmed");
            Outcome::Failure
        }
        None => {
            tracing::info!(payment = %command.id, "payment to confirm does not exist");
            Outcome::Failure
        }
    };
    let reply = ctx.reply(outcome, &Empty {})?;
    outbox::enqueue(&mut tx, &[reply])
        .await
        .map_err(HandlerError::retryable)?;
    tx.commit().await.map_err(HandlerError::retryable)?;
    Ok(())
}

/// Creates the pending invoice of a ready order (id = order id, amount = total). An order
/// readied again keeps its first invoice. An event no invoice can be made of (blank id,
/// negative or non-finite total) is dead-lettered: retrying cannot fix it.
pub(crate) async fn order_readied(
    pool: &PgPool,
    event: OrderReadied,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let invoice = Invoice::create(event.id.as_str(), event.total).map_err(|e| {
        HandlerError::permanent(format!("cannot invoice order {:?}: {e}", event.id))
    })?;
    let Some(mut tx) = begin(pool, &ctx).await? else {
        return Ok(());
    };
    let created = postgres::insert_invoice_once(&mut tx, &invoice)
        .await
        .map_err(HandlerError::retryable)?;
    if !created {
        tracing::info!(invoice = %invoice.id, "order readied again; its invoice exists already");
    }
    tx.commit().await.map_err(HandlerError::retryable)?;
    Ok(())
}

/// Cancels the order's invoice if it is still pending. No invoice (the order was cancelled
/// before it was ready) or one already paid or canceled: nothing to do.
pub(crate) async fn order_canceled(
    pool: &PgPool,
    event: OrderCanceled,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let Some(mut tx) = begin(pool, &ctx).await? else {
        return Ok(());
    };
    let invoice = postgres::find_invoice_for_update(&mut tx, &event.id)
        .await
        .map_err(HandlerError::retryable)?;
    if let Some(mut invoice) = invoice {
        match invoice.cancel() {
            Ok(_) => postgres::update_invoice_status(&mut tx, &invoice)
                .await
                .map_err(HandlerError::retryable)?,
            Err(InvoiceError::CannotBeCanceled) => tracing::warn!(
                invoice = %invoice.id,
                status = invoice.status.as_str(),
                "order canceled but its invoice is no longer pending; left as it is"
            ),
            Err(e) => return Err(HandlerError::permanent(e)),
        }
    }
    tx.commit().await.map_err(HandlerError::retryable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The inbox on a real database: the same envelope handled twice acts once. (Through the
    //! broker this cannot be staged: JetStream drops a re-published id inside its window.)

    use std::sync::Arc;

    use messaging::{Envelope, header};

    use super::*;
    use crate::domain::{InvoiceStatus, Payment};

    async fn pool(db: &testkit::TestDatabase) -> PgPool {
        let pool = persistence::connect(db.url(), crate::SCHEMA).await.unwrap();
        persistence::migrate::migrate_common(&pool, crate::SCHEMA)
            .await
            .unwrap();
        persistence::migrate(&pool, crate::SCHEMA, "payments", crate::MIGRATIONS)
            .await
            .unwrap();
        pool
    }

    fn context<M: Message>(message: &M, consumer: &str) -> MessageContext {
        let envelope =
            Envelope::new("t.subject", message).with_header(header::REPLY_TO, "t.test.replies");
        MessageContext {
            envelope: Arc::new(envelope),
            attempt: 1,
            consumer: Arc::from(consumer),
        }
    }

    async fn invoice(pool: &PgPool, id: &str) -> Option<Invoice> {
        let mut tx = pool.begin().await.unwrap();
        postgres::find_invoice_for_update(&mut tx, id)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_redelivered_command_is_answered_once() {
        let db = testkit::TestDatabase::create("payments_inbox_cmd").await;
        let pool = pool(&db).await;
        let payment = Payment::authorize("p-1", "c-1", 10.0).unwrap();
        postgres::insert_payment(&mut pool.acquire().await.unwrap(), &payment)
            .await
            .unwrap();

        let command = ConfirmPayment {
            id: "p-1".into(),
            amount: 10.0,
        };
        let ctx = context(&command, COMMANDS_DURABLE);
        confirm_payment(&pool, command.clone(), ctx.clone())
            .await
            .unwrap();
        confirm_payment(&pool, command, ctx).await.unwrap();

        let replies: Vec<(String,)> = sqlx::query_as(
            "SELECT headers->>'Reply-Outcome' FROM outbox WHERE name = 'messaging.Empty'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(replies, vec![("success".to_owned(),)]);
    }

    #[tokio::test]
    async fn a_redelivered_cancellation_does_not_undo_a_later_payment() {
        let db = testkit::TestDatabase::create("payments_inbox_evt").await;
        let pool = pool(&db).await;
        let readied = OrderReadied {
            id: "o-1".into(),
            total: 12.5,
            ..OrderReadied::default()
        };
        order_readied(&pool, readied.clone(), context(&readied, ORDERS_DURABLE))
            .await
            .unwrap();
        let canceled = OrderCanceled {
            id: "o-1".into(),
            ..OrderCanceled::default()
        };
        let ctx = context(&canceled, ORDERS_DURABLE);
        order_canceled(&pool, canceled.clone(), ctx.clone())
            .await
            .unwrap();
        assert_eq!(
            invoice(&pool, "o-1").await.unwrap().status,
            InvoiceStatus::Canceled
        );

        // Force the invoice back to pending, then redeliver the same cancellation: the inbox
        // must stop it before it looks at the invoice.
        sqlx::query("UPDATE invoices SET status = 'pending'")
            .execute(&pool)
            .await
            .unwrap();
        order_canceled(&pool, canceled, ctx).await.unwrap();
        let stored = invoice(&pool, "o-1").await.unwrap();
        assert_eq!(stored.status, InvoiceStatus::Pending);
        assert_eq!(stored.amount, 12.5);
    }

    #[tokio::test]
    async fn an_order_that_cannot_be_invoiced_is_a_permanent_failure() {
        let db = testkit::TestDatabase::create("payments_bad_order").await;
        let pool = pool(&db).await;
        let readied = OrderReadied {
            id: "o-1".into(),
            total: -1.0,
            ..OrderReadied::default()
        };
        let err = order_readied(&pool, readied.clone(), context(&readied, ORDERS_DURABLE))
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
        assert_eq!(invoice(&pool, "o-1").await, None);
    }
}
