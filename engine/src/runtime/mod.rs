//! The instance runtime: two pure functions over a compiled [`Definition`].
//!
//! ```text
//! decide(definition, calendar, state, command, now) -> Result<Vec<Event>, Rejection>
//! evolve(state, &event) -> state            (apply: the same, in place)
//! ```
//!
//! An instance's state is the fold of its events ([`replay`]). The storage layer appends the
//! events `decide` returns in one transaction, with the timers and outbox rows they imply
//! (`TimerArmed`, `TimerCancelled`, `NotificationRequested`), then applies them with `evolve`.
//! Nothing here reads a clock, sleeps, or sends: time is the `now` parameter, timers come back as
//! `TimerFired` commands, messages leave through the outbox.
//!
//! Why this shape:
//! - **Event sourcing** gives the audit history for free (who did what when, which green channel
//!   and why, each 补正, suspension and extension), and makes `replay(events) == state` a
//!   property the tests check.
//! - **Decisions against an unchanged state** (`&InstanceState`) with a small overlay of the
//!   command's own effects ([`decide`]'s `Cx`) instead of a scratch clone keeps a command cheap:
//!   the benchmark runs well over a million decide+evolve per second on one core, and a
//!   working copy would halve that (docs/adr/0004-decide-overlay.md).
//! - **Events carry their computed facts** (a task's clock and assignment, the days a stopped
//!   clock had used), so `evolve` needs neither the definition nor the calendar and can never
//!   disagree with what was decided.
//! - **One function per concept**: [`policy`] is the authorisation policy ([`may_act`] for
//!   tasks, the applicant parties, inbox addressees, who may comment),
//!   [`clock::colour`] the colour rule (and the days-left rule: [`deadline`] reads a bare due
//!   instant through it), `Cx::enter` the only way into a node.
//!
//! The semantics (time model, colours, parallel joins, 驳回 across parallel steps, the 容缺
//! lifecycle, stages and elements) are written up in docs/runtime.md.

pub mod clock;
pub mod command;
pub mod deadline;
mod decide;
pub mod event;
pub mod letter;
pub mod migrate;
pub mod policy;
pub mod rejection;
pub mod state;
pub mod view;

pub use clock::{Clock, Colour, Reading, colour};
pub use command::{Actor, Command, CommandEnvelope};
pub use decide::decide;
pub use event::{ClockRef, Event, MaterialFile, TaskId, TimerId, TimerKind};
pub use policy::may_act;
pub use rejection::{ProjectProblem, Rejection, RejectionKind};
pub use state::{InstanceState, apply};
pub use view::{InstanceView, view};

/// Applies one event to a state, by value (see [`apply`] for the in-place form).
pub fn evolve(mut state: InstanceState, event: &Event) -> InstanceState {
    apply(&mut state, event);
    state
}

/// Rebuilds a state from its history.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> InstanceState {
    let mut s = InstanceState::default();
    for e in events {
        apply(&mut s, e);
    }
    s
}
