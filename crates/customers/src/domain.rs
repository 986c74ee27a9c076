//! The customer entity: registration, SMS number, enable/disable and authorization, as pure
//! decisions. Each command checks the entity's rules, changes its state and returns the domain
//! event it raised (or a [`CustomerError`]); persisting the row and publishing the integration
//! event are the application's job, so everything here is tested without I/O.

/// A registered customer. Names are not unique; the id is the server's UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Server-generated id.
    pub id: String,
    /// Display name, never blank.
    pub name: String,
    /// Where notifications are texted, never blank.
    pub sms_number: String,
    /// A disabled customer's orders are refused by the create-order saga.
    pub enabled: bool,
}

/// What happened to a customer; each one becomes the integration event of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerEvent {
    /// A new, enabled customer.
    Registered {
        /// The customer.
        id: String,
        /// Its name.
        name: String,
        /// Its SMS number.
        sms_number: String,
    },
    /// The SMS number was replaced.
    SmsChanged {
        /// The customer.
        id: String,
        /// The new number.
        sms_number: String,
    },
    /// The customer may order again.
    Enabled {
        /// The customer.
        id: String,
    },
    /// The customer's orders will be refused.
    Disabled {
        /// The customer.
        id: String,
    },
}

/// A rule the command broke. The texts are the API's error messages (spec api.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// Register without an id.
    #[error("the customer id cannot be blank")]
    BlankId,
    /// Register without a name.
    #[error("the customer name cannot be blank")]
    BlankName,
    /// Register or change-sms without a number.
    #[error("the SMS number cannot be blank")]
    BlankSmsNumber,
    /// Enable an enabled customer.
    #[error("the customer is already enabled")]
    AlreadyEnabled,
    /// Disable a disabled customer.
    #[error("the customer is already disabled")]
    AlreadyDisabled,
    /// Authorize a disabled customer.
    #[error("customer is not authorized")]
    NotAuthorized,
}

/// Whitespace alone is as blank as nothing: a name or number of spaces identifies no one.
fn is_blank(value: &str) -> bool {
    value.trim().is_empty()
}

/// Checks an SMS number on its own, so a change can be refused before the customer is loaded.
pub fn check_sms_number(sms_number: &str) -> Result<(), CustomerError> {
    if is_blank(sms_number) {
        Err(CustomerError::BlankSmsNumber)
    } else {
        Ok(())
    }
}

impl Customer {
    /// A new customer, enabled. Checked in the spec's order: id, name, SMS number.
    pub fn register(
        id: impl Into<String>,
        name: impl Into<String>,
        sms_number: impl Into<String>,
    ) -> Result<(Customer, CustomerEvent), CustomerError> {
        let (id, name, sms_number) = (id.into(), name.into(), sms_number.into());
        if is_blank(&id) {
            return Err(CustomerError::BlankId);
        }
        if is_blank(&name) {
            return Err(CustomerError::BlankName);
        }
        check_sms_number(&sms_number)?;
        let event = CustomerEvent::Registered {
            id: id.clone(),
            name: name.clone(),
            sms_number: sms_number.clone(),
        };
        let customer = Customer {
            id,
            name,
            sms_number,
            enabled: true,
        };
        Ok((customer, event))
    }

    /// Replaces the SMS number. Setting the number it already has changes nothing and raises no
    /// event, so a client repeating the request does not notify everyone again.
    pub fn change_sms_number(
        &mut self,
        sms_number: impl Into<String>,
    ) -> Result<Option<CustomerEvent>, CustomerError> {
        let sms_number = sms_number.into();
        check_sms_number(&sms_number)?;
        if sms_number == self.sms_number {
            return Ok(None);
        }
        self.sms_number = sms_number.clone();
        Ok(Some(CustomerEvent::SmsChanged {
            id: self.id.clone(),
            sms_number,
        }))
    }

    /// Enables a disabled customer.
    pub fn enable(&mut self) -> Result<CustomerEvent, CustomerError> {
        if self.enabled {
            return Err(CustomerError::AlreadyEnabled);
        }
        self.enabled = true;
        Ok(CustomerEvent::Enabled {
            id: self.id.clone(),
        })
    }

    /// Disables an enabled customer.
    pub fn disable(&mut self) -> Result<CustomerEvent, CustomerError> {
        if !self.enabled {
            return Err(CustomerError::AlreadyDisabled);
        }
        self.enabled = false;
        Ok(CustomerEvent::Disabled {
            id: self.id.clone(),
        })
    }

    /// Whether the customer may place an order (the saga's first step). Changes nothing.
    pub fn authorize(&self) -> Result<(), CustomerError> {
        if self.enabled {
            Ok(())
        } else {
            Err(CustomerError::NotAuthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(enabled: bool) -> Customer {
        Customer {
            id: "c-1".into(),
            name: "Ann".into(),
            sms_number: "555-0100".into(),
            enabled,
        }
    }

    #[test]
    fn register_creates_an_enabled_customer_and_raises_registered() {
        let (customer, event) = Customer::register("c-1", "Ann", "555-0100").unwrap();
        assert_eq!(customer, given(true));
        assert_eq!(
            event,
            CustomerEvent::Registered {
                id: "c-1".into(),
                name: "Ann".into(),
                sms_number: "555-0100".into()
            }
        );
    }

    #[test]
    fn register_checks_id_then_name_then_sms_number() {
        assert_eq!(Customer::register("", "", ""), Err(CustomerError::BlankId));
        assert_eq!(
            Customer::register("c-1", "", ""),
            Err(CustomerError::BlankName)
        );
        assert_eq!(
            Customer::register("c-1", "  ", "555"),
            Err(CustomerError::BlankName)
        );
        assert_eq!(
            Customer::register("c-1", "Ann", ""),
            Err(CustomerError::BlankSmsNumber)
        );
        assert_eq!(
            Customer::register("c-1", "Ann", " \t"),
            Err(CustomerError::BlankSmsNumber)
        );
    }

    #[test]
    fn error_texts_are_the_api_messages() {
        assert_eq!(
            CustomerError::BlankName.to_string(),
            "the customer name cannot be blank"
        );
        assert_eq!(
            CustomerError::BlankSmsNumber.to_string(),
            "the SMS number cannot be blank"
        );
        assert_eq!(
            CustomerError::AlreadyEnabled.to_string(),
            "the customer is already enabled"
        );
        assert_eq!(
            CustomerError::AlreadyDisabled.to_string(),
            "the customer is already disabled"
        );
        assert_eq!(
            CustomerError::NotAuthorized.to_string(),
            "customer is not authorized"
        );
    }

    #[test]
    fn disable_an_enabled_customer() {
        let mut customer = given(true);
        let event = customer.disable().unwrap();
        assert_eq!(event, CustomerEvent::Disabled { id: "c-1".into() });
        assert!(!customer.enabled);
    }

    #[test]
    fn disable_a_disabled_customer_is_refused_and_changes_nothing() {
        let mut customer = given(false);
        assert_eq!(customer.disable(), Err(CustomerError::AlreadyDisabled));
        assert_eq!(customer, given(false));
    }

    #[test]
    fn enable_a_disabled_customer() {
        let mut customer = given(false);
        let event = customer.enable().unwrap();
        assert_eq!(event, CustomerEvent::Enabled { id: "c-1".into() });
        assert!(customer.enabled);
    }

    #[test]
    fn enable_an_enabled_customer_is_refused_and_changes_nothing() {
        let mut customer = given(true);
        assert_eq!(customer.enable(), Err(CustomerError::AlreadyEnabled));
        assert_eq!(customer, given(true));
    }

    #[test]
    fn change_sms_number_raises_sms_changed() {
        let mut customer = given(true);
        let event = customer.change_sms_number("555-0199").unwrap();
        assert_eq!(
            event,
            Some(CustomerEvent::SmsChanged {
                id: "c-1".into(),
                sms_number: "555-0199".into()
            })
        );
        assert_eq!(customer.sms_number, "555-0199");
    }

    #[test]
    fn change_sms_number_to_the_same_number_raises_nothing() {
        let mut customer = given(true);
        assert_eq!(customer.change_sms_number("555-0100"), Ok(None));
        assert_eq!(customer, given(true));
    }

    #[test]
    fn change_sms_number_to_blank_is_refused_and_changes_nothing() {
        let mut customer = given(false);
        assert_eq!(
            customer.change_sms_number("  "),
            Err(CustomerError::BlankSmsNumber)
        );
        assert_eq!(customer, given(false));
        assert_eq!(check_sms_number(""), Err(CustomerError::BlankSmsNumber));
        assert_eq!(check_sms_number("1"), Ok(()));
    }

    #[test]
    fn only_an_enabled_customer_is_authorized() {
        assert_eq!(given(true).authorize(), Ok(()));
        assert_eq!(given(false).authorize(), Err(CustomerError::NotAuthorized));
    }
}
