//! Which services exist, which binary runs each, which database it owns and which API roots it
//! serves. The one place that knows the deployment's shape; the proxy and the supervisor read it.

/// One service of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Name (also its database schema and, with a prefix, its database).
    pub name: &'static str,
    /// Binary that runs it alone.
    pub binary: &'static str,
    /// Path prefixes it answers under.
    pub roots: &'static [&'static str],
}

/// Every service, in start order (the saga last: it commands the others).
pub const SERVICES: &[Service] = &[
    Service {
        name: "stores",
        binary: "stores",
        roots: &["/api/stores"],
    },
    Service {
        name: "customers",
        binary: "customers",
        roots: &["/api/customers"],
    },
    Service {
        name: "payments",
        binary: "payments",
        roots: &["/api/payments"],
    },
    Service {
        name: "baskets",
        binary: "baskets",
        roots: &["/api/baskets"],
    },
    Service {
        name: "ordering",
        binary: "ordering",
        roots: &["/api/ordering"],
    },
    Service {
        name: "depot",
        binary: "depot",
        roots: &["/api/depot"],
    },
    Service {
        name: "notifications",
        binary: "notifications",
        roots: &["/api/notifications"],
    },
    Service {
        name: "search",
        binary: "search",
        roots: &["/api/search"],
    },
    Service {
        name: "cosec",
        binary: "order-saga",
        roots: &["/api/cosec"],
    },
];

/// The service answering `path`, if any (longest root first is not needed: roots are disjoint).
pub fn route(path: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| {
        s.roots.iter().any(|root| {
            path == *root
                || path
                    .strip_prefix(root)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// A service by name or binary name.
pub fn find(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name || s.binary == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_service_only_on_whole_segments() {
        assert_eq!(route("/api/stores").unwrap().name, "stores");
        assert_eq!(route("/api/stores/products/1").unwrap().name, "stores");
        assert_eq!(route("/api/ordering/x").unwrap().name, "ordering");
        assert_eq!(route("/api/cosec/sagas/1").unwrap().binary, "order-saga");
        assert!(route("/api/storesx").is_none());
        assert!(route("/readyz").is_none());
    }

    #[test]
    fn services_are_found_by_name_or_binary() {
        assert_eq!(find("order-saga").unwrap().name, "cosec");
        assert_eq!(find("baskets").unwrap().binary, "baskets");
        assert!(find("nope").is_none());
    }
}
