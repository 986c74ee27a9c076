//! Payload rendering for the message names the contracts crate knows: a dead letter whose
//! `Message-Name` is catalogued is decoded with its generated type and shown with `{:#?}`.

/// Decodes `payload` as the contract type called `name`. `None` when the name is not one of
/// ours; `Some(Err)` when it is but the bytes do not decode.
pub fn render(name: &str, payload: &[u8]) -> Option<Result<String, String>> {
    macro_rules! known {
        ($($ty:ty),* $(,)?) => {
            $(
                if name == <$ty as prost::Name>::full_name() {
                    return Some(
                        <$ty as prost::Message>::decode(payload)
                            .map(|m| format!("{m:#?}"))
                            .map_err(|e| e.to_string()),
                    );
                }
            )*
        };
    }
    use contracts::{baskets, customers, depot, ordering, payments, stores};
    known!(
        stores::v1::StoreCreated,
        stores::v1::StoreParticipationToggled,
        stores::v1::StoreRebranded,
        stores::v1::ProductAdded,
        stores::v1::ProductRebranded,
        stores::v1::ProductPriceIncreased,
        stores::v1::ProductPriceDecreased,
        stores::v1::ProductRemoved,
        stores::v1::GetStore,
        stores::v1::GetStoreResponse,
        stores::v1::GetProduct,
        stores::v1::GetProductResponse,
        baskets::v1::BasketStarted,
        baskets::v1::BasketCanceled,
        baskets::v1::BasketCheckedOut,
        customers::v1::CustomerRegistered,
        customers::v1::CustomerSmsChanged,
        customers::v1::CustomerEnabled,
        customers::v1::CustomerDisabled,
        customers::v1::AuthorizeCustomer,
        customers::v1::GetCustomer,
        customers::v1::GetCustomerResponse,
        depot::v1::ShoppingListCompleted,
        depot::v1::CreateShoppingList,
        depot::v1::CancelShoppingList,
        depot::v1::InitiateShopping,
        depot::v1::CreatedShoppingList,
        ordering::v1::OrderCreated,
        ordering::v1::OrderRejected,
        ordering::v1::OrderApproved,
        ordering::v1::OrderReadied,
        ordering::v1::OrderCanceled,
        ordering::v1::OrderCompleted,
        ordering::v1::RejectOrder,
        ordering::v1::ApproveOrder,
        payments::v1::InvoicePaid,
        payments::v1::ConfirmPayment,
        messaging::Empty,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_message_can_be_rendered() {
        for entry in contracts::CATALOGUE {
            let name = entry.name();
            assert!(
                matches!(render(&name, &[]), Some(Ok(_))),
                "{name} is catalogued but not renderable"
            );
        }
        assert!(render("nope.v1.Unknown", &[]).is_none());
        assert!(matches!(
            render("stores.v1.StoreCreated", &[0xff, 0xff]),
            Some(Err(_))
        ));
    }
}
