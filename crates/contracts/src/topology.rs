//! Who talks to whom over NATS, and what each service may therefore do there.
//!
//! [`SERVICES`] says, per service, which durable consumers it runs (and on which subject), which
//! commands it sends and which queries it asks and answers. What it *publishes* is not listed:
//! it follows from the [`CATALOGUE`](crate::CATALOGUE) — a service publishes the events on the
//! subjects it owns (`<service>.events.*`), the commands it sends, and the replies of the
//! commands it consumes. From that, [`permissions`] computes the least a service's NATS user
//! must be allowed (its subjects, the JetStream API calls for its own durables, its dead-letter
//! subjects, its queries) and [`nats_config`] renders the `authorization` block of a
//! `nats-server` configuration: `mallbots-admin nats-config` prints it, `make nats-config`
//! regenerates `docker/nats/auth.conf`. A test of the monolith crate
//! (`crates/mallbots/tests/topology.rs`) starts every module and checks that the consumers and
//! responders it really starts are the ones listed here, so the table cannot drift from the
//! code; the end-to-end checkout on a secured server (`crates/e2e/tests/secured.rs`) covers
//! what they publish and ask.
//!
//! Subjects here are relative, like everywhere in this crate; the generator adds the prefix.

use crate::{CATALOGUE, Kind, customers, stores, subjects};

/// One durable consumer a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumer {
    /// Durable name (`<service>-<what>`), which also names its dead-letter subject.
    pub durable: &'static str,
    /// Relative subject it filters on.
    pub subject: &'static str,
}

/// One service's traffic on NATS.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Service name: its schema, and the NATS user it connects as.
    pub name: &'static str,
    /// Its durable consumers.
    pub consumers: &'static [Consumer],
    /// Relative subjects of the commands it sends.
    pub sends: &'static [&'static str],
    /// Relative subjects of the queries it asks (request/reply, `rpc.<prefix>.<subject>`).
    pub asks: &'static [&'static str],
    /// Relative subjects of the queries it answers.
    pub answers: &'static [&'static str],
}

const GET_STORE: &str = <stores::v1::GetStore as messaging::Query>::SUBJECT;
const GET_PRODUCT: &str = <stores::v1::GetProduct as messaging::Query>::SUBJECT;
const GET_CUSTOMER: &str = <customers::v1::GetCustomer as messaging::Query>::SUBJECT;

const fn consumer(durable: &'static str, subject: &'static str) -> Consumer {
    Consumer { durable, subject }
}

/// Every service, with the durable consumers and query traffic its module starts.
pub static SERVICES: &[Service] = &[
    Service {
        name: "stores",
        consumers: &[],
        sends: &[],
        asks: &[],
        answers: &[GET_STORE, GET_PRODUCT],
    },
    Service {
        name: "customers",
        consumers: &[consumer("customers-commands", subjects::CUSTOMERS_COMMANDS)],
        sends: &[],
        asks: &[],
        answers: &[GET_CUSTOMER],
    },
    Service {
        name: "payments",
        consumers: &[
            consumer("payments-commands", subjects::PAYMENTS_COMMANDS),
            consumer("payments-orders", subjects::ORDER_EVENTS),
        ],
        sends: &[],
        asks: &[],
        answers: &[],
    },
    Service {
        name: "baskets",
        consumers: &[
            consumer("baskets-stores", subjects::STORE_EVENTS),
            consumer("baskets-products", subjects::PRODUCT_EVENTS),
        ],
        sends: &[],
        asks: &[GET_STORE, GET_PRODUCT],
        answers: &[],
    },
    Service {
        name: "ordering",
        consumers: &[
            consumer("ordering-baskets", subjects::BASKET_EVENTS),
            consumer("ordering-depot", subjects::SHOPPING_LIST_EVENTS),
            consumer("ordering-payments", subjects::INVOICE_EVENTS),
            consumer("ordering-commands", subjects::ORDERING_COMMANDS),
        ],
        sends: &[],
        asks: &[],
        answers: &[],
    },
    Service {
        name: "depot",
        consumers: &[
            consumer("depot-commands", subjects::DEPOT_COMMANDS),
            consumer("depot-stores", subjects::STORE_EVENTS),
            consumer("depot-products", subjects::PRODUCT_EVENTS),
        ],
        sends: &[],
        asks: &[GET_STORE, GET_PRODUCT],
        answers: &[],
    },
    Service {
        name: "notifications",
        consumers: &[
            consumer("notifications-customers", subjects::CUSTOMER_EVENTS),
            consumer("notifications-orders", subjects::ORDER_EVENTS),
        ],
        sends: &[],
        asks: &[GET_CUSTOMER],
        answers: &[],
    },
    Service {
        name: "search",
        consumers: &[
            consumer("search-customers", subjects::CUSTOMER_EVENTS),
            consumer("search-stores", subjects::STORE_EVENTS),
            consumer("search-products", subjects::PRODUCT_EVENTS),
            consumer("search-orders", subjects::ORDER_EVENTS),
        ],
        sends: &[],
        asks: &[GET_CUSTOMER, GET_STORE, GET_PRODUCT],
        answers: &[],
    },
    Service {
        name: "cosec",
        consumers: &[
            consumer("cosec-ordering", subjects::ORDER_EVENTS),
            consumer("cosec-replies", subjects::CREATE_ORDER_REPLIES),
        ],
        sends: &[
            subjects::CUSTOMERS_COMMANDS,
            subjects::DEPOT_COMMANDS,
            subjects::PAYMENTS_COMMANDS,
            subjects::ORDERING_COMMANDS,
        ],
        asks: &[],
        answers: &[],
    },
];

/// The NATS user of the monolith (every module in one process: the whole prefix).
pub const MONOLITH_USER: &str = "mallbots";

/// The NATS user of `mallbots-admin` (the JetStream API and the prefix's subjects).
pub const ADMIN_USER: &str = "admin";

/// The service called `name`, if there is one.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

impl Service {
    /// Relative subjects this service publishes into the stream, sorted: the events on the
    /// subjects it owns (`<name>.events.*` in the catalogue), the commands it sends, and — when
    /// it consumes commands — the reply subjects, since every command is answered.
    pub fn publishes(&self) -> Vec<&'static str> {
        let consumes_commands = self
            .consumers
            .iter()
            .any(|c| catalogued(c.subject).any(|kind| kind == Kind::Command));
        let owned_events = format!("{}.events.", self.name);
        let mut out: Vec<&'static str> = CATALOGUE
            .iter()
            .filter(|e| match e.kind {
                Kind::Event => e.subject.starts_with(&owned_events),
                Kind::Command => self.sends.contains(&e.subject),
                Kind::Reply => consumes_commands,
                Kind::Query => false,
            })
            .map(|e| e.subject)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn catalogued(subject: &str) -> impl Iterator<Item = Kind> + '_ {
    CATALOGUE
        .iter()
        .filter(move |e| e.subject == subject)
        .map(|e| e.kind)
}

/// What one NATS user may do: the subjects it may publish on and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// User name.
    pub user: String,
    /// Environment variable holding its password (in the server's environment and, for the
    /// client, `NATS_PASSWORD`).
    pub password_var: String,
    /// What it is for, one line (a comment in the rendered configuration).
    pub about: String,
    /// Subjects it may publish on (wildcards allowed).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to (wildcards allowed).
    pub subscribe: Vec<String>,
    /// Whether it may answer requests it received (once each, to the request's reply subject)
    /// without a publish permission on the requester's inbox: how query responders reply.
    pub allow_responses: bool,
}

/// The environment variable holding `user`'s password: `NATS_PASSWORD_<USER>` (upper case,
/// `-` and `.` as `_`), e.g. `NATS_PASSWORD_STORES`.
pub fn password_var(user: &str) -> String {
    let name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("NATS_PASSWORD_{name}")
}

/// Reply inboxes: async-nats receives request answers, JetStream API responses, PubAcks and
/// pulled messages there.
const INBOX: &str = "_INBOX.>";

/// The permissions of every user of a deployment on `prefix`: one per service (in
/// [`SERVICES`] order), then the monolith's and the admin's.
pub fn permissions(prefix: &str) -> Vec<Permissions> {
    let stream = messaging::jetstream::JetStreamConfig::new("", prefix).stream_name();
    let js_stream = |call: &str| format!("$JS.API.STREAM.{call}.{stream}");
    let mut users: Vec<Permissions> = SERVICES
        .iter()
        .map(|service| {
            let mut publish: Vec<String> = service
                .publishes()
                .iter()
                .map(|s| format!("{prefix}.{s}"))
                .collect();
            publish.extend(
                service
                    .consumers
                    .iter()
                    .map(|c| messaging::dead_letter_subject(prefix, c.durable)),
            );
            publish.extend(service.asks.iter().map(|q| format!("rpc.{prefix}.{q}")));
            // Every process provisions the stream at start-up (get or create).
            publish.push(js_stream("INFO"));
            publish.push(js_stream("CREATE"));
            for c in service.consumers {
                let durable = c.durable;
                publish.push(format!(
                    "$JS.API.CONSUMER.CREATE.{stream}.{durable}.{prefix}.{}",
                    c.subject
                ));
                publish.push(format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"));
                publish.push(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"));
                publish.push(format!("$JS.ACK.{stream}.{durable}.>"));
            }
            let mut subscribe = vec![INBOX.to_owned()];
            subscribe.extend(service.answers.iter().map(|q| format!("rpc.{prefix}.{q}")));
            let consumers: Vec<&str> = service.consumers.iter().map(|c| c.durable).collect();
            Permissions {
                user: service.name.to_owned(),
                password_var: password_var(service.name),
                about: format!(
                    "the {} service; consumers: {}",
                    service.name,
                    if consumers.is_empty() {
                        "none".to_owned()
                    } else {
                        consumers.join(", ")
                    }
                ),
                publish,
                subscribe,
                allow_responses: !service.answers.is_empty(),
            }
        })
        .collect();
    users.push(Permissions {
        user: MONOLITH_USER.to_owned(),
        password_var: password_var(MONOLITH_USER),
        about: "the monolith: every module in one process, so the whole prefix".to_owned(),
        publish: vec![
            format!("{prefix}.>"),
            format!("rpc.{prefix}.>"),
            js_stream("INFO"),
            js_stream("CREATE"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.ACK.{stream}.>"),
        ],
        subscribe: vec![INBOX.to_owned(), format!("rpc.{prefix}.>")],
        allow_responses: true,
    });
    users.push(Permissions {
        user: ADMIN_USER.to_owned(),
        password_var: password_var(ADMIN_USER),
        about: "mallbots-admin: the JetStream API (inspect, purge) and the prefix (replay)"
            .to_owned(),
        publish: vec![
            format!("{prefix}.>"),
            "$JS.API.>".to_owned(),
            format!("$JS.ACK.{stream}.>"),
        ],
        subscribe: vec![INBOX.to_owned()],
        allow_responses: false,
    });
    users
}

/// The `authorization` block of a `nats-server` configuration for a deployment on `prefix`
/// (include it from the server's configuration). Passwords are not in it: each is a reference
/// to an environment variable of the server ([`password_var`]), so the file can be committed
/// and every environment sets its own secrets.
pub fn nats_config(prefix: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by `mallbots-admin nats-config --prefix {prefix}` (`make nats-config`) from\n\
         # crates/contracts/src/topology.rs: do not edit by hand. One user per service, allowed to\n\
         # publish and subscribe only where that service does; `{MONOLITH_USER}` for the monolith,\n\
         # `{ADMIN_USER}` for mallbots-admin. Each password is read from the server's environment\n\
         # (NATS_PASSWORD_<USER>); the server refuses to start when one is missing.\n"
    ));
    out.push_str("authorization {\n  users = [\n");
    for user in permissions(prefix) {
        out.push_str(&format!("    # {}\n", user.about));
        out.push_str("    {\n");
        out.push_str(&format!("      user: \"{}\"\n", user.user));
        out.push_str(&format!("      password: ${}\n", user.password_var));
        out.push_str("      permissions: {\n");
        out.push_str(&format!(
            "        publish: {{ allow: {} }}\n",
            list(&user.publish)
        ));
        out.push_str(&format!(
            "        subscribe: {{ allow: {} }}\n",
            list(&user.subscribe)
        ));
        if user.allow_responses {
            out.push_str("        allow_responses: true\n");
        }
        out.push_str("      }\n    }\n");
    }
    out.push_str("  ]\n}\n");
    out
}

/// A configuration list of quoted subjects, one per line (quoted so `$JS…` is not read as a
/// variable reference).
fn list(subjects: &[String]) -> String {
    let mut out = String::from("[\n");
    for s in subjects {
        out.push_str(&format!("          \"{s}\"\n"));
    }
    out.push_str("        ]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_subject_has_a_publisher_and_every_consumed_one_a_consumer_table_entry() {
        for subject in subjects::ALL_SUBJECTS {
            let publishers: Vec<&str> = SERVICES
                .iter()
                .filter(|s| s.publishes().contains(&subject))
                .map(|s| s.name)
                .collect();
            assert!(!publishers.is_empty(), "nobody publishes {subject}");
        }
        for service in SERVICES {
            for c in service.consumers {
                assert!(
                    subjects::ALL_SUBJECTS.contains(&c.subject),
                    "{} consumes unknown subject {}",
                    c.durable,
                    c.subject
                );
                assert!(
                    c.durable.starts_with(&format!("{}-", service.name)),
                    "{} is not named after {}",
                    c.durable,
                    service.name
                );
            }
        }
    }

    #[test]
    fn publishes_follow_ownership_commands_and_replies() {
        let publishes = |name| service(name).unwrap().publishes();
        assert_eq!(
            publishes("stores"),
            ["stores.events.Product", "stores.events.Store"]
        );
        assert_eq!(
            publishes("payments"),
            ["cosec.replies.CreateOrder", "payments.events.Invoice"]
        );
        assert_eq!(
            publishes("cosec"),
            [
                "customers.commands",
                "depot.commands",
                "ordering.commands",
                "payments.commands"
            ]
        );
        assert!(publishes("notifications").is_empty());
        assert!(publishes("search").is_empty());
    }

    #[test]
    fn a_service_user_gets_its_own_subjects_and_no_others() {
        let users = permissions("mb");
        let stores = users.iter().find(|u| u.user == "stores").unwrap();
        assert!(
            stores
                .publish
                .contains(&"mb.stores.events.Store".to_owned())
        );
        assert!(!stores.publish.iter().any(|s| s.contains("payments")));
        assert!(
            stores
                .subscribe
                .contains(&"rpc.mb.stores.queries.GetStore".to_owned())
        );
        assert!(stores.allow_responses);
        let depot = users.iter().find(|u| u.user == "depot").unwrap();
        for expected in [
            "mb.deadletter.depot-stores",
            "rpc.mb.stores.queries.GetProduct",
            "$JS.API.CONSUMER.CREATE.mb.depot-commands.mb.depot.commands",
            "$JS.API.CONSUMER.MSG.NEXT.mb.depot-commands",
            "$JS.ACK.mb.depot-commands.>",
            "mb.cosec.replies.CreateOrder",
        ] {
            assert!(
                depot.publish.contains(&expected.to_owned()),
                "depot lacks {expected}"
            );
        }
        assert!(!depot.allow_responses);
        assert_eq!(users.len(), SERVICES.len() + 2);
        // A dotted prefix names the stream with underscores, as the transport does.
        let dotted = permissions("a.b");
        assert!(
            dotted[0]
                .publish
                .contains(&"$JS.API.STREAM.INFO.a_b".to_owned())
        );
    }

    #[test]
    fn password_variables_are_upper_case() {
        assert_eq!(password_var("cosec"), "NATS_PASSWORD_COSEC");
        assert_eq!(password_var("order-saga"), "NATS_PASSWORD_ORDER_SAGA");
    }

    /// The committed `docker/nats/auth.conf` is what the generator prints today.
    #[test]
    fn committed_nats_config_is_up_to_date() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/nats/auth.conf");
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            committed == nats_config("mallbots"),
            "{} is stale: run `make nats-config` and commit the result",
            path.display()
        );
    }
}
