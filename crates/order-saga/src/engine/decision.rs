//! The pure decision core: given a saga's state and what just happened (it starts, a reply
//! arrived, its deadline passed), the new state and the command to send, if any. No I/O: the
//! orchestrator loads, calls one of [`start`], [`on_reply`] or [`on_timeout`], and writes the
//! [`Decision`] back in one transaction.
//!
//! The advance algorithm is spec messaging.md §7.3 with the gaps closed: a reply counts only if
//! it answers the outstanding command (its `Causation-Id`), so stale and duplicate replies are
//! ignored (weaknesses C5); a step without a reply by its deadline fails like a failure reply;
//! a failed or timed-out compensation leaves the saga stuck with a reason, never done.

use std::time::Duration;

use messaging::{Bus, Envelope, Outcome, TraceParent, header};
use persistence::Saga;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::definition::{Action, Mode, SagaDefinition};

/// What the engine stores in the saga row's `data` column: the definition's own data plus the
/// engine's bookkeeping, so one versioned row holds the whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<D> {
    /// The saga's own data (ids, items, what replies taught it).
    pub data: D,
    /// The command whose reply the saga waits for; `None` when done or stuck after a failure.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// The conversation the trigger belonged to, carried by every command (also those the
    /// deadline sweeper sends, which have no message to inherit it from).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The trigger's trace, continued by commands the sweeper sends.
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// Why the saga turned back (which step failed or timed out), once it did.
    #[serde(default)]
    pub failure: Option<String>,
}

/// The outstanding command: only a reply caused by this id moves the saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The command's envelope id (the reply's `Causation-Id`).
    pub command_id: Uuid,
    /// The command's message name, for humans.
    pub command: String,
}

/// What the decision needs besides the state: a bus to address commands (no I/O: it only
/// builds envelopes), the time, and how long a step may wait for its reply.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Builds command envelopes under the deployment prefix.
    pub bus: &'a Bus,
    /// Now, for deadlines.
    pub now: OffsetDateTime,
    /// A step's time to answer.
    pub step_timeout: Duration,
}

/// What a command was answered with, for the command log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// A success reply (its hooks accepted it).
    Success,
    /// A failure reply, or a success a hook refused.
    Failure,
    /// No reply before the deadline.
    TimedOut,
}

impl Settlement {
    /// Stored in the command log: `success`, `failure`, `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Success => "success",
            Settlement::Failure => "failure",
            Settlement::TimedOut => "timed_out",
        }
    }
}

/// A command the decision sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// Ready to enqueue; its id becomes the saga's pending command id.
    pub envelope: Envelope,
    /// The step it belongs to.
    pub step: i32,
    /// Action or compensation.
    pub mode: Mode,
}

/// What the decision did, for the caller's write, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changes (a stale or duplicate reply, a deadline already moved): write nothing.
    Ignored {
        /// Why, for the log.
        reason: String,
    },
    /// The saga moved to a step and sent its command (forwards or compensating).
    Issued,
    /// Every action succeeded.
    Completed,
    /// A step failed and every compensation succeeded.
    Compensated,
    /// The saga cannot go on by itself: a compensation failed, timed out or could not be built.
    Stuck {
        /// Stored as the saga's `stuck_reason`.
        reason: String,
    },
}

impl Effect {
    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Effect::Ignored { .. } => "ignored",
            Effect::Issued => "issued",
            Effect::Completed => "completed",
            Effect::Compensated => "compensated",
            Effect::Stuck { .. } => "stuck",
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<D> {
    /// The new state (unchanged when ignored).
    pub saga: Saga<Record<D>>,
    /// The command to send in the same transaction, if any.
    pub command: Option<Issued>,
    /// The command this input answered (for the command log), if any.
    pub settled: Option<(Uuid, Settlement)>,
    /// What happened.
    pub effect: Effect,
}

/// Where a saga stands, derived from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Going forwards, a command outstanding.
    Running,
    /// Going backwards, a compensation outstanding.
    Compensating,
    /// Finished forwards.
    Completed,
    /// Finished after compensating every completed step.
    Compensated,
    /// Waiting for a human (`stuck_reason` says why).
    Stuck,
}

impl Status {
    /// The status of `saga`.
    pub fn of<D>(saga: &Saga<D>) -> Self {
        match (saga.stuck_reason.is_some(), saga.done, saga.compensating) {
            (true, _, _) => Status::Stuck,
            (false, true, false) => Status::Completed,
            (false, true, true) => Status::Compensated,
            (false, false, false) => Status::Running,
            (false, false, true) => Status::Compensating,
        }
    }
}

/// What caused the commands a decision sends: they carry its correlation, causation and trace.
enum Cause<'a> {
    /// A message (the trigger or a reply).
    Message(&'a Envelope),
    /// The deadline of this command passed.
    Timeout(Uuid),
}

/// A new saga `id` for `data`, started by `trigger`: its first action is chosen and built.
pub fn start<D>(
    definition: &SagaDefinition<D>,
    id: &str,
    data: D,
    trigger: &Envelope,
    ctx: &Context<'_>,
) -> Decision<D> {
    let record = Record {
        data,
        pending: None,
        correlation_id: Some(trigger.correlation_id()),
        trace_parent: trigger.header(header::TRACEPARENT).map(str::to_owned),
        failure: None,
    };
    let saga = Saga::new(definition.name(), id, record);
    advance(definition, saga, -1, &Cause::Message(trigger), ctx)
}

/// A reply arrived. Only the reply to the outstanding command counts (its `Causation-Id`);
/// its outcome is its `Reply-Outcome` header, and a reply without a readable one fails the
/// step (better undone than approved on an answer nobody can read). Hooks of the current step
/// may update the data, or refuse the reply, before the outcome is acted on.
pub fn on_reply<D>(
    definition: &SagaDefinition<D>,
    mut saga: Saga<Record<D>>,
    reply: &Envelope,
    ctx: &Context<'_>,
) -> Decision<D> {
    let Some(pending) = saga.data.pending.clone() else {
        let reason = format!("no command is outstanding (status {:?})", Status::of(&saga));
        return ignore(saga, reason);
    };
    let answers = reply.causation_id().and_then(|id| Uuid::parse_str(id).ok());
    if answers != Some(pending.command_id) {
        let reason = format!(
            "it answers {}, the outstanding command is {} ({})",
            reply.causation_id().unwrap_or("no command"),
            pending.command_id,
            pending.command
        );
        return ignore(saga, reason);
    }

    let mode = Mode::of(saga.compensating);
    let (mut outcome, mut refusal) =
        match reply.header(header::REPLY_OUTCOME).and_then(Outcome::parse) {
            Some(outcome) => (outcome, None),
            None => (
                Outcome::Failure,
                Some(format!(
                    "the reply has no valid {} header",
                    header::REPLY_OUTCOME
                )),
            ),
        };
    if refusal.is_none()
        && let Some(step) = definition.step_at(saga.step)
    {
        let hooks = step
            .hooks
            .iter()
            .filter(|h| h.mode == mode && h.reply == reply.name);
        for hook in hooks {
            if let Err(reason) = (hook.run)(&mut saga.data.data, reply, outcome) {
                outcome = Outcome::Failure;
                refusal = Some(reason);
                break;
            }
        }
    }

    saga.data.pending = None;
    // A saga stuck because a compensation timed out still waits for that command: its late
    // answer decides again (a success lets the compensation finish after all).
    saga.stuck_reason = None;
    let step = saga.step;
    let cause = Cause::Message(reply);
    let settled = Some((
        pending.command_id,
        match outcome {
            Outcome::Success => Settlement::Success,
            Outcome::Failure => Settlement::Failure,
        },
    ));
    let because = refusal.map(|r| format!(": {r}")).unwrap_or_default();
    let mut decision = match (outcome, mode) {
        (Outcome::Success, _) => advance(definition, saga, step, &cause, ctx),
        (Outcome::Failure, Mode::Action) => {
            let failure = format!(
                "{}: {} failed{because}",
                definition.describe(step),
                pending.command
            );
            turn_back(definition, saga, step, failure, &cause, ctx)
        }
        (Outcome::Failure, Mode::Compensation) => {
            let reason = format!(
                "{}: compensation {} failed{because}",
                definition.describe(step),
                pending.command
            );
            stuck(saga, reason)
        }
    };
    decision.settled = settled;
    decision
}

/// The saga's deadline may have passed (the sweeper found it overdue): a forward step without
/// its reply fails and the saga compensates; a compensation without its reply makes it stuck.
pub fn on_timeout<D>(
    definition: &SagaDefinition<D>,
    mut saga: Saga<Record<D>>,
    ctx: &Context<'_>,
) -> Decision<D> {
    if saga.done || saga.stuck_reason.is_some() {
        let reason = format!("the saga is {:?}", Status::of(&saga));
        return ignore(saga, reason);
    }
    match saga.deadline {
        Some(deadline) if deadline <= ctx.now => {}
        _ => return ignore(saga, "its deadline has not passed".to_owned()),
    }
    let step = saga.step;
    let Some(pending) = saga.data.pending.clone() else {
        // Cannot happen through this core (a deadline is set only with a command); a row
        // edited by hand must still not spin in the sweeper forever.
        let reason = format!(
            "{}: deadline passed with no command outstanding",
            definition.describe(step)
        );
        return stuck(saga, reason);
    };
    let settled = Some((pending.command_id, Settlement::TimedOut));
    let mut decision = if saga.compensating {
        // The command stays pending: a late success still lets the compensation finish.
        let reason = format!(
            "{}: no reply to compensation {} before its deadline",
            definition.describe(step),
            pending.command
        );
        stuck(saga, reason)
    } else {
        saga.data.pending = None;
        let failure = format!(
            "{}: no reply to {} before its deadline",
            definition.describe(step),
            pending.command
        );
        let cause = Cause::Timeout(pending.command_id);
        turn_back(definition, saga, step, failure, &cause, ctx)
    };
    decision.settled = settled;
    decision
}

/// Step `failed` failed going forwards: record why and compensate the steps before it (the
/// failed step itself did nothing to undo).
fn turn_back<D>(
    definition: &SagaDefinition<D>,
    mut saga: Saga<Record<D>>,
    failed: i32,
    failure: String,
    cause: &Cause<'_>,
    ctx: &Context<'_>,
) -> Decision<D> {
    saga.data.failure = Some(failure);
    saga.compensating = true;
    advance(definition, saga, failed, cause, ctx)
}

/// §7.3 advance: from step `from`, the next step in the current direction that has a command
/// for the current mode gets its command built and becomes the outstanding step; none left
/// means done. A forward command that cannot be built fails its step; a compensation that
/// cannot be built makes the saga stuck.
fn advance<D>(
    definition: &SagaDefinition<D>,
    mut saga: Saga<Record<D>>,
    from: i32,
    cause: &Cause<'_>,
    ctx: &Context<'_>,
) -> Decision<D> {
    let mut from = from;
    loop {
        let mode = Mode::of(saga.compensating);
        let Some((index, action)) = next_step(definition, from, mode) else {
            saga.done = true;
            saga.deadline = None;
            saga.data.pending = None;
            let effect = if saga.compensating {
                Effect::Compensated
            } else {
                Effect::Completed
            };
            return decided(saga, None, effect);
        };
        saga.step = index;
        match (action.build)(&saga.data.data, ctx.bus, definition.reply_channel()) {
            Ok(envelope) => {
                let envelope = stamp(envelope, &saga.data, cause);
                saga.data.pending = Some(Pending {
                    command_id: envelope.id,
                    command: envelope.name.clone(),
                });
                saga.deadline = deadline(ctx);
                let issued = Issued {
                    envelope,
                    step: index,
                    mode,
                };
                return decided(saga, Some(issued), Effect::Issued);
            }
            Err(reason) if mode == Mode::Action => {
                saga.data.failure = Some(format!(
                    "{}: {} could not be built: {reason}",
                    definition.describe(index),
                    action.command
                ));
                saga.compensating = true;
                from = index;
            }
            Err(reason) => {
                let reason = format!(
                    "{}: compensation {} could not be built: {reason}",
                    definition.describe(index),
                    action.command
                );
                return stuck(saga, reason);
            }
        }
    }
}

/// The first step after `from` in `mode`'s direction that has a command for `mode`.
fn next_step<D>(
    definition: &SagaDefinition<D>,
    from: i32,
    mode: Mode,
) -> Option<(i32, &Action<D>)> {
    let direction = match mode {
        Mode::Action => 1,
        Mode::Compensation => -1,
    };
    let mut index = from + direction;
    while let Some(step) = definition.step_at(index) {
        if let Some(action) = step.command_for(mode) {
            return Some((index, action));
        }
        index += direction;
    }
    None
}

/// Correlation, causation and trace of a command from what caused it. A timeout has no message
/// to inherit from: the saga's stored conversation and trace stand in, and the timed-out
/// command is the cause.
fn stamp<D>(envelope: Envelope, record: &Record<D>, cause: &Cause<'_>) -> Envelope {
    match cause {
        Cause::Message(message) => envelope.caused_by(message),
        Cause::Timeout(command_id) => {
            let mut envelope = envelope;
            if let Some(correlation) = &record.correlation_id {
                envelope.set_header(header::CORRELATION_ID, correlation.clone());
            }
            envelope.set_header(header::CAUSATION_ID, command_id.to_string());
            if let Some(trace) = record.trace_parent.as_deref().and_then(TraceParent::parse) {
                envelope.set_header(header::TRACEPARENT, trace.child().to_string());
            }
            envelope
        }
    }
}

/// Now plus the step timeout; no deadline if that does not fit a date (an absurd timeout).
fn deadline(ctx: &Context<'_>) -> Option<OffsetDateTime> {
    time::Duration::try_from(ctx.step_timeout)
        .ok()
        .and_then(|timeout| ctx.now.checked_add(timeout))
}

fn stuck<D>(mut saga: Saga<Record<D>>, reason: String) -> Decision<D> {
    saga.stuck_reason = Some(reason.clone());
    saga.deadline = None;
    decided(saga, None, Effect::Stuck { reason })
}

fn ignore<D>(saga: Saga<Record<D>>, reason: String) -> Decision<D> {
    decided(saga, None, Effect::Ignored { reason })
}

fn decided<D>(saga: Saga<Record<D>>, command: Option<Issued>, effect: Effect) -> Decision<D> {
    Decision {
        saga,
        command,
        settled: None,
        effect,
    }
}

#[cfg(test)]
mod tests {
    //! The engine's own rules on small made-up sagas (the create-order paths are tested with
    //! its definition in `create_order`).

    use std::sync::Arc;

    use contracts::customers::v1::AuthorizeCustomer;
    use contracts::depot::v1::{CancelShoppingList, CreatedShoppingList};
    use messaging::memory::Memory;
    use messaging::{Empty, Message, MessageContext, Reply};

    use super::*;
    use crate::engine::definition::Step;

    /// The data: a word the builders copy into commands; an empty word cannot be sent.
    type Word = String;

    fn say(word: &Word) -> Result<AuthorizeCustomer, String> {
        if word.is_empty() {
            Err("nothing to say".to_owned())
        } else {
            Ok(AuthorizeCustomer { id: word.clone() })
        }
    }

    fn unsay(word: &Word) -> Result<CancelShoppingList, String> {
        if word.is_empty() {
            Err("nothing to take back".to_owned())
        } else {
            Ok(CancelShoppingList { id: word.clone() })
        }
    }

    fn bus() -> Bus {
        Bus::new(Arc::new(Memory::new("unit")))
    }

    fn ctx(bus: &Bus) -> Context<'_> {
        Context {
            bus,
            now: OffsetDateTime::now_utc(),
            step_timeout: Duration::from_secs(5),
        }
    }

    fn trigger(bus: &Bus) -> Envelope {
        bus.event(&contracts::ordering::v1::OrderCreated::default())
    }

    fn reply<R: Reply>(command: &Envelope, outcome: Outcome, payload: &R) -> Envelope {
        MessageContext {
            envelope: Arc::new(command.clone()),
            attempt: 1,
            consumer: Arc::from("test"),
        }
        .reply(outcome, payload)
        .unwrap()
    }

    fn command(decision: &Decision<Word>) -> &Envelope {
        &decision.command.as_ref().expect("a command").envelope
    }

    #[test]
    fn a_saga_without_actions_is_done_at_once() {
        let bus = bus();
        let definition = SagaDefinition::<Word>::new("test.Empty", "test.replies")
            .step(Step::new("only undo").compensation(unsay));
        let started = start(&definition, "s", "w".into(), &trigger(&bus), &ctx(&bus));
        assert_eq!(started.effect, Effect::Completed);
        assert!(started.command.is_none());
        assert_eq!((started.saga.step, started.saga.done), (-1, true));
    }

    #[test]
    fn steps_without_a_command_for_the_mode_are_skipped_both_ways() {
        let bus = bus();
        let ctx = ctx(&bus);
        let definition = SagaDefinition::<Word>::new("test.Skip", "test.replies")
            .step(Step::new("undo only").compensation(unsay))
            .step(Step::new("nothing"))
            .step(Step::new("say").action(say))
            .step(Step::new("nothing either"))
            .step(Step::new("say again").action(say));
        let started = start(&definition, "s", "w".into(), &trigger(&bus), &ctx);
        assert_eq!(started.saga.step, 2);
        let first = command(&started).clone();
        let second = on_reply(
            &definition,
            started.saga,
            &reply(&first, Outcome::Success, &Empty {}),
            &ctx,
        );
        assert_eq!(second.saga.step, 4);
        let last = command(&second).clone();
        let back = on_reply(
            &definition,
            second.saga,
            &reply(&last, Outcome::Failure, &Empty {}),
            &ctx,
        );
        assert_eq!(back.saga.step, 0, "steps 3..1 have nothing to undo");
        assert_eq!(command(&back).name, CancelShoppingList::message_name());
        assert_eq!(back.command.as_ref().unwrap().mode, Mode::Compensation);
    }

    #[test]
    fn a_forward_command_that_cannot_be_built_fails_its_step() {
        let bus = bus();
        let definition = SagaDefinition::<Word>::new("test.Build", "test.replies")
            .step(
                Step::new("undo")
                    .compensation(|_: &Word| Ok(CancelShoppingList { id: "x".into() })),
            )
            .step(Step::new("say").action(say));
        let started = start(&definition, "s", Word::new(), &trigger(&bus), &ctx(&bus));
        assert_eq!(started.effect, Effect::Issued);
        assert_eq!((started.saga.step, started.saga.compensating), (0, true));
        let failure = started.saga.data.failure.as_deref().unwrap();
        assert!(
            failure.contains("step 1 (say)") && failure.contains("nothing to say"),
            "{failure}"
        );
    }

    #[test]
    fn a_compensation_that_cannot_be_built_is_stuck() {
        let bus = bus();
        let definition = SagaDefinition::<Word>::new("test.Stuck", "test.replies")
            .step(Step::new("undo").compensation(unsay))
            .step(Step::new("say").action(|_: &Word| Err::<AuthorizeCustomer, _>("no".into())));
        let started = start(&definition, "s", Word::new(), &trigger(&bus), &ctx(&bus));
        let Effect::Stuck { reason } = &started.effect else {
            panic!("{:?}", started.effect);
        };
        assert!(reason.contains("nothing to take back"), "{reason}");
        assert_eq!(Status::of(&started.saga), Status::Stuck);
        assert!(!started.saga.done);
    }

    #[test]
    fn hooks_run_only_for_their_mode_and_reply_type() {
        let bus = bus();
        let ctx = ctx(&bus);
        let definition = SagaDefinition::<Word>::new("test.Hooks", "test.replies")
            .step(Step::new("undo").compensation(unsay))
            .step(
                Step::new("say")
                    .action(say)
                    .compensation(unsay)
                    .on_reply(Mode::Action, |w: &mut Word, r: CreatedShoppingList, _| {
                        w.push_str(&format!("+action:{}", r.id));
                        Ok(())
                    })
                    .on_reply(Mode::Compensation, |w: &mut Word, _: Empty, _| {
                        w.push_str("+compensation");
                        Ok(())
                    }),
            )
            .step(Step::new("say more").action(say));
        let started = start(&definition, "s", "w".into(), &trigger(&bus), &ctx);
        let first = command(&started).clone();
        // An `Empty` answer to the action runs no hook (the compensation hook is not for it).
        let plain = on_reply(
            &definition,
            started.saga.clone(),
            &reply(&first, Outcome::Success, &Empty {}),
            &ctx,
        );
        assert_eq!(plain.saga.data.data, "w");
        let hooked = on_reply(
            &definition,
            started.saga,
            &reply(
                &first,
                Outcome::Success,
                &CreatedShoppingList { id: "7".into() },
            ),
            &ctx,
        );
        assert_eq!(hooked.saga.data.data, "w+action:7");
        let second = command(&hooked).clone();
        let back = on_reply(
            &definition,
            hooked.saga,
            &reply(&second, Outcome::Failure, &Empty {}),
            &ctx,
        );
        let undo = command(&back).clone();
        assert_eq!(back.saga.step, 1);
        let undone = on_reply(
            &definition,
            back.saga,
            &reply(&undo, Outcome::Success, &Empty {}),
            &ctx,
        );
        assert_eq!(undone.saga.data.data, "w+action:7+compensation");
        assert_eq!(undone.saga.step, 0);
    }

    #[test]
    fn the_record_round_trips_as_json() {
        let record = Record {
            data: "w".to_owned(),
            pending: Some(Pending {
                command_id: Uuid::now_v7(),
                command: "x.v1.Y".into(),
            }),
            correlation_id: Some("c".into()),
            trace_parent: None,
            failure: Some("step 1 failed".into()),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert!(json["pending"]["commandId"].is_string());
        let back: Record<String> = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        // Rows written before a field existed still load.
        let minimal: Record<String> = serde_json::from_str(r#"{"data":"w"}"#).unwrap();
        assert_eq!(minimal.pending, None);
    }
}
