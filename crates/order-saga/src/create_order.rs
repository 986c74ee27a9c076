//! The create-order saga (spec messaging.md §7, flows F17/F18): started by `OrderCreated`, it
//! authorizes the customer, has the depot create the shopping list, confirms the payment,
//! initiates the shopping and approves the order. A failed (or unanswered) step turns it back:
//! the shopping list is cancelled if it was created, then the order is rejected.
//!
//! | step | action             | compensation       | reply hook                          |
//! |------|--------------------|--------------------|-------------------------------------|
//! | 0    | —                  | RejectOrder        | —                                   |
//! | 1    | AuthorizeCustomer  | —                  | —                                   |
//! | 2    | CreateShoppingList | CancelShoppingList | CreatedShoppingList → shopping id   |
//! | 3    | ConfirmPayment     | —                  | —                                   |
//! | 4    | InitiateShopping   | —                  | —                                   |
//! | 5    | ApproveOrder       | —                  | —                                   |
//!
//! The saga id is the order id (weaknesses C3), so a second `OrderCreated` for one order does
//! not start a second saga.

use contracts::customers::v1::AuthorizeCustomer;
use contracts::depot::v1::{
    CancelShoppingList, CreateShoppingList, CreatedShoppingList, InitiateShopping,
    create_shopping_list,
};
use contracts::ordering::v1::{ApproveOrder, OrderCreated, RejectOrder};
use contracts::payments::v1::ConfirmPayment;
use messaging::{Empty, Outcome};
use serde::{Deserialize, Serialize};

use crate::engine::{Mode, SagaDefinition, Step};

/// The saga's name: the `saga_type` of its rows.
pub const SAGA_NAME: &str = "cosec.CreateOrder";

/// What the saga knows about its order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderData {
    /// The order (and saga) id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// The payment authorization made before checkout.
    pub payment_id: String,
    /// The depot's shopping list, once the depot created it (empty before).
    pub shopping_id: String,
    /// The order lines.
    pub items: Vec<Item>,
    /// Σ quantity × price, the amount ConfirmPayment asks for.
    pub total: f64,
}

/// One order line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The product.
    pub product_id: String,
    /// The store selling it.
    pub store_id: String,
    /// Unit price when ordered.
    pub price: f64,
    /// How many.
    pub quantity: i32,
}

impl From<&OrderCreated> for CreateOrderData {
    fn from(event: &OrderCreated) -> Self {
        let items: Vec<Item> = event
            .items
            .iter()
            .map(|i| Item {
                product_id: i.product_id.clone(),
                store_id: i.store_id.clone(),
                price: i.price,
                quantity: i.quantity,
            })
            .collect();
        let total = items.iter().map(|i| f64::from(i.quantity) * i.price).sum();
        CreateOrderData {
            order_id: event.id.clone(),
            customer_id: event.customer_id.clone(),
            payment_id: event.payment_id.clone(),
            shopping_id: String::new(),
            items,
            total,
        }
    }
}

/// Why a success reply to CreateShoppingList is refused: it must name the list.
const NO_LIST: &str = "the depot's reply names no shopping list";

/// The shopping id, which steps after 2 need; the engine fails the step if it is missing.
fn shopping_id(data: &CreateOrderData) -> Result<String, String> {
    if data.shopping_id.is_empty() {
        Err("the shopping list id is not known".to_owned())
    } else {
        Ok(data.shopping_id.clone())
    }
}

/// The create-order saga's steps.
pub fn definition() -> SagaDefinition<CreateOrderData> {
    SagaDefinition::new(SAGA_NAME, contracts::CREATE_ORDER_REPLIES)
        .step(
            Step::new("reject order").compensation(|d: &CreateOrderData| {
                Ok(RejectOrder {
                    id: d.order_id.clone(),
                })
            }),
        )
        .step(
            Step::new("authorize customer").action(|d: &CreateOrderData| {
                Ok(AuthorizeCustomer {
                    id: d.customer_id.clone(),
                })
            }),
        )
        .step(
            Step::new("create shopping list")
                .action(|d: &CreateOrderData| {
                    Ok(CreateShoppingList {
                        order_id: d.order_id.clone(),
                        items: d
                            .items
                            .iter()
                            .map(|i| create_shopping_list::Item {
                                product_id: i.product_id.clone(),
                                store_id: i.store_id.clone(),
                                quantity: i.quantity,
                            })
                            .collect(),
                    })
                })
                .compensation(|d: &CreateOrderData| {
                    Ok(CancelShoppingList {
                        id: shopping_id(d)?,
                    })
                })
                .on_reply(
                    Mode::Action,
                    |d: &mut CreateOrderData, reply: CreatedShoppingList, outcome| {
                        // A failure reply may name the list the depot did not save: keep none.
                        if outcome == Outcome::Success {
                            if reply.id.is_empty() {
                                return Err(NO_LIST.to_owned());
                            }
                            d.shopping_id = reply.id;
                        }
                        Ok(())
                    },
                )
                .on_reply(
                    Mode::Action,
                    |_: &mut CreateOrderData, _: Empty, outcome| match outcome {
                        // Without the list id the later steps could not be sent, nor the list
                        // cancelled: refuse the success here, where nothing needs undoing yet.
                        Outcome::Success => Err(NO_LIST.to_owned()),
                        Outcome::Failure => Ok(()),
                    },
                ),
        )
        .step(Step::new("confirm payment").action(|d: &CreateOrderData| {
            Ok(ConfirmPayment {
                id: d.payment_id.clone(),
                amount: d.total,
            })
        }))
        .step(
            Step::new("initiate shopping").action(|d: &CreateOrderData| {
                Ok(InitiateShopping {
                    id: shopping_id(d)?,
                })
            }),
        )
        .step(Step::new("approve order").action(|d: &CreateOrderData| {
            Ok(ApproveOrder {
                id: d.order_id.clone(),
                shopping_id: shopping_id(d)?,
            })
        }))
}

#[cfg(test)]
mod tests {
    //! Every path of the saga through the pure core, with the repliers played by a script: a
    //! reply is built exactly as a service builds it (`MessageContext::reply`).

    use std::sync::Arc;
    use std::time::Duration;

    use contracts::ordering::v1::order_created;
    use messaging::memory::Memory;
    use messaging::{Bus, Envelope, Message, MessageContext, Reply, header};
    use persistence::Saga;
    use time::OffsetDateTime;

    use super::*;
    use crate::engine::decision::{self, Context, Decision, Effect, Record, Settlement, Status};

    const TIMEOUT: Duration = Duration::from_secs(30);
    const CREATE: &str = contracts::CREATE_ORDER_REPLIES;

    type State = Saga<Record<CreateOrderData>>;

    /// How the scripted services answer a command.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Answer {
        Succeed,
        Fail,
        Silent,
    }

    struct Run {
        definition: SagaDefinition<CreateOrderData>,
        bus: Bus,
        now: OffsetDateTime,
        trigger: Envelope,
    }

    impl Run {
        fn new() -> Self {
            let bus = Bus::new(Arc::new(Memory::new("unit")));
            let trigger = bus.event(&order_created_event());
            Run {
                definition: definition(),
                bus,
                now: OffsetDateTime::now_utc(),
                trigger,
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                bus: &self.bus,
                now: self.now,
                step_timeout: TIMEOUT,
            }
        }

        fn start(&self) -> Decision<CreateOrderData> {
            let data = CreateOrderData::from(&order_created_event());
            decision::start(
                &self.definition,
                "order-1",
                data,
                &self.trigger,
                &self.ctx(),
            )
        }

        fn reply(&self, state: State, reply: &Envelope) -> Decision<CreateOrderData> {
            decision::on_reply(&self.definition, state, reply, &self.ctx())
        }

        /// Moves the clock past the saga's deadline and lets the sweeper decide.
        fn time_out(&mut self, state: State) -> Decision<CreateOrderData> {
            self.now = state.deadline.expect("a deadline is set") + Duration::from_millis(1);
            decision::on_timeout(&self.definition, state, &self.ctx())
        }

        /// `on_timeout` at the current clock, whatever the deadline.
        fn time_out_unchecked(&self, state: State) -> Decision<CreateOrderData> {
            decision::on_timeout(&self.definition, state, &self.ctx())
        }

        /// Starts the saga and answers every command with `script`, until no command is
        /// outstanding or a command is left unanswered past its deadline (`Silent`).
        fn drive(
            &mut self,
            script: impl Fn(&str) -> Answer,
        ) -> (Decision<CreateOrderData>, Vec<Envelope>) {
            let mut decision = self.start();
            let mut sent = Vec::new();
            while let Some(issued) = decision.command.clone() {
                sent.push(issued.envelope.clone());
                let state = decision.saga;
                decision = match script(&issued.envelope.name) {
                    Answer::Succeed => {
                        let reply = answer(&issued.envelope, Outcome::Success);
                        self.reply(state, &reply)
                    }
                    Answer::Fail => {
                        let reply = answer(&issued.envelope, Outcome::Failure);
                        self.reply(state, &reply)
                    }
                    Answer::Silent => self.time_out(state),
                };
            }
            (decision, sent)
        }
    }

    fn order_created_event() -> OrderCreated {
        OrderCreated {
            id: "order-1".into(),
            customer_id: "customer-1".into(),
            payment_id: "payment-1".into(),
            shopping_id: String::new(),
            items: vec![
                order_created::Item {
                    product_id: "p1".into(),
                    store_id: "s1".into(),
                    price: 2.5,
                    quantity: 2,
                },
                order_created::Item {
                    product_id: "p2".into(),
                    store_id: "s2".into(),
                    price: 10.0,
                    quantity: 1,
                },
            ],
        }
    }

    /// The reply a service sends: the depot answers CreateShoppingList with the list (also on
    /// failure, as the original does), every other command gets a bare reply.
    fn answer(command: &Envelope, outcome: Outcome) -> Envelope {
        if command.name == CreateShoppingList::message_name() {
            let id = match outcome {
                Outcome::Success => "list-1",
                Outcome::Failure => "unsaved-list",
            };
            reply_with(command, outcome, &CreatedShoppingList { id: id.into() })
        } else {
            reply_with(command, outcome, &Empty {})
        }
    }

    fn reply_with<R: Reply>(command: &Envelope, outcome: Outcome, payload: &R) -> Envelope {
        let ctx = MessageContext {
            envelope: Arc::new(command.clone()),
            attempt: 1,
            consumer: Arc::from("test-replier"),
        };
        ctx.reply(outcome, payload)
            .expect("commands carry Reply-To")
    }

    fn names(sent: &[Envelope]) -> Vec<String> {
        sent.iter().map(|e| e.name.clone()).collect()
    }

    fn name<M: Message>() -> String {
        M::message_name()
    }

    fn forward() -> Vec<String> {
        vec![
            name::<AuthorizeCustomer>(),
            name::<CreateShoppingList>(),
            name::<ConfirmPayment>(),
            name::<InitiateShopping>(),
            name::<ApproveOrder>(),
        ]
    }

    /// The forward commands up to and including `last`.
    fn forward_until<M: Message>() -> Vec<String> {
        let all = forward();
        let end = all
            .iter()
            .position(|n| *n == name::<M>())
            .expect("a forward command");
        all[..=end].to_vec()
    }

    fn fail_on<M: Message>() -> impl Fn(&str) -> Answer {
        move |command| {
            if command == name::<M>() {
                Answer::Fail
            } else {
                Answer::Succeed
            }
        }
    }

    #[test]
    fn order_data_sums_the_total_and_copies_the_lines() {
        let data = CreateOrderData::from(&order_created_event());
        assert_eq!(data.order_id, "order-1");
        assert_eq!(data.customer_id, "customer-1");
        assert_eq!(data.payment_id, "payment-1");
        assert_eq!(data.shopping_id, "");
        assert_eq!(data.items.len(), 2);
        assert_eq!(data.items[0].quantity, 2);
        assert!((data.total - 15.0).abs() < 1e-9);
    }

    #[test]
    fn every_step_succeeding_approves_the_order_with_its_list() {
        let mut run = Run::new();
        let (last, sent) = run.drive(|_| Answer::Succeed);
        assert_eq!(names(&sent), forward());
        assert_eq!(last.effect, Effect::Completed);
        let saga = &last.saga;
        assert_eq!(Status::of(saga), Status::Completed);
        assert_eq!((saga.step, saga.done, saga.compensating), (5, true, false));
        assert_eq!(saga.deadline, None);
        assert_eq!(saga.data.pending, None);
        assert_eq!(saga.data.failure, None);
        assert_eq!(
            saga.data.data.shopping_id, "list-1",
            "the reply hook kept the id"
        );

        let authorize: AuthorizeCustomer = sent[0].decode().unwrap();
        assert_eq!(authorize.id, "customer-1");
        let create: CreateShoppingList = sent[1].decode().unwrap();
        assert_eq!(create.order_id, "order-1");
        assert_eq!(
            create
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.store_id.as_str(), i.quantity))
                .collect::<Vec<_>>(),
            vec![("p1", "s1", 2), ("p2", "s2", 1)]
        );
        let confirm: ConfirmPayment = sent[2].decode().unwrap();
        assert_eq!(confirm.id, "payment-1");
        assert!((confirm.amount - 15.0).abs() < 1e-9);
        let initiate: InitiateShopping = sent[3].decode().unwrap();
        assert_eq!(initiate.id, "list-1");
        let approve: ApproveOrder = sent[4].decode().unwrap();
        assert_eq!(
            (approve.id.as_str(), approve.shopping_id.as_str()),
            ("order-1", "list-1")
        );
    }

    #[test]
    fn commands_ask_for_replies_on_the_saga_channel_within_the_conversation() {
        let mut run = Run::new();
        let (_, sent) = run.drive(|_| Answer::Succeed);
        for command in &sent {
            assert_eq!(
                command.header(header::REPLY_TO),
                Some("unit.cosec.replies.CreateOrder")
            );
            assert_eq!(
                command.correlation_id(),
                run.trigger.correlation_id(),
                "one conversation from the order to its approval"
            );
            assert_eq!(
                command.trace_parent().map(|t| t.trace_id),
                run.trigger.trace_parent().map(|t| t.trace_id)
            );
        }
        assert_eq!(
            sent[0].causation_id(),
            Some(run.trigger.id.to_string().as_str())
        );
    }

    #[test]
    fn a_step_waits_for_its_reply_until_its_deadline() {
        let run = Run::new();
        let started = run.start();
        assert_eq!(started.effect, Effect::Issued);
        let saga = &started.saga;
        assert_eq!((saga.step, saga.done, saga.compensating), (1, false, false));
        assert_eq!(saga.deadline, Some(run.now + TIMEOUT));
        let issued = started.command.as_ref().unwrap();
        assert_eq!(
            saga.data.pending.as_ref().map(|p| p.command_id),
            Some(issued.envelope.id)
        );
        assert_eq!(issued.mode, Mode::Action);

        // The sweeper looking before the deadline changes nothing.
        let early = decision::on_timeout(&run.definition, started.saga.clone(), &run.ctx());
        assert!(matches!(early.effect, Effect::Ignored { .. }));
        assert_eq!(early.saga, started.saga);
    }

    #[test]
    fn authorize_customer_failing_rejects_the_order() {
        let mut run = Run::new();
        let (last, sent) = run.drive(fail_on::<AuthorizeCustomer>());
        let mut expected = forward_until::<AuthorizeCustomer>();
        expected.push(name::<RejectOrder>());
        assert_eq!(names(&sent), expected);
        let reject: RejectOrder = sent[1].decode().unwrap();
        assert_eq!(reject.id, "order-1");
        assert_eq!(last.effect, Effect::Compensated);
        let saga = &last.saga;
        assert_eq!(Status::of(saga), Status::Compensated);
        assert_eq!((saga.step, saga.done, saga.compensating), (0, true, true));
        let failure = saga.data.failure.as_deref().unwrap();
        assert!(
            failure.contains("step 1") && failure.contains("AuthorizeCustomer"),
            "{failure}"
        );
    }

    #[test]
    fn create_shopping_list_failing_rejects_without_cancelling_a_list() {
        let mut run = Run::new();
        let (last, sent) = run.drive(fail_on::<CreateShoppingList>());
        let mut expected = forward_until::<CreateShoppingList>();
        expected.push(name::<RejectOrder>());
        assert_eq!(names(&sent), expected);
        assert_eq!(last.effect, Effect::Compensated);
        assert_eq!(
            last.saga.data.data.shopping_id, "",
            "the unsaved list a failure reply names is not kept"
        );
    }

    #[test]
    fn later_steps_failing_cancel_the_list_then_reject_the_order() {
        fn check<M: Message>() {
            let mut run = Run::new();
            let (last, sent) = run.drive(fail_on::<M>());
            let mut expected = forward_until::<M>();
            expected.push(name::<CancelShoppingList>());
            expected.push(name::<RejectOrder>());
            assert_eq!(names(&sent), expected, "failing {}", name::<M>());
            let cancel: CancelShoppingList = sent[sent.len() - 2].decode().unwrap();
            assert_eq!(cancel.id, "list-1");
            assert_eq!(last.effect, Effect::Compensated);
            let saga = &last.saga;
            assert_eq!((saga.step, saga.done, saga.compensating), (0, true, true));
            assert!(saga.stuck_reason.is_none());
        }
        check::<ConfirmPayment>();
        check::<InitiateShopping>();
        // Also what happens to an order cancelled while the saga ran: ordering refuses to
        // approve it (weaknesses A11/F4).
        check::<ApproveOrder>();
    }

    #[test]
    fn a_failed_compensation_leaves_the_saga_stuck_not_done() {
        let mut run = Run::new();
        let (last, sent) = run.drive(|command| {
            if command == name::<ConfirmPayment>() || command == name::<CancelShoppingList>() {
                Answer::Fail
            } else {
                Answer::Succeed
            }
        });
        let mut expected = forward_until::<ConfirmPayment>();
        expected.push(name::<CancelShoppingList>());
        assert_eq!(
            names(&sent),
            expected,
            "the order is not rejected behind a live list"
        );
        let Effect::Stuck { reason } = &last.effect else {
            panic!("stuck expected, got {:?}", last.effect);
        };
        assert!(reason.contains("CancelShoppingList"), "{reason}");
        let saga = &last.saga;
        assert_eq!(Status::of(saga), Status::Stuck);
        assert_eq!((saga.step, saga.done, saga.compensating), (2, false, true));
        assert_eq!(saga.stuck_reason.as_deref(), Some(reason.as_str()));
        assert_eq!(saga.deadline, None, "the sweeper leaves it alone");
        assert_eq!(last.settled.map(|s| s.1), Some(Settlement::Failure));

        let mut run = Run::new();
        let (last, sent) = run.drive(|command| {
            if command == name::<AuthorizeCustomer>() || command == name::<RejectOrder>() {
                Answer::Fail
            } else {
                Answer::Succeed
            }
        });
        assert_eq!(
            names(&sent),
            vec![name::<AuthorizeCustomer>(), name::<RejectOrder>()]
        );
        assert!(matches!(last.effect, Effect::Stuck { .. }));
        assert_eq!((last.saga.step, last.saga.done), (0, false));
    }

    #[test]
    fn an_unanswered_step_times_out_and_compensates() {
        let mut run = Run::new();
        let (last, sent) = run.drive(|command| {
            if command == name::<ConfirmPayment>() {
                Answer::Silent
            } else {
                Answer::Succeed
            }
        });
        let mut expected = forward_until::<ConfirmPayment>();
        expected.push(name::<CancelShoppingList>());
        expected.push(name::<RejectOrder>());
        assert_eq!(names(&sent), expected);
        assert_eq!(last.effect, Effect::Compensated);
        let failure = last.saga.data.failure.as_deref().unwrap();
        assert!(
            failure.contains("no reply") && failure.contains("ConfirmPayment"),
            "{failure}"
        );
        // The compensation the sweeper sent stays in the conversation, caused by the command
        // that timed out.
        let cancel = &sent[3];
        assert_eq!(cancel.causation_id(), Some(sent[2].id.to_string().as_str()));
        assert_eq!(cancel.correlation_id(), run.trigger.correlation_id());
        assert_eq!(
            cancel.trace_parent().map(|t| t.trace_id),
            run.trigger.trace_parent().map(|t| t.trace_id)
        );
    }

    #[test]
    fn the_timeout_settles_the_command_it_gave_up_on() {
        let mut run = Run::new();
        let started = run.start();
        let authorize = started.command.clone().unwrap().envelope;
        let timed_out = run.time_out(started.saga);
        assert_eq!(
            timed_out.settled,
            Some((authorize.id, Settlement::TimedOut))
        );
        assert_eq!(
            timed_out.command.map(|c| c.envelope.name),
            Some(name::<RejectOrder>())
        );
    }

    #[test]
    fn an_unanswered_compensation_is_stuck_until_its_late_reply() {
        let mut run = Run::new();
        let (last, sent) = run.drive(|command| {
            if command == name::<InitiateShopping>() {
                Answer::Fail
            } else if command == name::<CancelShoppingList>() {
                Answer::Silent
            } else {
                Answer::Succeed
            }
        });
        let Effect::Stuck { reason } = &last.effect else {
            panic!("stuck expected, got {:?}", last.effect);
        };
        assert!(
            reason.contains("no reply") && reason.contains("CancelShoppingList"),
            "{reason}"
        );
        let cancel = sent.last().unwrap().clone();
        assert_eq!(cancel.name, name::<CancelShoppingList>());
        let stuck = last.saga;
        assert_eq!(
            (stuck.step, stuck.done, stuck.compensating),
            (2, false, true)
        );
        assert_eq!(stuck.deadline, None);
        // The sweeper never picks it again.
        let again = run.time_out_unchecked(stuck.clone());
        assert!(matches!(again.effect, Effect::Ignored { .. }));

        // A late failure keeps it stuck (now for the failure).
        let failed = run.reply(stuck.clone(), &answer(&cancel, Outcome::Failure));
        assert!(matches!(failed.effect, Effect::Stuck { .. }));
        assert!(failed.saga.data.pending.is_none());

        // A late success lets the compensation finish after all.
        let resumed = run.reply(stuck, &answer(&cancel, Outcome::Success));
        assert_eq!(resumed.effect, Effect::Issued);
        assert!(resumed.saga.stuck_reason.is_none());
        let reject = resumed.command.clone().unwrap();
        assert_eq!(reject.envelope.name, name::<RejectOrder>());
        let done = run.reply(resumed.saga, &answer(&reject.envelope, Outcome::Success));
        assert_eq!(done.effect, Effect::Compensated);
    }

    #[test]
    fn stale_duplicate_and_foreign_replies_do_not_move_the_saga() {
        let run = Run::new();
        let started = run.start();
        let authorize = started.command.clone().unwrap().envelope;
        let ok = answer(&authorize, Outcome::Success);
        let moved = run.reply(started.saga, &ok);
        assert_eq!(moved.saga.step, 2);

        // The same reply again (a new message id, as a replier running twice would send).
        let again = answer(&authorize, Outcome::Failure);
        let ignored = run.reply(moved.saga.clone(), &again);
        assert!(
            matches!(&ignored.effect, Effect::Ignored { reason } if reason.contains("outstanding")),
            "{:?}",
            ignored.effect
        );
        assert_eq!(ignored.saga, moved.saga);
        assert!(ignored.command.is_none() && ignored.settled.is_none());

        // A reply to some other command, and one without a causation id.
        let other = run
            .bus
            .command(&AuthorizeCustomer { id: "x".into() }, CREATE);
        let foreign = run.reply(moved.saga.clone(), &answer(&other, Outcome::Success));
        assert!(matches!(foreign.effect, Effect::Ignored { .. }));
        let mut orphan = answer(&other, Outcome::Success);
        orphan.headers.remove(header::CAUSATION_ID);
        let orphaned = run.reply(moved.saga.clone(), &orphan);
        assert!(matches!(orphaned.effect, Effect::Ignored { .. }));
        assert_eq!(orphaned.saga, moved.saga);

        // A finished saga ignores everything.
        let mut run = Run::new();
        let (last, sent) = run.drive(|_| Answer::Succeed);
        let late = answer(sent.last().unwrap(), Outcome::Failure);
        let after = run.reply(last.saga.clone(), &late);
        assert!(matches!(after.effect, Effect::Ignored { .. }));
        assert_eq!(after.saga, last.saga);
    }

    #[test]
    fn a_reply_without_a_readable_outcome_fails_its_step() {
        let run = Run::new();
        let started = run.start();
        let mut reply = answer(&started.command.clone().unwrap().envelope, Outcome::Success);
        reply.headers.remove(header::REPLY_OUTCOME);
        let turned = run.reply(started.saga, &reply);
        assert_eq!(
            turned.command.map(|c| c.envelope.name),
            Some(name::<RejectOrder>())
        );
        assert_eq!(turned.settled.map(|s| s.1), Some(Settlement::Failure));
        let failure = turned.saga.data.failure.as_deref().unwrap();
        assert!(failure.contains(header::REPLY_OUTCOME), "{failure}");
    }

    #[test]
    fn the_list_reply_hook_keeps_the_id_and_refuses_a_success_without_one() {
        let run = Run::new();
        let started = run.start();
        let authorized = run.reply(
            started.saga,
            &answer(&started.command.unwrap().envelope, Outcome::Success),
        );
        let create = authorized.command.clone().unwrap().envelope;
        assert_eq!(create.name, name::<CreateShoppingList>());

        let stored = run.reply(
            authorized.saga.clone(),
            &reply_with(
                &create,
                Outcome::Success,
                &CreatedShoppingList { id: "L9".into() },
            ),
        );
        assert_eq!(stored.saga.data.data.shopping_id, "L9");
        assert_eq!(stored.saga.step, 3);

        for refused in [
            reply_with(&create, Outcome::Success, &CreatedShoppingList::default()),
            reply_with(&create, Outcome::Success, &Empty {}),
        ] {
            let turned = run.reply(authorized.saga.clone(), &refused);
            assert_eq!(
                turned.command.as_ref().map(|c| c.envelope.name.clone()),
                Some(name::<RejectOrder>()),
                "no list to cancel, the order is rejected"
            );
            assert_eq!(turned.settled.map(|s| s.1), Some(Settlement::Failure));
            let failure = turned.saga.data.failure.as_deref().unwrap();
            assert!(failure.contains("names no shopping list"), "{failure}");
        }
    }
}
