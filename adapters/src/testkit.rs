//! A small, obvious [`Machine`] for testing the durable layer on its own: a counter per instance
//! that can arm and cancel timers and ask for notifications. The guarantees under test (each
//! acknowledged command recorded once, each timer fired once, no message lost) do not depend on
//! what the machine means, so a machine whose correct history is easy to state makes the tests
//! and the crash checks exact. The real engine is wired in [`crate::engine_machine`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::machine::{Effects, Machine, Notification, Rejection};
use crate::store::{DefinitionRow, InboxRow, InstanceMeta, Millis, Projection, TimerRow};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CounterCommand {
    Start,
    Add {
        n: i64,
    },
    ArmTimer {
        id: String,
        due: Millis,
    },
    CancelTimer {
        id: String,
    },
    Notify {
        channel: String,
        recipient: String,
    },
    /// Always refused.
    Refuse,
    /// Refused as the machine's own fault (an internal error).
    Fail,
    /// Panics in `decide`: a bug in the machine, which must cost only this command.
    Panic,
    TimerFired {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CounterEvent {
    Started,
    Added {
        n: i64,
    },
    TimerArmed {
        id: String,
        due: Millis,
    },
    TimerCancelled {
        id: String,
    },
    TimerFired {
        id: String,
    },
    NotificationRequested {
        channel: String,
        recipient: String,
        n: i64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub started: bool,
    pub total: i64,
    pub fired: Vec<String>,
    pub notes: i64,
}

/// The counter machine.
#[derive(Debug, Default)]
pub struct Counter;

impl Machine for Counter {
    type Context = ();
    type State = CounterState;
    type Command = CounterCommand;
    type Event = CounterEvent;

    fn context(&self, _meta: &InstanceMeta) -> Option<Arc<()>> {
        Some(Arc::new(()))
    }

    fn register(&self, _def: &DefinitionRow) -> Result<(), String> {
        Ok(())
    }

    fn initial(&self, _ctx: &(), _meta: &InstanceMeta) -> CounterState {
        CounterState::default()
    }

    fn decide(
        &self,
        _ctx: &(),
        _meta: &InstanceMeta,
        state: &CounterState,
        cmd: &CounterCommand,
        _now: Millis,
    ) -> Result<Vec<CounterEvent>, Rejection> {
        let refuse = |code: &str| {
            Err(Rejection {
                code: code.into(),
                message: format!("{code} ({cmd:?})"),
                detail: serde_json::Value::Null,
                internal: false,
            })
        };
        match cmd {
            CounterCommand::Start if state.started => refuse("already_started"),
            CounterCommand::Start => Ok(vec![CounterEvent::Started]),
            _ if !state.started => refuse("not_started"),
            CounterCommand::Add { n } => Ok(vec![CounterEvent::Added { n: *n }]),
            CounterCommand::ArmTimer { id, due } => Ok(vec![CounterEvent::TimerArmed {
                id: id.clone(),
                due: *due,
            }]),
            CounterCommand::CancelTimer { id } => {
                Ok(vec![CounterEvent::TimerCancelled { id: id.clone() }])
            }
            CounterCommand::Notify { channel, recipient } => {
                Ok(vec![CounterEvent::NotificationRequested {
                    channel: channel.clone(),
                    recipient: recipient.clone(),
                    n: state.notes + 1,
                }])
            }
            CounterCommand::Refuse => refuse("refused"),
            CounterCommand::Fail => Err(Rejection {
                code: "internal".into(),
                message: "the counter broke".into(),
                detail: serde_json::Value::Null,
                internal: true,
            }),
            CounterCommand::Panic => panic!("the counter machine panicked on purpose"),
            CounterCommand::TimerFired { id } => {
                Ok(vec![CounterEvent::TimerFired { id: id.clone() }])
            }
        }
    }

    fn evolve(&self, _ctx: &(), state: &mut CounterState, event: &CounterEvent) {
        match event {
            CounterEvent::Started => state.started = true,
            CounterEvent::Added { n } => state.total += n,
            CounterEvent::TimerFired { id } => state.fired.push(id.clone()),
            CounterEvent::NotificationRequested { .. } => state.notes += 1,
            CounterEvent::TimerArmed { .. } | CounterEvent::TimerCancelled { .. } => {}
        }
    }

    fn event_kind(&self, event: &CounterEvent) -> String {
        match event {
            CounterEvent::Started => "started",
            CounterEvent::Added { .. } => "added",
            CounterEvent::TimerArmed { .. } => "timer_armed",
            CounterEvent::TimerCancelled { .. } => "timer_cancelled",
            CounterEvent::TimerFired { .. } => "timer_fired",
            CounterEvent::NotificationRequested { .. } => "notification_requested",
        }
        .to_string()
    }

    fn effects(
        &self,
        _ctx: &(),
        meta: &InstanceMeta,
        _state: &CounterState,
        event: &CounterEvent,
        _now: Millis,
        out: &mut Effects,
    ) {
        match event {
            CounterEvent::TimerArmed { id, due } => {
                out.timers_armed
                    .push((id.clone(), *due, r#"{"kind":"test"}"#.to_string()))
            }
            CounterEvent::TimerCancelled { id } => out.timers_cancelled.push(id.clone()),
            CounterEvent::NotificationRequested {
                channel,
                recipient,
                n,
            } => out.notifications.push(Notification {
                channel: channel.clone(),
                recipient: recipient.clone(),
                template: "test".into(),
                payload: serde_json::json!({"instance": meta.id, "n": n}),
            }),
            _ => {}
        }
    }

    fn project(
        &self,
        _ctx: &(),
        meta: &InstanceMeta,
        state: &CounterState,
        now: Millis,
    ) -> Projection {
        let colour = match state.total {
            t if t >= 100 => "red",
            t if t >= 50 => "yellow",
            _ => "green",
        };
        let assignee = meta
            .project
            .get("assignee")
            .and_then(|v| v.as_str())
            .map(|a| format!("user:{a}"));
        Projection {
            status: if state.started { "running" } else { "new" }.into(),
            stage: Some("counting".into()),
            channel: None,
            tasks: vec![InboxRow {
                instance: meta.id.clone(),
                task_id: "count".into(),
                workflow_id: meta.workflow_id.clone(),
                node: "count".into(),
                stage: Some("counting".into()),
                assignee: assignee.clone(),
                addressees: assignee.into_iter().collect(),
                department: Some("dept".into()),
                colour: colour.into(),
                due: Some(now + 86_400_000),
                priority: 0,
                supervised: state.total >= 100,
                opened_at: now,
            }],
            promises: Vec::new(),
            elements: Vec::new(),
        }
    }

    fn timer_command(&self, timer: &TimerRow) -> Option<CounterCommand> {
        Some(CounterCommand::TimerFired {
            id: timer.timer_id.clone(),
        })
    }
}

/// Instance metadata for a counter instance.
pub fn counter_meta(id: &str) -> InstanceMeta {
    InstanceMeta {
        id: id.to_string(),
        workflow_id: "counter".into(),
        def_version: 1,
        project: serde_json::json!({"assignee": "alice"}),
    }
}

/// The counter with a gate on its timers, for the refused-timer path: while the gate is shut
/// every timer firing is refused (`outside_calendar`, as the engine refuses one whose escalation
/// rungs fall past the calendar's end), and opening it stands for the calendar or definition
/// revision that lets them fire. A refusal that stays a refusal whatever the calendar files say.
/// With `not_before` set, a firing before that time is refused as `timer_not_due` and the
/// machine says the timer is due then (as the engine does when the clock moved back).
#[derive(Debug, Default)]
pub struct GatedCounter {
    open: AtomicBool,
    not_before: AtomicI64,
}

impl GatedCounter {
    /// Timers refused until [`GatedCounter::open`].
    pub fn shut() -> GatedCounter {
        GatedCounter::default()
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Firings before `at` are refused as not due, with `at` as the timer's due.
    pub fn not_before(&self, at: Millis) {
        self.not_before.store(at, Ordering::SeqCst);
    }
}

impl Machine for GatedCounter {
    type Context = ();
    type State = CounterState;
    type Command = CounterCommand;
    type Event = CounterEvent;

    fn context(&self, meta: &InstanceMeta) -> Option<Arc<()>> {
        Counter.context(meta)
    }

    fn register(&self, def: &DefinitionRow) -> Result<(), String> {
        Counter.register(def)
    }

    fn initial(&self, ctx: &(), meta: &InstanceMeta) -> CounterState {
        Counter.initial(ctx, meta)
    }

    fn decide(
        &self,
        ctx: &(),
        meta: &InstanceMeta,
        state: &CounterState,
        cmd: &CounterCommand,
        now: Millis,
    ) -> Result<Vec<CounterEvent>, Rejection> {
        if let CounterCommand::TimerFired { id } = cmd {
            if now < self.not_before.load(Ordering::SeqCst) {
                return Err(Rejection {
                    code: "timer_not_due".into(),
                    message: format!("timer {id} is not due yet"),
                    detail: serde_json::Value::Null,
                    internal: false,
                });
            }
            if !self.open.load(Ordering::SeqCst) {
                return Err(Rejection {
                    code: "outside_calendar".into(),
                    message: format!("timer {id}: a date past the end of the calendar"),
                    detail: serde_json::Value::Null,
                    internal: false,
                });
            }
        }
        Counter.decide(ctx, meta, state, cmd, now)
    }

    fn evolve(&self, ctx: &(), state: &mut CounterState, event: &CounterEvent) {
        Counter.evolve(ctx, state, event)
    }

    fn event_kind(&self, event: &CounterEvent) -> String {
        Counter.event_kind(event)
    }

    fn effects(
        &self,
        ctx: &(),
        meta: &InstanceMeta,
        state: &CounterState,
        event: &CounterEvent,
        now: Millis,
        out: &mut Effects,
    ) {
        Counter.effects(ctx, meta, state, event, now, out)
    }

    fn project(
        &self,
        ctx: &(),
        meta: &InstanceMeta,
        state: &CounterState,
        now: Millis,
    ) -> Projection {
        Counter.project(ctx, meta, state, now)
    }

    fn timer_command(&self, timer: &TimerRow) -> Option<CounterCommand> {
        Counter.timer_command(timer)
    }

    fn timer_due(&self, _ctx: &(), _state: &CounterState, _timer: &TimerRow) -> Option<Millis> {
        Some(self.not_before.load(Ordering::SeqCst))
    }
}
