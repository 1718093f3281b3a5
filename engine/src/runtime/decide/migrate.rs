//! The events of a migration (迁移), decided on the *new* version once
//! [`runtime::migrate::plan`](crate::runtime::migrate::plan) said the instance can move: the
//! `Migrated` event, then for every clock whose limit changed its timers cancelled and armed
//! again, then a task for every department the new version adds to an open parallel step.

use jiff::Timestamp;
use smol_str::SmolStr;

use crate::calendar::Calendar;
use crate::compile::Definition;
use crate::runtime::command::Actor;
use crate::runtime::event::{ClockRef, Event, OpenedTask, TaskKind, TimerKind};
use crate::runtime::migrate::{Mapping, MigrationPlan};
use crate::runtime::rejection::Rejection;
use crate::runtime::state::InstanceState;

use super::{Cx, internal};

/// See the module docs; `to` is the version the instance moves to.
#[allow(clippy::too_many_arguments)]
pub(in crate::runtime) fn migration(
    to: &Definition,
    cal: &Calendar,
    st: &InstanceState,
    actor: &Actor,
    now: Timestamp,
    plan: &MigrationPlan,
    from_version: u32,
    to_version: u32,
    mapping: &Mapping,
) -> Result<Vec<Event>, Rejection> {
    let mut cx = Cx::new(to, cal, st, actor, now, &st.project);
    cx.migrate(plan, from_version, to_version, mapping)?;
    if cfg!(debug_assertions)
        && let Some(m) = cx.overlay_mismatch()
    {
        return Err(internal(format!(
            "decide's overlay does not mirror its own events: {m}"
        )));
    }
    Ok(cx.out)
}

impl<'a> Cx<'a> {
    fn migrate(
        &mut self,
        plan: &MigrationPlan,
        from: u32,
        to: u32,
        mapping: &Mapping,
    ) -> Result<(), Rejection> {
        let st = self.st;
        self.emit(Event::Migrated {
            from,
            to,
            mapping: mapping.clone(),
            clocks: plan.clocks.clone(),
            by: self.by(),
        });
        // The open stage, under its new name.
        self.stage = st
            .current_stage()
            .and_then(|v| self.p.stage_ix(mapping.stage(&v.stage)).map(|s| (v.id, s)));
        for change in &plan.clocks {
            let target = &change.target;
            self.cancel_clock_timers(target);
            let old = st.clock(target);
            let cleared = match (old, &change.clock) {
                (Some(o), Some(n)) => o.red_warned && !n.red_warned,
                (Some(_), None) => true,
                _ => false,
            };
            // Escalations follow the deadline: a limit that is gone or longer ends those under
            // way (the overdue path arms them again if the new deadline passes).
            if let ClockRef::Task(t) = target
                && cleared
            {
                let t = *t;
                self.cancel_timers_where(
                    |k| matches!(k, TimerKind::Escalation { task, .. } if *task == t),
                );
            }
            if let Some(c) = &change.clock {
                self.arm_clock(target.clone(), c)?;
            }
        }
        for b in &plan.branches {
            let n = self.node(b.node)?;
            let bp = n
                .branches
                .get(b.branch)
                .ok_or_else(|| internal("branch index out of range"))?;
            let party = self.resolve(&bp.assignee, &n.id)?;
            let task = self.new_task_id();
            self.open_task(OpenedTask {
                task,
                node: n.id.clone(),
                label: SmolStr::new(format!("{}.{}", n.id, bp.id)),
                kind: TaskKind::Work,
                branch: Some(bp.id.clone()),
                step: Some(b.step),
                parent: None,
                promise: None,
                assignment: party,
                department: Some(bp.department.clone()),
                clock: bp
                    .limits
                    .get(self.channel)
                    .map(|l| crate::runtime::clock::Clock::new(self.now, l)),
                lead: n.lead.as_ref() == Some(&bp.id),
                priority: self.priority,
                order: Default::default(),
                replaces: None,
            })?;
        }
        Ok(())
    }
}
