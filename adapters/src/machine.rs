//! The seam between the durable layer and the pure engine.
//!
//! The command path ([`crate::bus`]) is written against this trait rather than against the
//! engine's types, for two reasons: the durable guarantees (once-only events, timers and
//! messages) can be tested with a tiny machine whose behaviour is obvious ([`crate::testkit`]),
//! and the engine's event and command types can change without touching the storage code.
//! [`crate::engine_machine`] is the implementation for the real engine.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{DefinitionRow, InstanceMeta, Millis, Projection, TimerRow};

/// Why a command was refused; nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// A stable code (`not_assigned`, `action_not_allowed`, ...).
    pub code: String,
    pub message: String,
    /// The machine's own typed refusal as JSON (for the engine: its `Rejection`), opaque to the
    /// durable layer and kept with a stored refusal, so the edge that words refusals for people
    /// reads the same fields on a replay. `null` when the machine gives none.
    #[serde(default)]
    pub detail: serde_json::Value,
    /// The machine's own fault, not the command's (an engine invariant broken, a version not
    /// registered): answered as a server error and never kept under an idempotency key, so the
    /// same key may be tried again once it is mended.
    #[serde(default)]
    pub internal: bool,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A notification an event asks for; becomes an outbox row in the same transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `log`, `webhook`, `dingtalk`, `wecom`, `email`.
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub payload: serde_json::Value,
}

/// What an event implies outside the event log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// (timer id, due, kind as JSON text)
    pub timers_armed: Vec<(String, Millis, String)>,
    pub timers_cancelled: Vec<String>,
    pub notifications: Vec<Notification>,
}

/// A deterministic state machine over events: the engine, seen from the durable layer.
pub trait Machine: Send + Sync + 'static {
    /// The compiled definition an instance runs on (shared by all instances of a version).
    type Context: Send + Sync + 'static;
    type State: Send + Sync + 'static;
    /// Serialisable so that an idempotency key can be bound to the request it was first used
    /// with (the bus keeps a digest of it beside the key).
    type Command: Serialize + Send + Sync + 'static;
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The context of an instance's definition version, if registered.
    fn context(&self, meta: &InstanceMeta) -> Option<Arc<Self::Context>>;
    /// Compiles and registers a stored definition version (called on a context miss).
    fn register(&self, def: &DefinitionRow) -> Result<(), String>;
    /// The state before the first event.
    fn initial(&self, ctx: &Self::Context, meta: &InstanceMeta) -> Self::State;
    fn decide(
        &self,
        ctx: &Self::Context,
        meta: &InstanceMeta,
        state: &Self::State,
        cmd: &Self::Command,
        now: Millis,
    ) -> Result<Vec<Self::Event>, Rejection>;
    fn evolve(&self, ctx: &Self::Context, state: &mut Self::State, event: &Self::Event);
    /// The definition version an event moves the instance to (a migration), if it does: the
    /// bus then decides and projects what follows on that version's context, and writes the
    /// version on the instance row in the same transaction.
    fn moved_to(&self, _event: &Self::Event) -> Option<i64> {
        None
    }
    /// The event's type name, stored beside its JSON body.
    fn event_kind(&self, event: &Self::Event) -> String;
    /// The format events are written in, stored with each one ([`EventRow::format`]).
    fn event_format(&self) -> u32 {
        1
    }
    /// Reads back an event stored in `format`: a machine whose events changed shape reads the
    /// older formats here (the engine's does, through `engine::runtime::decode_event`).
    fn decode_event(&self, format: u32, body: &str) -> Result<Self::Event, String> {
        if format != self.event_format() {
            return Err(format!("unknown event format {format}"));
        }
        serde_json::from_str(body).map_err(|e| e.to_string())
    }
    /// Timers and notifications an event implies; `state` is the state before the event.
    fn effects(
        &self,
        ctx: &Self::Context,
        meta: &InstanceMeta,
        state: &Self::State,
        event: &Self::Event,
        now: Millis,
        out: &mut Effects,
    );
    /// The read models of an instance in a state.
    fn project(
        &self,
        ctx: &Self::Context,
        meta: &InstanceMeta,
        state: &Self::State,
        now: Millis,
    ) -> Projection;
    /// The command a due timer turns into; `None` when it needs no command (it is marked fired).
    fn timer_command(&self, timer: &TimerRow) -> Option<Self::Command>;
    /// When `state` says `timer` is due, if it keeps it (`None`: it does not, or the machine
    /// does not say). Read only after `decide` refused the timer's firing: a due still ahead of
    /// the clock means the firing came early (the clock moved back, or the row is behind the
    /// state), so the timer is moved to that due instead of being recorded as refused.
    fn timer_due(
        &self,
        _ctx: &Self::Context,
        _state: &Self::State,
        _timer: &TimerRow,
    ) -> Option<Millis> {
        None
    }
}

/// Reads time; the one place the durable layer asks for it, so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
    /// Moves the clock forward by `by` ms and answers the new time, if this clock may be moved
    /// (a demo's or a test's); the wall clock answers `None` and stays where it is. A clock
    /// never moves back: a negative `by` is refused the same way.
    fn advance(&self, by: Millis) -> Option<Millis> {
        let _ = by;
        None
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        now_millis()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
