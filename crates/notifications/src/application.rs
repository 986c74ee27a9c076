//! The use cases: keep the customers cache, and notify a customer about an order event. Each
//! runs in one transaction that starts with the message's inbox record, so a redelivered message
//! changes nothing, and a failure rolls the inbox record back with everything else (the
//! original wrote its inbox outside any transaction and lost the retried messages, weakness B4).

use std::sync::Arc;
use std::time::Duration;

use contracts::customers::v1::{CustomerRegistered, CustomerSmsChanged, GetCustomer};
use messaging::{Bus, Envelope, HandlerError};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{self, InvalidNotice, OrderNotice, Recipient, Unsendable};
use crate::postgres::{self, NewNotification};
use crate::sms::{Sms, SmsError, SmsSender};

/// Why handling a message failed, sorted by what a retry can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database failed: retry.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The inbox failed (a database error too): retry.
    #[error("inbox: {0}")]
    Inbox(#[from] persistence::Error),
    /// Asking the customers service failed (nobody answers, timeout, its own failure).
    #[error("asking customers for customer {customer}: {source}")]
    Lookup {
        /// The customer asked for.
        customer: String,
        /// What went wrong.
        source: messaging::Error,
    },
    /// The SMS gateway failed or refused.
    #[error("order {order}: {source}")]
    Sms {
        /// The order the text was about.
        order: String,
        /// The gateway's error.
        source: SmsError,
    },
    /// The gateway did not answer in time: retry.
    #[error("order {order}: the SMS gateway did not answer within {timeout:?}")]
    SmsTimeout {
        /// The order the text was about.
        order: String,
        /// The limit.
        timeout: Duration,
    },
    /// The message itself is unusable: dead-letter it.
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidNotice),
}

impl AppError {
    /// Retry what may succeed later; dead-letter what never will.
    pub fn into_handler_error(self) -> HandlerError {
        let permanent = match &self {
            AppError::Database(_) | AppError::Inbox(_) | AppError::SmsTimeout { .. } => false,
            // A missing responder or a timeout pass; a garbled answer will not get better.
            AppError::Lookup { source, .. } => matches!(source, messaging::Error::Malformed(_)),
            AppError::Sms { source, .. } => matches!(source, SmsError::Rejected(_)),
            AppError::Invalid(_) => true,
        };
        if permanent {
            HandlerError::permanent(self)
        } else {
            HandlerError::retryable(self)
        }
    }
}

/// What became of an order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// The text was sent and recorded.
    Sent,
    /// This message was handled before (inbox).
    Duplicate,
    /// This (order, kind) was notified before, by another message.
    AlreadySent,
    /// Nothing can be sent (unknown customer, no number); logged.
    Skipped(Unsendable),
}

/// Timeouts of the outside calls made while handling a message.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Asking the customers service about a customer missing from the cache.
    pub lookup: Duration,
    /// One call to the SMS gateway.
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            lookup: Duration::from_secs(2),
            send: Duration::from_secs(5),
        }
    }
}

/// The application service: what the message handlers call.
#[derive(Clone)]
pub struct Notifier {
    pool: PgPool,
    bus: Bus,
    sender: Arc<dyn SmsSender>,
    timeouts: Timeouts,
}

impl Notifier {
    /// A notifier on `pool`, asking customers over `bus`, texting through `sender`.
    pub fn new(pool: PgPool, bus: Bus, sender: Arc<dyn SmsSender>, timeouts: Timeouts) -> Self {
        Notifier {
            pool,
            bus,
            sender,
            timeouts,
        }
    }

    /// `CustomerRegistered`: cache the customer.
    pub async fn customer_registered(
        &self,
        event: &CustomerRegistered,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await?;
        if persistence::inbox::record(&mut tx, envelope, consumer).await? {
            if event.id.trim().is_empty() {
                // Nothing can ever look a customer up by an empty id: nothing to keep.
                tracing::warn!(message_id = %envelope.id, "CustomerRegistered without an id skipped");
            } else {
                postgres::insert_customer(&mut tx, &event.id, &event.name, &event.sms_number)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// `CustomerSmsChanged`: update the cached number (the original's SQL named a column that
    /// does not exist, weakness A6). An uncached customer is left uncached: the next text to
    /// them asks the customers service, which has the new number.
    pub async fn sms_changed(
        &self,
        event: &CustomerSmsChanged,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await?;
        if persistence::inbox::record(&mut tx, envelope, consumer).await?
            && !postgres::change_sms(&mut tx, &event.id, &event.sms_number).await?
        {
            tracing::debug!(customer_id = %event.id, "SMS number change for an uncached customer");
        }
        tx.commit().await?;
        Ok(())
    }

    /// An order event: text the customer once per (order, kind).
    ///
    /// In one transaction: inbox record, customer lookup (cache, else the customers service,
    /// whose answer is cached), the notification row, then the send. The row is written before
    /// the send so a concurrent handler of the same (order, kind) waits on it and then skips;
    /// the send happens before the commit so a failed send rolls everything back and is retried.
    pub async fn notify(
        &self,
        notice: Result<OrderNotice, InvalidNotice>,
        envelope: &Envelope,
        consumer: &str,
    ) -> Result<Notified, AppError> {
        let notice = notice?;
        let mut tx = self.pool.begin().await?;
        if !persistence::inbox::record(&mut tx, envelope, consumer).await? {
            tx.commit().await?;
            return Ok(Notified::Duplicate);
        }
        let kind = notice.kind.as_str();
        if postgres::notification_exists(&mut tx, &notice.order_id, kind).await? {
            tx.commit().await?;
            return Ok(Notified::AlreadySent);
        }
        let recipient = self.recipient(&mut tx, &notice.customer_id).await?;
        let message = match domain::compose(&notice, recipient.as_ref()) {
            Ok(message) => message,
            Err(why) => {
                tracing::warn!(
                    order_id = %notice.order_id,
                    kind,
                    reason = %why,
                    "order notification not sent"
                );
                tx.commit().await?;
                return Ok(Notified::Skipped(why));
            }
        };
        let claimed = postgres::claim_notification(
            &mut tx,
            &NewNotification {
                id: Uuid::now_v7(),
                order_id: &notice.order_id,
                customer_id: &notice.customer_id,
                sms_number: &message.to,
                kind,
                text: &message.text,
            },
        )
        .await?;
        if !claimed {
            tx.commit().await?;
            return Ok(Notified::AlreadySent);
        }
        let sms = Sms {
            to: message.to,
            text: message.text,
            order_id: notice.order_id.clone(),
            kind: kind.to_owned(),
            idempotency_key: format!("{}/{kind}", notice.order_id),
        };
        match tokio::time::timeout(self.timeouts.send, self.sender.send(&sms)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(AppError::Sms {
                    order: notice.order_id,
                    source,
                });
            }
            Err(_) => {
                return Err(AppError::SmsTimeout {
                    order: notice.order_id,
                    timeout: self.timeouts.send,
                });
            }
        }
        tx.commit().await?;
        Ok(Notified::Sent)
    }

    /// The customer from the cache, else from the customers service (cached in `conn`'s
    /// transaction). `None`: the customers service does not know them either.
    async fn recipient(
        &self,
        conn: &mut PgConnection,
        customer_id: &str,
    ) -> Result<Option<Recipient>, AppError> {
        if let Some(cached) = postgres::find_customer(conn, customer_id).await? {
            return Ok(Some(cached));
        }
        let query = GetCustomer {
            id: customer_id.to_owned(),
        };
        let answer = self
            .bus
            .query(&query, self.timeouts.lookup)
            .await
            .map_err(|source| AppError::Lookup {
                customer: customer_id.to_owned(),
                source,
            })?;
        let Some(customer) = answer.customer else {
            return Ok(None);
        };
        postgres::insert_customer(conn, customer_id, &customer.name, &customer.sms_number).await?;
        Ok(Some(Recipient {
            id: customer_id.to_owned(),
            name: customer.name,
            sms_number: customer.sms_number,
        }))
    }
}

#[cfg(test)]
mod tests {
    //! The notify use case against a real database (the inbox and the unique key are the point),
    //! with an in-memory bus and a scripted SMS sender.

    use std::sync::Mutex;

    use async_trait::async_trait;
    use contracts::ordering::v1::OrderCreated;
    use messaging::memory::Memory;

    use super::*;
    use crate::domain::NotificationKind;

    /// Fails the first `failures` sends, then records every text.
    #[derive(Default)]
    struct Scripted {
        failures: Mutex<u32>,
        sent: Mutex<Vec<Sms>>,
    }

    #[async_trait]
    impl SmsSender for Scripted {
        async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(SmsError::Unavailable("gateway down".into()));
            }
            self.sent.lock().unwrap().push(sms.clone());
            Ok(())
        }
    }

    async fn notifier(db: &testkit::TestDatabase, sender: Arc<Scripted>) -> (Notifier, PgPool) {
        let pool = persistence::connect(db.url(), crate::SCHEMA).await.unwrap();
        persistence::migrate::migrate_common(&pool, crate::SCHEMA)
            .await
            .unwrap();
        persistence::migrate(&pool, crate::SCHEMA, "notifications", crate::MIGRATIONS)
            .await
            .unwrap();
        let bus = Bus::new(Arc::new(Memory::new("t")));
        let notifier = Notifier::new(pool.clone(), bus, sender, Timeouts::default());
        (notifier, pool)
    }

    fn order_created(bus_prefix: &str) -> Envelope {
        let bus = Bus::new(Arc::new(Memory::new(bus_prefix)));
        bus.event(&OrderCreated {
            id: "o1".into(),
            customer_id: "c1".into(),
            ..Default::default()
        })
    }

    fn notice() -> Result<OrderNotice, InvalidNotice> {
        OrderNotice::new("o1", "c1", NotificationKind::OrderCreated)
    }

    async fn count(pool: &PgPool, sql: &'static str) -> i64 {
        sqlx::query_as::<_, (i64,)>(sql)
            .fetch_one(pool)
            .await
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn a_redelivered_message_sends_nothing_and_a_failed_send_is_retried() {
        let db = testkit::TestDatabase::create("notif_app").await;
        let sender = Arc::new(Scripted {
            failures: Mutex::new(1),
            ..Default::default()
        });
        let (notifier, pool) = notifier(&db, sender.clone()).await;
        let registered = CustomerRegistered {
            id: "c1".into(),
            name: "Ada".into(),
            sms_number: "555-0100".into(),
        };
        let reg_env = Bus::new(Arc::new(Memory::new("t"))).event(&registered);
        notifier
            .customer_registered(&registered, &reg_env, "customers")
            .await
            .unwrap();

        let env = order_created("t");
        // The gateway fails: nothing may stay behind, not even the inbox record.
        let err = notifier.notify(notice(), &env, "orders").await.unwrap_err();
        assert!(matches!(
            err.into_handler_error(),
            HandlerError::Retryable(_)
        ));
        assert_eq!(count(&pool, "SELECT count(*) FROM notifications").await, 0);
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM inbox WHERE consumer = 'orders'"
            )
            .await,
            0
        );

        // The retry of the same message sends; a redelivery after that does nothing.
        assert_eq!(
            notifier.notify(notice(), &env, "orders").await.unwrap(),
            Notified::Sent
        );
        assert_eq!(
            notifier.notify(notice(), &env, "orders").await.unwrap(),
            Notified::Duplicate
        );
        // Another message about the same (order, kind) does nothing either.
        let again = order_created("t");
        assert_eq!(
            notifier.notify(notice(), &again, "orders").await.unwrap(),
            Notified::AlreadySent
        );
        let sent = sender.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "555-0100");
        assert_eq!(sent[0].idempotency_key, "o1/order-created");
        assert_eq!(count(&pool, "SELECT count(*) FROM notifications").await, 1);
    }

    #[tokio::test]
    async fn an_unknown_customer_without_a_responder_is_retried_and_bad_events_are_dead_lettered() {
        let db = testkit::TestDatabase::create("notif_app").await;
        let sender = Arc::new(Scripted::default());
        let (notifier, pool) = notifier(&db, sender.clone()).await;
        let env = order_created("t");
        let err = notifier.notify(notice(), &env, "orders").await.unwrap_err();
        assert!(
            matches!(err, AppError::Lookup { .. }),
            "no responder for GetCustomer: {err}"
        );
        assert!(matches!(
            err.into_handler_error(),
            HandlerError::Retryable(_)
        ));
        let bad = OrderNotice::new("o1", "", NotificationKind::OrderReady);
        let err = notifier.notify(bad, &env, "orders").await.unwrap_err();
        assert!(matches!(
            err.into_handler_error(),
            HandlerError::Permanent(_)
        ));
        assert_eq!(count(&pool, "SELECT count(*) FROM inbox").await, 0);
        assert!(sender.sent.lock().unwrap().is_empty());
    }
}
