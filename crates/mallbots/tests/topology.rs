//! `contracts::topology` — from which the NATS permissions are generated — against what the
//! modules really do: each module is started on a transport that records every durable consumer
//! it creates and every query it serves, and the records must equal the table's entry for that
//! service. A new consumer or responder that is not in the table (and so would be denied by the
//! generated NATS config) fails here rather than in production.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::topology;
use messaging::memory::Memory;
use messaging::{
    CancellationToken, ConsumerHandle, Envelope, ResponderFn, Subscription, Transport,
};
use platform::ModuleContext;
use tokio::task::JoinHandle;

mod common;
use common::modules;

/// The in-memory transport, noting the consumers and responders started on it.
struct Recorder {
    inner: Memory,
    consumers: Mutex<BTreeSet<(String, String)>>,
    answers: Mutex<BTreeSet<String>>,
}

#[platform::async_trait]
impl Transport for Recorder {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    async fn publish(&self, envelope: &Envelope) -> messaging::Result<()> {
        self.inner.publish(envelope).await
    }

    async fn request(&self, envelope: Envelope, timeout: Duration) -> messaging::Result<Envelope> {
        self.inner.request(envelope, timeout).await
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> messaging::Result<ConsumerHandle> {
        let relative = subscription
            .subject()
            .strip_prefix(&format!("{}.", self.prefix()))
            .unwrap_or(subscription.subject())
            .to_owned();
        self.consumers
            .lock()
            .unwrap()
            .insert((subscription.durable().to_owned(), relative));
        self.inner.subscribe(subscription, shutdown).await
    }

    async fn serve(
        &self,
        subject: String,
        group: String,
        responder: ResponderFn,
        shutdown: CancellationToken,
    ) -> messaging::Result<JoinHandle<()>> {
        let rpc = format!("rpc.{}.", self.prefix());
        self.answers
            .lock()
            .unwrap()
            .insert(subject.strip_prefix(&rpc).unwrap_or(&subject).to_owned());
        self.inner.serve(subject, group, responder, shutdown).await
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }
}

#[tokio::test]
async fn every_module_starts_exactly_the_consumers_and_responders_the_topology_lists() {
    let db = testkit::TestDatabase::create("topology").await;
    let mut seen = BTreeSet::new();
    for module in modules() {
        let name = module.name();
        let recorder = Arc::new(Recorder {
            inner: Memory::new("mallbots"),
            consumers: Mutex::default(),
            answers: Mutex::default(),
        });
        let ctx = ModuleContext::new(messaging::Bus::new(recorder.clone()), db.url());
        let _routes = module
            .start(ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("{name} starts: {e:#}"));
        ctx.shutdown.cancel();
        ctx.tasks.close();
        tokio::time::timeout(Duration::from_secs(30), ctx.tasks.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} stops"));

        let listed = topology::service(name)
            .unwrap_or_else(|| panic!("module {name} is missing from contracts::topology"));
        let expected: BTreeSet<(String, String)> = listed
            .consumers
            .iter()
            .map(|c| (c.durable.to_owned(), c.subject.to_owned()))
            .collect();
        assert_eq!(
            *recorder.consumers.lock().unwrap(),
            expected,
            "consumers of {name} differ from contracts::topology"
        );
        let expected: BTreeSet<String> = listed.answers.iter().map(|q| q.to_string()).collect();
        assert_eq!(
            *recorder.answers.lock().unwrap(),
            expected,
            "queries answered by {name} differ from contracts::topology"
        );
        seen.insert(name);
    }
    let listed: BTreeSet<&str> = topology::SERVICES.iter().map(|s| s.name).collect();
    assert_eq!(seen, listed, "the topology lists a service no module is");
}
