//! How a saga is described: its name, its reply channel and its ordered steps. Each step may
//! have a forward action and a compensation (each builds one command from the saga's data) and
//! reply hooks that fold a reply's payload into the data. Definitions are plain values built
//! once at start-up; the engine never needs to know which saga it runs.

use std::fmt;
use std::sync::Arc;

use messaging::{Bus, Command, Envelope, Outcome, Reply};

/// Which way the saga is moving when a command is outstanding: forwards through the actions,
/// or backwards through the compensations after a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Running the steps' actions, first to last.
    Action,
    /// Undoing the completed steps, last to first.
    Compensation,
}

impl Mode {
    /// The mode of a saga with this `compensating` flag.
    pub fn of(compensating: bool) -> Self {
        if compensating {
            Mode::Compensation
        } else {
            Mode::Action
        }
    }

    /// For logs and the command log: `action` or `compensation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Action => "action",
            Mode::Compensation => "compensation",
        }
    }
}

/// Builds a step's command envelope from the data. The `Err` text says why the data cannot
/// make the command (an id the saga never learned...): the engine treats that like a failed
/// step, so a saga cannot stall on a command it is unable to send.
type BuildFn<D> = Arc<dyn Fn(&D, &Bus, &str) -> Result<Envelope, String> + Send + Sync>;

/// Updates the data from a reply. An `Err` turns the reply into a failure of the step.
type HookFn<D> = Arc<dyn Fn(&mut D, &Envelope, Outcome) -> Result<(), String> + Send + Sync>;

/// A forward action or a compensation: the command's name (for humans) and its builder.
pub(crate) struct Action<D> {
    pub(crate) command: String,
    pub(crate) build: BuildFn<D>,
}

/// A reply hook: runs when the reply named `reply` answers this step's command in `mode`.
pub(crate) struct Hook<D> {
    pub(crate) mode: Mode,
    pub(crate) reply: String,
    pub(crate) run: HookFn<D>,
}

/// One step of a saga.
pub struct Step<D> {
    name: &'static str,
    pub(crate) action: Option<Action<D>>,
    pub(crate) compensation: Option<Action<D>>,
    pub(crate) hooks: Vec<Hook<D>>,
}

impl<D> fmt::Debug for Step<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("action", &self.action.as_ref().map(|a| &a.command))
            .field(
                "compensation",
                &self.compensation.as_ref().map(|a| &a.command),
            )
            .field(
                "hooks",
                &self
                    .hooks
                    .iter()
                    .map(|h| (h.mode, &h.reply))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<D> Step<D> {
    /// The step's name, for logs and the read endpoint.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The action (`Mode::Action`) or compensation of this step, if it has one.
    pub(crate) fn command_for(&self, mode: Mode) -> Option<&Action<D>> {
        match mode {
            Mode::Action => self.action.as_ref(),
            Mode::Compensation => self.compensation.as_ref(),
        }
    }
}

impl<D: 'static> Step<D> {
    /// A step that does nothing yet; add an action, a compensation and hooks.
    pub fn new(name: &'static str) -> Self {
        Step {
            name,
            action: None,
            compensation: None,
            hooks: Vec::new(),
        }
    }

    /// The command sent when the saga reaches this step going forwards.
    pub fn action<C, F>(mut self, build: F) -> Self
    where
        C: Command,
        F: Fn(&D) -> Result<C, String> + Send + Sync + 'static,
    {
        self.action = Some(erase(build));
        self
    }

    /// The command that undoes this step, sent when a later step failed.
    pub fn compensation<C, F>(mut self, build: F) -> Self
    where
        C: Command,
        F: Fn(&D) -> Result<C, String> + Send + Sync + 'static,
    {
        self.compensation = Some(erase(build));
        self
    }

    /// Runs `hook` when a reply of type `R` answers this step's command in `mode`, whatever
    /// its outcome (the hook sees it), before the engine acts on the outcome. A hook that
    /// returns `Err` fails the step, e.g. a success reply that lacks the id later steps need.
    pub fn on_reply<R, F>(mut self, mode: Mode, hook: F) -> Self
    where
        R: Reply,
        F: Fn(&mut D, R, Outcome) -> Result<(), String> + Send + Sync + 'static,
    {
        let run: HookFn<D> = Arc::new(move |data, envelope, outcome| {
            let reply = envelope
                .decode::<R>()
                .map_err(|e| format!("unreadable reply: {e}"))?;
            hook(data, reply, outcome)
        });
        self.hooks.push(Hook {
            mode,
            reply: R::message_name(),
            run,
        });
        self
    }
}

fn erase<D, C, F>(build: F) -> Action<D>
where
    C: Command,
    F: Fn(&D) -> Result<C, String> + Send + Sync + 'static,
{
    Action {
        command: C::message_name(),
        build: Arc::new(move |data, bus, reply_to| {
            build(data).map(|command| bus.command(&command, reply_to))
        }),
    }
}

/// A saga: a stable name (the `saga_type` of its rows, e.g. `cosec.CreateOrder`), the relative
/// subject its commands name as their reply channel, and its steps in forward order.
pub struct SagaDefinition<D> {
    name: &'static str,
    reply_channel: &'static str,
    steps: Vec<Step<D>>,
}

impl<D> fmt::Debug for SagaDefinition<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaDefinition")
            .field("name", &self.name)
            .field("reply_channel", &self.reply_channel)
            .field("steps", &self.steps)
            .finish()
    }
}

impl<D> SagaDefinition<D> {
    /// A saga without steps yet.
    pub fn new(name: &'static str, reply_channel: &'static str) -> Self {
        SagaDefinition {
            name,
            reply_channel,
            steps: Vec::new(),
        }
    }

    /// Appends the next step (its index is the number of steps before it).
    pub fn step(mut self, step: Step<D>) -> Self {
        self.steps.push(step);
        self
    }

    /// The saga's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The relative subject replies come back on.
    pub fn reply_channel(&self) -> &'static str {
        self.reply_channel
    }

    /// The steps, in forward order.
    pub fn steps(&self) -> &[Step<D>] {
        &self.steps
    }

    /// The step at `index` (a saga's `step` column), if there is one.
    pub fn step_at(&self, index: i32) -> Option<&Step<D>> {
        usize::try_from(index).ok().and_then(|i| self.steps.get(i))
    }

    /// `<index> (<name>)`, how logs and reasons name a step.
    pub(crate) fn describe(&self, index: i32) -> String {
        match self.step_at(index) {
            Some(step) => format!("step {index} ({})", step.name),
            None => format!("step {index}"),
        }
    }
}
