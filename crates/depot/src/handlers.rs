//! The messages the depot consumes (spec messaging.md §6):
//!
//! | durable | subject | handles |
//! |---|---|---|
//! | `depot-commands` | `depot.commands` | CreateShoppingList, CancelShoppingList, InitiateShopping → reply |
//! | `depot-stores` | `stores.events.Store` | StoreCreated, StoreRebranded → stores cache |
//! | `depot-products` | `stores.events.Product` | ProductAdded, ProductRebranded, ProductRemoved → products cache |
//!
//! Every handler records the message in the inbox in the transaction of its effects. Commands
//! always answer (through the outbox, same transaction): a refusal commits the failure reply
//! and nothing else.

use contracts::depot::v1::{
    CancelShoppingList, CreateShoppingList, CreatedShoppingList, InitiateShopping,
};
use contracts::stores::v1::{
    ProductAdded, ProductRebranded, ProductRemoved, StoreCreated, StoreRebranded,
};
use contracts::subjects;
use messaging::{
    ConsumerPolicy, Empty, HandlerError, MessageContext, Outcome, Subscription, with_state,
};
use persistence::{inbox, outbox};

use crate::application::{AppError, Depot};
use crate::domain::{Change, ListStatus, ProductInfo, RequestedItem, ShoppingList, StoreInfo};
use crate::postgres;

/// The durable consumers of the service, ready for `ModuleContext::subscribe`.
pub fn subscriptions(depot: &Depot) -> Vec<Subscription> {
    vec![
        Subscription::new("depot-commands", subjects::DEPOT_COMMANDS)
            .on::<CreateShoppingList, _, _>(with_state(depot, on_create_shopping_list))
            .on::<CancelShoppingList, _, _>(with_state(depot, on_cancel_shopping_list))
            .on::<InitiateShopping, _, _>(with_state(depot, on_initiate_shopping))
            .ignore(contracts::names_on(subjects::DEPOT_COMMANDS))
            .policy(commands_policy()),
        Subscription::new("depot-stores", subjects::STORE_EVENTS)
            .on::<StoreCreated, _, _>(with_state(depot, on_store_created))
            .on::<StoreRebranded, _, _>(with_state(depot, on_store_rebranded))
            .ignore(contracts::names_on(subjects::STORE_EVENTS)),
        Subscription::new("depot-products", subjects::PRODUCT_EVENTS)
            .on::<ProductAdded, _, _>(with_state(depot, on_product_added))
            .on::<ProductRebranded, _, _>(with_state(depot, on_product_rebranded))
            .on::<ProductRemoved, _, _>(with_state(depot, on_product_removed))
            .ignore(contracts::names_on(subjects::PRODUCT_EVENTS)),
    ]
}

/// The commands consumer's policy. Named, because CreateShoppingList needs to know which
/// delivery is its last.
fn commands_policy() -> ConsumerPolicy {
    ConsumerPolicy::default()
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

/// The saga's step 2: make the order's list and answer with its id.
///
/// A re-sent command (the saga retrying after a lost reply) answers with the order's existing
/// list instead of making a second one; once that list is canceled (the saga compensated), a
/// command arriving late or published again is refused rather than making a list nobody will
/// ever cancel. An unknown store or product, or a bad request, is a failure reply; a stores
/// service that does not answer is retried, and answered with a failure on the last delivery
/// so the saga never waits for nothing.
async fn on_create_shopping_list(
    depot: Depot,
    cmd: CreateShoppingList,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let existing = {
        let mut conn = depot.pool().acquire().await.map_err(db)?;
        postgres::list_of_order(&mut conn, &cmd.order_id)
            .await
            .map_err(db)?
    };
    let prepared = match existing {
        Some(_) => None,
        None => {
            let items = cmd
                .items
                .iter()
                .map(|i| RequestedItem {
                    product_id: i.product_id.clone(),
                    store_id: i.store_id.clone(),
                    quantity: i.quantity,
                })
                .collect();
            Some(depot.prepare(&cmd.order_id, items).await)
        }
    };

    let mut tx = depot.pool().begin().await.map_err(db)?;
    if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    let (outcome, id) = match (
        postgres::list_of_order(&mut tx, &cmd.order_id)
            .await
            .map_err(db)?,
        prepared,
    ) {
        (Some((id, false)), _) => (Outcome::Success, id),
        (Some((id, true)), _) => {
            tracing::info!(order = %cmd.order_id, list = %id, "the order's shopping list was canceled; no new list");
            (Outcome::Failure, String::new())
        }
        (None, Some(Ok(prepared))) => {
            depot.save_new(&mut tx, &prepared).await.map_err(failure)?;
            (Outcome::Success, prepared.list.id)
        }
        (None, Some(Err(e))) => {
            let refused = matches!(e, AppError::Domain(_) | AppError::Lookup(_));
            let last = ctx.attempt >= commands_policy().max_deliveries;
            if !refused || (e.is_retryable() && !last) {
                return Err(failure(e));
            }
            let detail = match &e {
                AppError::Lookup(lookup) => lookup.detail(),
                other => other.to_string(),
            };
            tracing::info!(order = %cmd.order_id, reason = %e, %detail, "shopping list not created");
            (Outcome::Failure, String::new())
        }
        // The order had a list at the first check and none now: decide again.
        (None, None) => {
            return Err(HandlerError::retryable(
                "the order's shopping list changed meanwhile",
            ));
        }
    };
    let reply = ctx.reply(outcome, &CreatedShoppingList { id })?;
    outbox::enqueue(&mut tx, &[reply]).await.map_err(db)?;
    tx.commit().await.map_err(db)
}

/// Runs a list change asked by a command and answers with its outcome.
async fn answer_command(
    depot: &Depot,
    ctx: &MessageContext,
    id: &str,
    change: impl FnOnce(&mut ShoppingList) -> Change,
) -> Result<(), HandlerError> {
    let mut tx = depot.pool().begin().await.map_err(db)?;
    if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    let outcome = match depot.change(&mut tx, id, Some(&ctx.envelope), change).await {
        Ok(_) => Outcome::Success,
        Err(refusal @ (AppError::Domain(_) | AppError::NotFound)) => {
            tracing::info!(list = %id, command = %ctx.envelope.name, %refusal, "command refused");
            Outcome::Failure
        }
        Err(e) => return Err(failure(e)),
    };
    let reply = ctx.reply(outcome, &Empty {})?;
    outbox::enqueue(&mut tx, &[reply]).await.map_err(db)?;
    tx.commit().await.map_err(db)
}

/// The saga's compensation of step 2. A list already canceled is what was asked: success.
async fn on_cancel_shopping_list(
    depot: Depot,
    cmd: CancelShoppingList,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    answer_command(&depot, &ctx, &cmd.id, |list| {
        if list.status == ListStatus::Canceled {
            Ok(vec![])
        } else {
            list.cancel()
        }
    })
    .await
}

/// The saga's step 4: release the list to the bots. Already released: success.
async fn on_initiate_shopping(
    depot: Depot,
    cmd: InitiateShopping,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    answer_command(&depot, &ctx, &cmd.id, |list| {
        if list.status == ListStatus::Available {
            Ok(vec![])
        } else {
            list.initiate()
        }
    })
    .await
}

/// A change of the store or product cache.
enum CacheChange {
    AddStore(StoreInfo),
    RenameStore { id: String, name: String },
    AddProduct(ProductInfo),
    RenameProduct { id: String, name: String },
    RemoveProduct { id: String },
}

/// Applies a cache change in the transaction that records the event in the inbox.
async fn update_cache(
    depot: &Depot,
    ctx: &MessageContext,
    change: CacheChange,
) -> Result<(), HandlerError> {
    let mut tx = depot.pool().begin().await.map_err(db)?;
    if !inbox::record(&mut tx, &ctx.envelope, &ctx.consumer)
        .await
        .map_err(db)?
    {
        return Ok(());
    }
    match &change {
        CacheChange::AddStore(store) => postgres::add_store(&mut tx, store).await,
        CacheChange::RenameStore { id, name } => postgres::rename_store(&mut tx, id, name).await,
        CacheChange::AddProduct(product) => postgres::add_product(&mut tx, product).await,
        CacheChange::RenameProduct { id, name } => {
            postgres::rename_product(&mut tx, id, name).await
        }
        CacheChange::RemoveProduct { id } => postgres::remove_product(&mut tx, id).await,
    }
    .map_err(db)?;
    tx.commit().await.map_err(db)
}

async fn on_store_created(
    depot: Depot,
    msg: StoreCreated,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let store = StoreInfo {
        id: msg.id,
        name: msg.name,
        location: msg.location,
    };
    update_cache(&depot, &ctx, CacheChange::AddStore(store)).await
}

async fn on_store_rebranded(
    depot: Depot,
    msg: StoreRebranded,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let change = CacheChange::RenameStore {
        id: msg.id,
        name: msg.name,
    };
    update_cache(&depot, &ctx, change).await
}

async fn on_product_added(
    depot: Depot,
    msg: ProductAdded,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let product = ProductInfo {
        id: msg.id,
        store_id: msg.store_id,
        name: msg.name,
    };
    update_cache(&depot, &ctx, CacheChange::AddProduct(product)).await
}

async fn on_product_rebranded(
    depot: Depot,
    msg: ProductRebranded,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    let change = CacheChange::RenameProduct {
        id: msg.id,
        name: msg.name,
    };
    update_cache(&depot, &ctx, change).await
}

async fn on_product_removed(
    depot: Depot,
    msg: ProductRemoved,
    ctx: MessageContext,
) -> Result<(), HandlerError> {
    update_cache(&depot, &ctx, CacheChange::RemoveProduct { id: msg.id }).await
}
