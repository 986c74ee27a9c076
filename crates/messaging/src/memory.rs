//! An in-process transport with the same semantics as JetStream where unit tests care about them
//! (fan-out per durable, competing handling inside one durable, de-duplication by id, retries,
//! dead letters, request/reply). It keeps every published envelope so tests can assert on them.
//! Not for production: nothing survives the process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{self, Verdict};
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::subscription::Subscription;
use crate::transport::{ConsumerHandle, ConsumerStatus, ResponderFn, Transport};

type Delivery = (Arc<Envelope>, u32);

/// The in-memory transport.
#[derive(Clone)]
pub struct Memory {
    prefix: Arc<str>,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    consumers: Mutex<HashMap<String, Consumer>>,
    responders: Mutex<HashMap<String, ResponderFn>>,
    seen: Mutex<HashSet<Uuid>>,
    log: Mutex<Vec<Envelope>>,
}

struct Consumer {
    filter: String,
    tx: mpsc::UnboundedSender<Delivery>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Memory {
    /// A fresh broker for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Memory {
            prefix: Arc::from(prefix),
            inner: Arc::default(),
        }
    }

    /// Every envelope published so far, in order (duplicates removed).
    pub fn published(&self) -> Vec<Envelope> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Envelopes published to subjects matching `filter` (full subject, NATS wildcards allowed).
    pub fn published_on(&self, filter: &str) -> Vec<Envelope> {
        self.published()
            .into_iter()
            .filter(|e| subject_matches(filter, &e.subject))
            .collect()
    }

    fn deliver(&self, env: &Envelope) {
        let env = Arc::new(env.clone());
        let consumers = self
            .inner
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for consumer in consumers.values() {
            if subject_matches(&consumer.filter, &env.subject) {
                let _ = consumer.tx.send((env.clone(), 1));
            }
        }
    }
}

#[async_trait]
impl Transport for Memory {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let fresh = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(envelope.id);
        if fresh {
            self.inner
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(envelope.clone());
            self.deliver(envelope);
        }
        Ok(())
    }

    async fn request(&self, envelope: Envelope, timeout: Duration) -> Result<Envelope> {
        let responder = self
            .inner
            .responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&envelope.subject)
            .cloned();
        let Some(responder) = responder else {
            return Err(Error::NoResponders {
                subject: envelope.subject,
            });
        };
        let subject = envelope.subject.clone();
        match tokio::time::timeout(timeout, responder(envelope.clone())).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(message)) => Ok(crate::bus::response_envelope(
                &envelope,
                &crate::message::Empty {},
            )
            .with_header(crate::header::QUERY_ERROR, message)),
            Err(_) => Err(Error::Timeout { subject, timeout }),
        }
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<ConsumerHandle> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
        let filter = format!("{}.{}", self.prefix, subscription.subject);
        self.inner
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                subscription.durable.to_string(),
                Consumer {
                    filter,
                    tx: tx.clone(),
                },
            );
        let status = ConsumerStatus::new(&subscription.durable);
        status.set_running();
        let this = self.clone();
        let st = status.clone();
        let task = tokio::spawn(async move {
            let sub = Arc::new(subscription);
            loop {
                let (env, attempt) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = rx.recv() => match next { Some(d) => d, None => break },
                };
                let (verdict, attempts) =
                    dispatch::settle(&sub, env.clone(), attempt, tokio::time::sleep).await;
                match verdict {
                    Verdict::Ack => st.count_settled(),
                    Verdict::Retry { delay, .. } => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send((env, attempts + 1));
                        });
                    }
                    Verdict::DeadLetter { reason } => {
                        let dead =
                            dispatch::dead_letter(&this.prefix, &sub, &env, &reason, attempts);
                        let _ = this.publish(&dead).await;
                        st.count_settled();
                    }
                }
            }
            st.set_stopped();
        });
        Ok(ConsumerHandle { status, task })
    }

    async fn serve(
        &self,
        subject: String,
        _group: String,
        responder: ResponderFn,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>> {
        self.inner
            .responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(subject.clone(), responder);
        let inner = self.inner.clone();
        Ok(tokio::spawn(async move {
            shutdown.cancelled().await;
            inner
                .responders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&subject);
        }))
    }

    fn is_connected(&self) -> bool {
        true
    }
}

/// NATS subject matching: `*` is one token, `>` the rest.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b.c", "a.b.c"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.*", "a.b.c"));
    }
}

#[cfg(test)]
mod transport_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Memory;
    use crate::{Bus, ConsumerPolicy, Event, HandlerError, Subscription, Transport, header};

    #[derive(Clone, PartialEq, prost::Message)]
    struct Tick {
        #[prost(uint32, tag = "1")]
        n: u32,
    }

    impl prost::Name for Tick {
        const NAME: &'static str = "Tick";
        const PACKAGE: &'static str = "memtest";
    }

    impl Event for Tick {
        const SUBJECT: &'static str = "clock.events.Tick";
        fn key(&self) -> String {
            "clock".into()
        }
    }

    fn policy() -> ConsumerPolicy {
        ConsumerPolicy {
            backoff: vec![Duration::from_millis(1)],
            max_deliveries: 3,
            ..ConsumerPolicy::default()
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn fans_out_deduplicates_and_dead_letters_like_jetstream() {
        let memory = Memory::new("unit");
        let bus = Bus::new(Arc::new(memory.clone()));
        let shutdown = crate::CancellationToken::new();
        let got: Arc<Mutex<Vec<u32>>> = Arc::default();
        let g = got.clone();
        let ok = Subscription::new("a", Tick::SUBJECT)
            .policy(policy())
            .on(move |t: Tick, _| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push(t.n);
                    Ok(())
                }
            });
        let failing = Subscription::new("b", Tick::SUBJECT)
            .policy(policy())
            .on(|_: Tick, _| async { Err(HandlerError::retryable("nope")) });
        bus.subscribe(ok, shutdown.clone()).await.unwrap();
        bus.subscribe(failing, shutdown.clone()).await.unwrap();
        let env = bus.event(&Tick { n: 1 });
        bus.publish(&env).await.unwrap();
        bus.publish(&env).await.unwrap();
        settle().await;
        assert_eq!(
            *got.lock().unwrap(),
            vec![1],
            "delivered once despite the duplicate publish"
        );
        let dead = memory.published_on("unit.deadletter.b");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].header(header::DEAD_LETTER_ATTEMPTS), Some("3"));
        assert!(memory.is_connected());
        shutdown.cancel();
    }
}
