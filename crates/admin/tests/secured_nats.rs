//! The generated NATS authorization (`mallbots-admin nats-config`) against a real, private
//! `nats-server` (Debian's 2.9) started with it: each service user can do what its module does
//! — provision the stream, publish its own events, consume through its own durables, dead-letter,
//! ask and answer its queries — and nothing else: a subject it does not own is refused by the
//! server and never reaches the stream. Also: the same over TLS with a private CA.

use std::sync::Arc;
use std::time::Duration;

use contracts::payments::v1::InvoicePaid;
use contracts::stores::v1::{GetStore, GetStoreResponse, Store, StoreCreated};
use contracts::{subjects, topology};
use futures_util::StreamExt;
use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{Bus, CancellationToken, HandlerError, Subscription};
use tokio::sync::mpsc;

/// A private server secured by the generated configuration for `prefix`, and the password of
/// every user (random per test).
struct Secured {
    server: testkit::NatsServer,
    prefix: String,
    passwords: Vec<(String, String)>,
}

impl Secured {
    async fn start(label: &str) -> Self {
        Self::start_with(label, "").await
    }

    /// Like [`Secured::start`], with `extra` appended to the server's configuration.
    async fn start_with(label: &str, extra: &str) -> Self {
        let prefix = testkit::unique_prefix(label);
        let passwords: Vec<(String, String)> = topology::permissions(&prefix)
            .into_iter()
            // nats-server parses a referenced variable as a configuration value: a password
            // must read as a string (a leading letter), not as a number.
            .map(|p| (p.user, format!("pw{}", uuid::Uuid::new_v4().simple())))
            .collect();
        let env: Vec<(String, String)> = passwords
            .iter()
            .map(|(user, password)| (topology::password_var(user), password.clone()))
            .collect();
        let config = format!("{}\n{extra}", topology::nats_config(&prefix));
        let server = testkit::NatsServer::start_with_config(&config, &env).await;
        Secured {
            server,
            prefix,
            passwords,
        }
    }

    fn password(&self, user: &str) -> String {
        self.passwords
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no user {user}"))
    }

    /// The transport a process running as `user` gets (the real JetStream one); connecting
    /// provisions the stream, which every user must be allowed to do.
    async fn connect(&self, user: &str) -> messaging::Result<JetStream> {
        self.connect_with(user, |config| config).await
    }

    /// [`Secured::connect`] with the configuration adjusted by `tune` (TLS settings).
    async fn connect_with(
        &self,
        user: &str,
        tune: impl FnOnce(JetStreamConfig) -> JetStreamConfig,
    ) -> messaging::Result<JetStream> {
        JetStream::connect(tune(JetStreamConfig {
            user_password: Some((user.to_owned(), self.password(user))),
            connection_name: format!("test-{user}"),
            // A refused publish is never acknowledged: do not wait the default 5 s for it.
            ack_timeout: Duration::from_secs(2),
            ..JetStreamConfig::new(self.server.url(), &self.prefix)
        }))
        .await
    }

    /// Runs `mallbots-admin --json <args>` as `user` (connection flags only, nothing inherited).
    async fn admin_cli(&self, user: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mallbots-admin"));
        for var in [
            "NATS_URL",
            "NATS_PREFIX",
            "NATS_USER",
            "NATS_PASSWORD",
            "NATS_CREDS",
        ] {
            cmd.env_remove(var);
        }
        cmd.args([
            "--nats-url",
            &self.server.url(),
            "--nats-prefix",
            &self.prefix,
        ])
        .args(["--nats-user", user, "--nats-password", &self.password(user)])
        .arg("--json")
        .args(args);
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("mallbots-admin hung")
            .expect("mallbots-admin runs")
    }

    async fn bus(&self, user: &str) -> Bus {
        let js = self
            .connect(user)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
        Bus::new(Arc::new(js))
    }

    /// Messages stored in the stream on `relative` (e.g. `stores.events.Store`), as the admin
    /// user sees them.
    async fn stored_on(&self, relative: &str) -> u64 {
        let admin = self.connect(topology::ADMIN_USER).await.expect("admin");
        let stream = admin
            .context()
            .get_stream(admin.stream_name())
            .await
            .expect("stream info");
        let mut subjects = stream
            .info_with_subjects(format!("{}.{relative}", self.prefix))
            .await
            .expect("subjects");
        let mut total = 0;
        while let Some(entry) = subjects.next().await {
            total += entry.expect("subject count").1 as u64;
        }
        total
    }
}

fn store(id: &str) -> StoreCreated {
    StoreCreated {
        id: id.to_owned(),
        name: "Store ABC".to_owned(),
        location: "The mall".to_owned(),
    }
}

#[tokio::test]
async fn a_service_denied_a_subject_by_its_permissions_cannot_publish_there() {
    let nats = Secured::start("perm_deny").await;
    let stores = nats.bus("stores").await;

    // Its own subject: stored.
    stores
        .publish_event(&store("s-1"))
        .await
        .expect("stores may publish store events");

    // A payments event from the stores user: the server refuses it, so no PubAck comes.
    let forged = InvoicePaid {
        id: "i-1".to_owned(),
        order_id: "o-1".to_owned(),
    };
    let err = stores
        .publish_event(&forged)
        .await
        .expect_err("stores must not publish payments events");
    assert!(
        matches!(err, messaging::Error::Publish { ref subject, .. } if subject.ends_with("payments.events.Invoice")),
        "unexpected error: {err}"
    );

    // Commands are the saga's: stores cannot send one either.
    let command = contracts::customers::v1::AuthorizeCustomer {
        id: "c-1".to_owned(),
    };
    let envelope = stores.command(&command, subjects::CREATE_ORDER_REPLIES);
    assert!(stores.publish(&envelope).await.is_err());

    assert_eq!(nats.stored_on(subjects::STORE_EVENTS).await, 1);
    assert_eq!(nats.stored_on(subjects::INVOICE_EVENTS).await, 0);
    assert_eq!(nats.stored_on(subjects::CUSTOMERS_COMMANDS).await, 0);

    // The payments user, whose subject it is, can.
    let payments = nats.bus("payments").await;
    payments
        .publish_event(&forged)
        .await
        .expect("payments may publish invoice events");
    assert_eq!(nats.stored_on(subjects::INVOICE_EVENTS).await, 1);
}

#[tokio::test]
async fn a_service_consumes_through_its_own_durables_and_dead_letters_only_there() {
    let nats = Secured::start("perm_consume").await;
    let stores = nats.bus("stores").await;
    let baskets = nats.bus("baskets").await;
    let shutdown = CancellationToken::new();

    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let subscription = Subscription::new("baskets-stores", subjects::STORE_EVENTS)
        .on::<StoreCreated, _, _>(move |event, _ctx| {
            let tx = tx.clone();
            async move {
                if event.id == "poison" {
                    return Err(HandlerError::permanent("refused on purpose"));
                }
                let _ = tx.send(event.id);
                Ok(())
            }
        })
        .ignore(contracts::names_on(subjects::STORE_EVENTS));
    let handle = baskets
        .subscribe(subscription, shutdown.clone())
        .await
        .expect("baskets may create and read its durable consumer");

    stores.publish_event(&store("s-1")).await.unwrap();
    stores.publish_event(&store("poison")).await.unwrap();
    stores.publish_event(&store("s-2")).await.unwrap();
    let mut received = Vec::new();
    while received.len() < 2 {
        let id = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("events arrive through baskets-stores")
            .expect("channel open");
        received.push(id);
    }
    assert_eq!(received, ["s-1", "s-2"]);

    // The refused one was dead-lettered on baskets' own dead-letter subject, and every message
    // was acknowledged (nothing left pending on the durable).
    let admin = nats.connect(topology::ADMIN_USER).await.expect("admin");
    let dead = testkit::eventually(Duration::from_secs(10), "dead letter stored", || {
        let admin = admin.clone();
        async move {
            let counts = admin.dead_letter_counts().await.ok()?;
            counts.get("baskets-stores").copied()
        }
    })
    .await;
    assert_eq!(dead, 1);
    testkit::eventually(Duration::from_secs(10), "everything acknowledged", || {
        let admin = admin.clone();
        async move {
            let (pending, ack_pending) = admin.consumer_lag("baskets-stores").await.ok()?;
            (pending == 0 && ack_pending == 0).then_some(())
        }
    })
    .await;

    // The operator reads the dead letter with mallbots-admin as the admin user; a service
    // user cannot (reading the stream's messages is not among its permissions).
    let listed = nats.admin_cli(topology::ADMIN_USER, &["dlq", "list"]).await;
    assert!(
        listed.status.success(),
        "dlq list as admin: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("refused on purpose"));
    let denied = nats.admin_cli("baskets", &["dlq", "list"]).await;
    assert!(!denied.status.success(), "dlq list as baskets must fail");

    // Another service's durable is out of reach, whatever its subject.
    let stolen = Subscription::new("depot-stores", subjects::STORE_EVENTS)
        .ignore(contracts::names_on(subjects::STORE_EVENTS));
    assert!(
        baskets.subscribe(stolen, shutdown.clone()).await.is_err(),
        "baskets must not create depot's consumer"
    );
    let elsewhere = Subscription::new("baskets-stores-2", subjects::STORE_EVENTS)
        .ignore(contracts::names_on(subjects::STORE_EVENTS));
    assert!(
        baskets
            .subscribe(elsewhere, shutdown.clone())
            .await
            .is_err(),
        "baskets must not create consumers it does not declare"
    );

    shutdown.cancel();
    handle.task.await.unwrap();
}

#[tokio::test]
async fn queries_are_answered_by_their_owner_and_asked_by_the_services_that_need_them() {
    let nats = Secured::start("perm_query").await;
    let stores = nats.bus("stores").await;
    let baskets = nats.bus("baskets").await;
    let ordering = nats.bus("ordering").await;
    let shutdown = CancellationToken::new();

    let responder = stores
        .serve::<GetStore, _, _>(
            "stores",
            |query, _| async move {
                Ok(GetStoreResponse {
                    store: Some(Store {
                        id: query.id,
                        name: "Store ABC".to_owned(),
                        location: "The mall".to_owned(),
                        participating: true,
                    }),
                })
            },
            shutdown.clone(),
        )
        .await
        .expect("stores serves GetStore");

    let ask = |bus: Bus| async move {
        bus.query(
            &GetStore {
                id: "s-1".to_owned(),
            },
            Duration::from_secs(2),
        )
        .await
    };
    // Subscriptions are confirmed asynchronously: retry until the responder is in place.
    let answer = testkit::eventually(Duration::from_secs(10), "GetStore answered", || {
        let baskets = baskets.clone();
        async move { ask(baskets).await.ok() }
    })
    .await;
    assert_eq!(answer.store.map(|s| s.id).as_deref(), Some("s-1"));

    // Ordering never asks stores anything, so it may not.
    assert!(ask(ordering).await.is_err());

    shutdown.cancel();
    responder.await.unwrap();
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_are_refused_and_the_monolith_user_may_use_its_prefix() {
    let nats = Secured::start("perm_users").await;
    let anonymous = JetStream::connect(JetStreamConfig::new(nats.server.url(), &nats.prefix)).await;
    assert!(anonymous.is_err(), "an anonymous client must be refused");
    let wrong = JetStream::connect(JetStreamConfig {
        user_password: Some(("stores".to_owned(), "not-the-password".to_owned())),
        ..JetStreamConfig::new(nats.server.url(), &nats.prefix)
    })
    .await;
    assert!(wrong.is_err(), "a wrong password must be refused");

    let monolith = nats.bus(topology::MONOLITH_USER).await;
    monolith.publish_event(&store("s-1")).await.unwrap();
    monolith
        .publish_event(&InvoicePaid {
            id: "i-1".to_owned(),
            order_id: "o-1".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(nats.stored_on(subjects::STORE_EVENTS).await, 1);
    assert_eq!(nats.stored_on(subjects::INVOICE_EVENTS).await, 1);
}

/// Writes a private CA and a server certificate for 127.0.0.1 signed by it into `dir` with
/// Debian's `openssl`: `ca.pem`, `server.pem`, `server.key`.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=mallbots-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&ca);
    let mut request = vec!["req"];
    request.extend(ec);
    request.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&request);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
}

#[tokio::test]
async fn over_tls_a_client_trusting_the_private_ca_connects_and_one_that_does_not_is_refused() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certificates(certs.path());
    let path = |name: &str| certs.path().join(name);
    let tls = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        path("server.pem").display(),
        path("server.key").display()
    );
    let nats = Secured::start_with("perm_tls", &tls).await;

    let stores = nats
        .connect_with("stores", |c| JetStreamConfig {
            tls_ca_file: Some(path("ca.pem")),
            ..c
        })
        .await
        .expect("TLS with the private CA and the stores user");
    Bus::new(Arc::new(stores))
        .publish_event(&store("s-1"))
        .await
        .expect("stores publishes over TLS");

    let untrusting = nats.connect("stores").await;
    assert!(
        untrusting.is_err(),
        "a client without the CA must not accept the server's certificate"
    );
}
