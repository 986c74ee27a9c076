//! The typed facade services use: build envelopes for events and commands, publish, query,
//! subscribe and serve queries, without touching the transport's details.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::envelope::{Envelope, header};
use crate::error::{Error, Result};
use crate::message::{Command, Event, Message, Query};
use crate::subscription::Subscription;
use crate::transport::{ConsumerHandle, ResponderFn, Transport};

/// A cheap, cloneable handle on a transport.
#[derive(Clone)]
pub struct Bus {
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.transport.prefix())
            .finish()
    }
}

impl Bus {
    /// Wraps a transport.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Bus { transport }
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The deployment prefix.
    pub fn prefix(&self) -> &str {
        self.transport.prefix()
    }

    /// `<prefix>.<relative>`.
    pub fn subject(&self, relative: &str) -> String {
        format!("{}.{relative}", self.prefix())
    }

    /// Where queries travel: `rpc.<prefix>.<relative>`. Outside `<prefix>.>` on purpose: the
    /// stream captures that, and a request into a stream subject would be answered by the
    /// stream's PubAck instead of a responder.
    pub fn query_subject(&self, relative: &str) -> String {
        format!("rpc.{}.{relative}", self.prefix())
    }

    /// The envelope of an integration event, keyed by its aggregate.
    pub fn event<E: Event>(&self, event: &E) -> Envelope {
        Envelope::new(self.subject(E::SUBJECT), event).with_header(header::KEY, event.key())
    }

    /// The envelope of a command whose reply goes to `reply_to` (below the prefix), e.g.
    /// `cosec.replies.CreateOrder`.
    pub fn command<C: Command>(&self, command: &C, reply_to: &str) -> Envelope {
        Envelope::new(self.subject(C::SUBJECT), command)
            .with_header(header::KEY, command.key())
            .with_header(header::REPLY_TO, self.subject(reply_to))
    }

    /// Publishes and waits for the broker's confirmation.
    pub async fn publish(&self, envelope: &Envelope) -> Result<()> {
        self.transport.publish(envelope).await
    }

    /// Builds and publishes an event; returns the envelope that was sent.
    pub async fn publish_event<E: Event>(&self, event: &E) -> Result<Envelope> {
        let env = self.event(event);
        self.publish(&env).await?;
        Ok(env)
    }

    /// Asks a query and decodes the answer. `NoResponders` and `Timeout` errors say which.
    pub async fn query<Q: Query>(&self, query: &Q, timeout: Duration) -> Result<Q::Response> {
        let subject = self.query_subject(Q::SUBJECT);
        let env = Envelope::new(subject.clone(), query);
        let answer = self.transport.request(env, timeout).await?;
        if let Some(message) = answer.header(header::QUERY_ERROR) {
            return Err(Error::Remote {
                subject,
                message: message.to_owned(),
            });
        }
        answer.decode::<Q::Response>()
    }

    /// Starts a durable consumer.
    pub async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<ConsumerHandle> {
        self.transport.subscribe(subscription, shutdown).await
    }

    /// Serves query `Q` as a member of queue `group` (competing responders share the load).
    /// The handler's `Err` text reaches the caller as [`Error::Remote`].
    pub async fn serve<Q, F, Fut>(
        &self,
        group: &str,
        handler: F,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>>
    where
        Q: Query,
        F: Fn(Q, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Q::Response, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let responder: ResponderFn = Arc::new(move |request: Envelope| {
            let handler = handler.clone();
            Box::pin(async move {
                let query = request.decode::<Q>().map_err(|e| e.to_string())?;
                let response = handler(query, request.clone()).await?;
                Ok(response_envelope(&request, &response))
            })
        });
        self.transport
            .serve(
                self.query_subject(Q::SUBJECT),
                group.to_owned(),
                responder,
                shutdown,
            )
            .await
    }
}

/// The answer envelope for `request`.
pub(crate) fn response_envelope<M: Message>(request: &Envelope, response: &M) -> Envelope {
    Envelope::new(request.subject.clone(), response).caused_by(request)
}
