//! Messages the customers service answers: the saga's `AuthorizeCustomer` command (durable
//! consumer [`COMMANDS_DURABLE`]) and the `GetCustomer` query other services ask on a cache miss.
//!
//! A command is handled in one transaction: the inbox row (a redelivered copy stops there), the
//! decision and the reply in the outbox commit together, so the saga gets exactly one answer
//! per command even if the broker delivers it twice.

use contracts::customers::v1::{AuthorizeCustomer, GetCustomer, GetCustomerResponse};
use contracts::subjects;
use messaging::{Empty, HandlerError, Message, MessageContext, Outcome, Subscription};
use persistence::{inbox, outbox};
use sqlx::PgPool;

use crate::postgres;

/// The durable consumer of `customers.commands` (the spec's `customer-commands` group, renamed
/// to the `<service>-<what>` convention every service follows).
pub const COMMANDS_DURABLE: &str = "customers-commands";

/// The queue group of the GetCustomer responders: instances share the questions.
pub const QUERY_GROUP: &str = "customers";

/// The consumer of the customers command subject.
pub fn commands(pool: PgPool) -> Subscription {
    let handled = AuthorizeCustomer::message_name();
    let others = contracts::names_on(subjects::CUSTOMERS_COMMANDS)
        .into_iter()
        .filter(|name| *name != handled);
    Subscription::new(COMMANDS_DURABLE, subjects::CUSTOMERS_COMMANDS)
        .on::<AuthorizeCustomer, _, _>(move |command, ctx| {
            let pool = pool.clone();
            async move { authorize_customer(&pool, command, ctx).await }
        })
        .ignore(others)
}

/// Replies success when the customer exists and is enabled, failure otherwise (unknown,
/// disabled, blank id). Only infrastructure failures are errors: they are retried.
pub(crate) async fn authorize_customer(
    pool: &PgPool,
    command: AuthorizeCustomer,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await.map_err(HandlerError::retryable)?;
    let first = inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(HandlerError::retryable)?;
    if !first {
        return Ok(());
    }
    let customer = postgres::find(&mut tx, &command.id)
        .await
        .map_err(HandlerError::retryable)?;
    let outcome = match customer.as_ref().map(|c| c.authorize()) {
        Some(Ok(())) => Outcome::Success,
        Some(Err(e)) => {
            tracing::info!(customer = %command.id, reason = %e, "customer not authorized");
            Outcome::Failure
        }
        None => {
            tracing::info!(customer = %command.id, "customer to authorize does not exist");
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

/// Answers GetCustomer: the customer, or an unset `customer` when the id is unknown. A
/// database failure is an error answer, never a false "not found".
pub(crate) async fn get_customer(
    pool: &PgPool,
    query: GetCustomer,
) -> Result<GetCustomerResponse, String> {
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    let customer = postgres::find(&mut conn, &query.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(GetCustomerResponse {
        customer: customer.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    //! The inbox on a real database: the same envelope handled twice answers once. (Through
    //! the broker this cannot be staged: JetStream drops a re-published id inside its window.)

    use std::sync::Arc;

    use messaging::{Envelope, header};

    use super::*;
    use crate::domain::Customer;

    async fn pool(db: &testkit::TestDatabase) -> PgPool {
        let pool = persistence::connect(db.url(), crate::SCHEMA).await.unwrap();
        persistence::migrate::migrate_common(&pool, crate::SCHEMA)
            .await
            .unwrap();
        persistence::migrate(&pool, crate::SCHEMA, "customers", crate::MIGRATIONS)
            .await
            .unwrap();
        pool
    }

    fn context(command: &AuthorizeCustomer) -> MessageContext {
        let envelope = Envelope::new("t.customers.commands", command)
            .with_header(header::REPLY_TO, "t.test.replies.Test");
        MessageContext {
            envelope: Arc::new(envelope),
            attempt: 1,
            consumer: Arc::from(COMMANDS_DURABLE),
        }
    }

    async fn replies(pool: &PgPool) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT subject, headers->>'Reply-Outcome' FROM outbox
             WHERE name = 'messaging.Empty' ORDER BY seq",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_redelivered_command_is_answered_once() {
        let db = testkit::TestDatabase::create("customers_inbox").await;
        let pool = pool(&db).await;
        let (customer, _) = Customer::register("c-1", "Ann", "555").unwrap();
        let mut conn = pool.acquire().await.unwrap();
        postgres::insert(&mut conn, &customer).await.unwrap();
        drop(conn);

        let command = AuthorizeCustomer { id: "c-1".into() };
        let ctx = context(&command);
        authorize_customer(&pool, command.clone(), ctx.clone())
            .await
            .unwrap();
        authorize_customer(&pool, command, ctx).await.unwrap();

        assert_eq!(
            replies(&pool).await,
            vec![("t.test.replies.Test".to_owned(), "success".to_owned())]
        );
    }

    #[tokio::test]
    async fn unknown_customers_get_a_failure_and_a_missing_reply_channel_is_permanent() {
        let db = testkit::TestDatabase::create("customers_unknown").await;
        let pool = pool(&db).await;

        let command = AuthorizeCustomer {
            id: "nobody".into(),
        };
        authorize_customer(&pool, command.clone(), context(&command))
            .await
            .unwrap();
        assert_eq!(
            replies(&pool).await,
            vec![("t.test.replies.Test".to_owned(), "failure".to_owned())]
        );

        let mut ctx = context(&command);
        ctx.envelope = Arc::new(Envelope::new("t.customers.commands", &command));
        let err = authorize_customer(&pool, command, ctx).await.unwrap_err();
        assert!(matches!(err, HandlerError::Permanent(_)), "{err}");
        assert_eq!(replies(&pool).await.len(), 1, "nothing committed");
    }
}
