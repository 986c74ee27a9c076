//! Test messages and a per-test JetStream environment (own prefix and stream, deleted on drop).

#![allow(dead_code)]

use std::sync::Arc;

use messaging::jetstream::{JetStream, JetStreamConfig};
use messaging::{Bus, CancellationToken, Command, Event, Query, Reply};

/// An event keyed by `key` with a sequence number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

impl prost::Name for Ping {
    const NAME: &'static str = "Ping";
    const PACKAGE: &'static str = "test.v1";
}

impl Event for Ping {
    const SUBJECT: &'static str = "test.events.Ping";
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// A second event type on the same subject, used to check ignore lists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    #[prost(string, tag = "1")]
    pub key: String,
}

impl prost::Name for Pong {
    const NAME: &'static str = "Pong";
    const PACKAGE: &'static str = "test.v1";
}

impl Event for Pong {
    const SUBJECT: &'static str = "test.events.Ping";
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// A command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authorize {
    #[prost(string, tag = "1")]
    pub id: String,
}

impl prost::Name for Authorize {
    const NAME: &'static str = "Authorize";
    const PACKAGE: &'static str = "test.v1";
}

impl Command for Authorize {
    const SUBJECT: &'static str = "test.commands";
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A reply payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authorized {
    #[prost(string, tag = "1")]
    pub id: String,
}

impl prost::Name for Authorized {
    const NAME: &'static str = "Authorized";
    const PACKAGE: &'static str = "test.v1";
}

impl Reply for Authorized {}

/// A query and its answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lookup {
    #[prost(string, tag = "1")]
    pub id: String,
}

impl prost::Name for Lookup {
    const NAME: &'static str = "Lookup";
    const PACKAGE: &'static str = "test.v1";
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Found {
    #[prost(string, tag = "1")]
    pub name: String,
}

impl prost::Name for Found {
    const NAME: &'static str = "Found";
    const PACKAGE: &'static str = "test.v1";
}

impl Query for Lookup {
    const SUBJECT: &'static str = "test.queries.Lookup";
    type Response = Found;
}

/// One test's JetStream world: a unique prefix and stream, deleted when dropped.
pub struct World {
    pub js: JetStream,
    pub bus: Bus,
    pub prefix: String,
    pub shutdown: CancellationToken,
    url: String,
}

impl World {
    pub async fn new(label: &str) -> Self {
        Self::on(&testkit::nats_url(), label).await
    }

    pub async fn on(url: &str, label: &str) -> Self {
        let prefix = testkit::unique_prefix(label);
        let js = JetStream::connect(JetStreamConfig::new(url, &prefix))
            .await
            .expect("connect to NATS");
        let bus = Bus::new(Arc::new(js.clone()));
        World {
            js,
            bus,
            prefix,
            shutdown: CancellationToken::new(),
            url: url.to_owned(),
        }
    }

    /// A second, independent connection on the same prefix (another service instance).
    pub async fn another_instance(&self) -> Bus {
        let js = JetStream::connect(JetStreamConfig::new(&self.url, &self.prefix))
            .await
            .expect("connect");
        Bus::new(Arc::new(js))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let url = self.url.clone();
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(prefix).await;
                }
            });
        })
        .join();
    }
}
