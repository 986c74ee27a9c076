//! The `Store` aggregate: a shop of the mall with a name, a location and a participation flag
//! (whether it takes part in the robot-shopping programme; new stores do not).
//!
//! Rules (spec modules.md §1, with the defects of weaknesses.md F5/A15 fixed):
//! - a store is created once, with a non-blank name and location;
//! - participation can only be switched to the other value;
//! - a rebrand needs a non-blank name;
//! - every operation but `create` needs the store to exist, so a command on an unknown id is
//!   refused instead of creating an orphan stream.

use persistence::Aggregate;

use super::{is_blank, stored};

/// The state of one store, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    pub(super) created: bool,
    pub(super) name: String,
    pub(super) location: String,
    pub(super) participating: bool,
}

/// What can happen to a store. Each variant is stored in the event store under its own name
/// (`stores.StoreCreated`…, see [`stored`](super::stored)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The store was opened.
    Created {
        /// Its name.
        name: String,
        /// Where in the mall it is.
        location: String,
    },
    /// The store joined the programme.
    ParticipationEnabled,
    /// The store left the programme.
    ParticipationDisabled,
    /// The store was renamed.
    Rebranded {
        /// The new name.
        name: String,
    },
}

/// Why a store operation was refused. The texts are the API's (spec api.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Create or rebrand without a name.
    #[error("the store name cannot be blank")]
    BlankName,
    /// Create without a location.
    #[error("the store location cannot be blank")]
    BlankLocation,
    /// Enable on a participating store.
    #[error("the store is already participating")]
    AlreadyParticipating,
    /// Disable on a store that does not participate.
    #[error("the store is already not participating")]
    AlreadyNotParticipating,
    /// Any operation but create on a store that was never created.
    #[error("the store does not exist")]
    NotFound,
    /// Create on an id that is already a store.
    #[error("the store already exists")]
    AlreadyExists,
}

impl Store {
    /// Whether the store was created (an unknown id loads as a default, uncreated state).
    pub fn exists(&self) -> bool {
        self.created
    }

    /// The current name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The location.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the store takes part in the programme.
    pub fn participating(&self) -> bool {
        self.participating
    }

    /// Opens the store. The name is checked before the location, as the original did.
    pub fn create(&self, name: &str, location: &str) -> Result<Vec<StoreEvent>, StoreError> {
        if self.created {
            return Err(StoreError::AlreadyExists);
        }
        if is_blank(name) {
            return Err(StoreError::BlankName);
        }
        if is_blank(location) {
            return Err(StoreError::BlankLocation);
        }
        Ok(vec![StoreEvent::Created {
            name: name.to_owned(),
            location: location.to_owned(),
        }])
    }

    /// Makes the store participate.
    pub fn enable_participation(&self) -> Result<Vec<StoreEvent>, StoreError> {
        self.must_exist()?;
        if self.participating {
            return Err(StoreError::AlreadyParticipating);
        }
        Ok(vec![StoreEvent::ParticipationEnabled])
    }

    /// Stops the store's participation.
    pub fn disable_participation(&self) -> Result<Vec<StoreEvent>, StoreError> {
        self.must_exist()?;
        if !self.participating {
            return Err(StoreError::AlreadyNotParticipating);
        }
        Ok(vec![StoreEvent::ParticipationDisabled])
    }

    /// Renames the store. Renaming to the current name is still recorded (and announced), as
    /// the original did: a client may rely on the event.
    pub fn rebrand(&self, name: &str) -> Result<Vec<StoreEvent>, StoreError> {
        self.must_exist()?;
        if is_blank(name) {
            return Err(StoreError::BlankName);
        }
        Ok(vec![StoreEvent::Rebranded {
            name: name.to_owned(),
        }])
    }

    fn must_exist(&self) -> Result<(), StoreError> {
        if self.created {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}

impl Aggregate for Store {
    const TYPE: &'static str = "stores.Store";
    type Event = StoreEvent;

    fn apply(&mut self, event: &StoreEvent) {
        match event {
            StoreEvent::Created { name, location } => {
                self.created = true;
                self.name.clone_from(name);
                self.location.clone_from(location);
            }
            StoreEvent::ParticipationEnabled => self.participating = true,
            StoreEvent::ParticipationDisabled => self.participating = false,
            StoreEvent::Rebranded { name } => self.name.clone_from(name),
        }
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(stored::store_snapshot(self))
    }

    fn restore(payload: &[u8]) -> Result<Self, String> {
        stored::restore_store(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[StoreEvent]) -> Store {
        let mut store = Store::default();
        for event in events {
            store.apply(event);
        }
        store
    }

    fn created() -> StoreEvent {
        StoreEvent::Created {
            name: "Store ABC".into(),
            location: "The mall".into(),
        }
    }

    #[test]
    fn create_records_the_name_and_location_and_the_store_does_not_participate() {
        let events = given(&[]).create("Store ABC", "The mall").unwrap();
        assert_eq!(events, vec![created()]);
        let store = given(&events);
        assert!(store.exists());
        assert_eq!(store.name(), "Store ABC");
        assert_eq!(store.location(), "The mall");
        assert!(!store.participating());
    }

    #[test]
    fn create_refuses_a_blank_name_before_a_blank_location() {
        assert_eq!(given(&[]).create("", ""), Err(StoreError::BlankName));
        assert_eq!(given(&[]).create("  ", "x"), Err(StoreError::BlankName));
        assert_eq!(given(&[]).create("x", ""), Err(StoreError::BlankLocation));
        assert_eq!(
            given(&[]).create("x", " \t"),
            Err(StoreError::BlankLocation)
        );
    }

    #[test]
    fn create_refuses_an_existing_store() {
        assert_eq!(
            given(&[created()]).create("x", "y"),
            Err(StoreError::AlreadyExists)
        );
    }

    #[test]
    fn participation_toggles_only_to_the_other_value() {
        let store = given(&[created()]);
        assert_eq!(
            store.disable_participation(),
            Err(StoreError::AlreadyNotParticipating)
        );
        assert_eq!(
            store.enable_participation(),
            Ok(vec![StoreEvent::ParticipationEnabled])
        );

        let store = given(&[created(), StoreEvent::ParticipationEnabled]);
        assert!(store.participating());
        assert_eq!(
            store.enable_participation(),
            Err(StoreError::AlreadyParticipating)
        );
        assert_eq!(
            store.disable_participation(),
            Ok(vec![StoreEvent::ParticipationDisabled])
        );

        let store = given(&[
            created(),
            StoreEvent::ParticipationEnabled,
            StoreEvent::ParticipationDisabled,
        ]);
        assert!(!store.participating());
    }

    #[test]
    fn rebrand_renames_and_refuses_a_blank_name() {
        let store = given(&[created()]);
        let events = store.rebrand("Store XYZ").unwrap();
        assert_eq!(
            events,
            vec![StoreEvent::Rebranded {
                name: "Store XYZ".into()
            }]
        );
        let renamed = given(&[created(), events[0].clone()]);
        assert_eq!(renamed.name(), "Store XYZ");
        assert_eq!(renamed.location(), "The mall");
        assert_eq!(store.rebrand(" "), Err(StoreError::BlankName));
    }

    #[test]
    fn commands_on_an_unknown_store_are_refused() {
        let unknown = given(&[]);
        assert!(!unknown.exists());
        assert_eq!(unknown.enable_participation(), Err(StoreError::NotFound));
        assert_eq!(unknown.disable_participation(), Err(StoreError::NotFound));
        assert_eq!(unknown.rebrand("x"), Err(StoreError::NotFound));
    }

    #[test]
    fn snapshots_restore_the_same_state() {
        let store = given(&[
            created(),
            StoreEvent::ParticipationEnabled,
            StoreEvent::Rebranded { name: "N".into() },
        ]);
        let bytes = store.snapshot().unwrap();
        assert_eq!(Store::restore(&bytes).unwrap(), store);
    }
}
