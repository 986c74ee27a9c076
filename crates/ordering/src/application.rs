//! The ordering use cases. Each one loads an order from the event store, lets the aggregate
//! decide, appends the decided events and enqueues the matching integration events in the
//! outbox — on one connection, so the caller's transaction makes it all-or-nothing.
//!
//! REST requests run a use case in a transaction of their own ([`Orders::run`]); message
//! handlers run it in the transaction that also records the message in the inbox (and, for
//! commands, the reply).

use contracts::ordering::v1 as api;
use messaging::{Bus, Envelope};
use persistence::{EventStore, SnapshotPolicy, outbox};
use sqlx::{PgConnection, PgPool};

use crate::domain::{Decision, ORDER_TYPE, Order, OrderError, OrderEvent, OrderItem};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The order refused (a domain rule).
    #[error(transparent)]
    Domain(#[from] OrderError),
    /// The database or the event store failed (a version conflict included).
    #[error(transparent)]
    Persistence(#[from] persistence::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Persistence(e.into())
    }
}

impl AppError {
    /// Whether running the use case again later may succeed: transient infrastructure
    /// failures, version conflicts, and an order the saga has not approved yet.
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Domain(e) => *e == OrderError::NotApprovedYet,
            AppError::Persistence(e) => e.is_retryable(),
        }
    }
}

/// What a new order is made of (from the REST API or a basket checkout).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// Who orders.
    pub customer_id: String,
    /// The payment authorization.
    pub payment_id: String,
    /// The lines.
    pub items: Vec<OrderItem>,
}

/// How many times a REST request re-runs after losing an optimistic-concurrency race (a saga
/// command on the same order at the same moment) before answering 409.
const CONFLICT_ATTEMPTS: u32 = 3;

/// The ordering service's use cases over its pool, event store and bus.
#[derive(Debug, Clone)]
pub struct Orders {
    pool: PgPool,
    store: EventStore,
    bus: Bus,
}

impl Orders {
    /// Use cases on `pool` (the `ordering` schema), publishing through `bus`'s envelopes.
    pub fn new(pool: PgPool, bus: Bus) -> Self {
        // Orders live long (created → approved → ready → completed); a snapshot at every third
        // event keeps a completed order's load to one snapshot and one event.
        let store = EventStore::new().with_snapshots(ORDER_TYPE, SnapshotPolicy::Every(3));
        Orders { pool, store, bus }
    }

    /// The pool (handlers open their transactions on it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The bus (handlers build replies with it).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Loads order `id`, lets `decide` choose the events, appends them and enqueues their
    /// integration events (caused by `cause`, when a message triggered the change). Returns
    /// the recorded events: none when the order was already as asked.
    ///
    /// A refusal writes nothing, so the caller's transaction stays clean for a failure reply.
    pub async fn execute(
        &self,
        conn: &mut PgConnection,
        id: &str,
        cause: Option<&Envelope>,
        decide: impl FnOnce(&Order) -> Decision,
    ) -> Result<Vec<OrderEvent>, AppError> {
        let mut loaded = self.store.load::<Order>(conn, id).await?;
        let events = decide(&loaded.state)?;
        if events.is_empty() {
            return Ok(events);
        }
        self.store.save(conn, &mut loaded, &events).await?;
        let envelopes: Vec<Envelope> = events
            .iter()
            .map(|event| {
                let env = integration_event(&self.bus, id, &loaded.state, event);
                match cause {
                    Some(cause) => env.caused_by(cause),
                    None => env,
                }
            })
            .collect();
        outbox::enqueue(conn, &envelopes).await?;
        Ok(events)
    }

    /// Runs [`execute`](Self::execute) in a transaction of its own, again after a lost
    /// concurrency race (the decision is re-taken on the fresh state).
    pub async fn run(
        &self,
        id: &str,
        decide: impl Fn(&Order) -> Decision,
    ) -> Result<Vec<OrderEvent>, AppError> {
        let mut attempt = 1;
        loop {
            let mut tx = self.pool.begin().await?;
            match self.execute(&mut tx, id, None, &decide).await {
                Ok(events) => {
                    tx.commit().await?;
                    return Ok(events);
                }
                Err(AppError::Persistence(persistence::Error::Conflict { .. }))
                    if attempt < CONFLICT_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Places a new order under a fresh id (REST); returns the id.
    pub async fn create_order(&self, order: NewOrder) -> Result<String, AppError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.run(&id, |o| {
            o.create(&order.customer_id, &order.payment_id, order.items.clone())
        })
        .await?;
        Ok(id)
    }

    /// Cancels order `id` (REST).
    pub async fn cancel_order(&self, id: &str) -> Result<(), AppError> {
        self.run(id, Order::cancel).await.map(drop)
    }

    /// Order `id`, or `None` if it was never created.
    pub async fn get_order(&self, id: &str) -> Result<Option<Order>, AppError> {
        let mut conn = self.pool.acquire().await?;
        let loaded = self.store.load::<Order>(&mut conn, id).await?;
        Ok(loaded.state.exists().then_some(loaded.state))
    }
}

/// The integration event announcing `event` of order `id`, whose state after the change is
/// `order`. Every lifecycle step is published (the original never sent OrderApproved and
/// OrderRejected, weaknesses.md A3).
fn integration_event(bus: &Bus, id: &str, order: &Order, event: &OrderEvent) -> Envelope {
    let id = id.to_owned();
    let customer_id = order.customer_id.clone();
    let payment_id = order.payment_id.clone();
    match event {
        OrderEvent::Created { items, .. } => bus.event(&api::OrderCreated {
            id,
            customer_id,
            payment_id,
            // The list is made later by the saga (see OrderApproved and GET /api/ordering).
            shopping_id: String::new(),
            items: items
                .iter()
                .map(|i| api::order_created::Item {
                    product_id: i.product_id.clone(),
                    store_id: i.store_id.clone(),
                    price: i.price,
                    quantity: i.quantity,
                })
                .collect(),
        }),
        OrderEvent::Rejected => bus.event(&api::OrderRejected {
            id,
            customer_id,
            payment_id,
        }),
        OrderEvent::Approved { .. } => bus.event(&api::OrderApproved {
            id,
            customer_id,
            payment_id,
        }),
        OrderEvent::Canceled => bus.event(&api::OrderCanceled {
            id,
            customer_id,
            payment_id,
        }),
        OrderEvent::Readied { total } => bus.event(&api::OrderReadied {
            id,
            customer_id,
            payment_id,
            total: *total,
        }),
        OrderEvent::Completed { invoice_id } => bus.event(&api::OrderCompleted {
            id,
            customer_id,
            invoice_id: invoice_id.clone(),
        }),
    }
}
