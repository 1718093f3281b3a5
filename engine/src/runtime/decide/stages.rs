//! Stages and elements: entering, closing or leaving a stage (closing checks every element
//! the stage needs and carries the ones that may be carried as outstanding items), and
//! attaching an element, which resolves its clocks and outstanding items.

use smol_str::SmolStr;

use crate::compile::{StageElementPlan, StagePlan};
use crate::model::FieldType;
use crate::runtime::clock::Clock;
use crate::runtime::event::{ClockRef, Event, OutstandingId, StageVisitId};
use crate::runtime::rejection::Rejection;

use super::walk::type_ok;
use super::{Cx, internal};

impl<'a> Cx<'a> {
    pub(super) fn move_stage(
        &mut self,
        target: Option<usize>,
        closing_end: bool,
    ) -> Result<(), Rejection> {
        let backwards = std::mem::take(&mut self.backwards);
        let cur = self.stage;
        match target {
            Some(s) if cur.map(|c| c.1) != Some(s) => {
                if let Some(c) = cur {
                    if backwards {
                        self.leave_stage(c.0);
                    } else {
                        self.close_stage(c)?;
                    }
                }
                self.enter_stage(s)
            }
            None if closing_end => {
                if let Some(c) = cur {
                    self.close_stage(c)?;
                    self.stage = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether an element a stage requires counts as attached for it
    /// ([`crate::runtime::state::InstanceState::has_element`]: a `fresh` one only if attached in that stage).
    pub(super) fn element_attached_for(&self, stage: &StagePlan, e: &StageElementPlan) -> bool {
        self.st
            .has_element(&e.element, e.fresh.then_some(stage.id.as_str()))
    }

    pub(super) fn enter_stage(&mut self, s: usize) -> Result<(), Rejection> {
        let sp = self
            .p
            .stages
            .get(s)
            .ok_or_else(|| internal("stage index out of range"))?;
        let visit = StageVisitId(self.next_visit);
        self.next_visit += 1;
        let clock = sp.limits.get(self.channel).map(|l| Clock::new(self.now, l));
        let element_clocks: Vec<(SmolStr, Clock)> = sp
            .elements
            .iter()
            .filter(|e| !self.element_attached_for(sp, e))
            .filter_map(|e| {
                e.within
                    .map(|w| (e.element.clone(), Clock::new(self.now, w)))
            })
            .collect();
        self.emit(Event::StageEntered {
            visit,
            stage: sp.id.clone(),
            clock: clock.clone(),
            element_clocks: element_clocks.clone(),
        });
        if let Some(c) = &clock {
            self.arm_clock(ClockRef::Stage(visit), c)?;
        }
        for (e, c) in &element_clocks {
            self.arm_clock(
                ClockRef::Element {
                    stage: visit,
                    element: e.clone(),
                },
                c,
            )?;
        }
        self.stage = Some((visit, s));
        Ok(())
    }

    pub(super) fn cancel_stage_timers(&mut self, visit: StageVisitId) {
        self.cancel_timers_where(|k| match k.clock().cloned().or_else(|| k.escalates()) {
            Some(ClockRef::Stage(v)) => v == visit,
            Some(ClockRef::Element { stage, .. }) => stage == visit,
            _ => false,
        });
    }

    pub(super) fn close_stage(
        &mut self,
        (visit, s): (StageVisitId, usize),
    ) -> Result<(), Rejection> {
        let sp = self
            .p
            .stages
            .get(s)
            .ok_or_else(|| internal("stage index out of range"))?;
        for e in &sp.elements {
            if self.element_attached_for(sp, e) {
                continue;
            }
            if !e.may_carry {
                return Err(Rejection::StageCannotClose {
                    stage: sp.id.clone(),
                    element: e.element.clone(),
                });
            }
            let already = self
                .st
                .outstanding
                .iter()
                .any(|o| !o.resolved && o.element == e.element);
            if already {
                continue;
            }
            let item = OutstandingId(self.next_outstanding);
            self.next_outstanding += 1;
            let clock = e.carry_limit.map(|l| Clock::new(self.now, l));
            self.emit(Event::OutstandingCarried {
                item,
                stage: sp.id.clone(),
                element: e.element.clone(),
                clock: clock.clone(),
            });
            if let Some(c) = &clock {
                self.arm_clock(ClockRef::Outstanding(item), c)?;
            }
        }
        self.cancel_stage_timers(visit);
        self.emit(Event::StageClosed { visit });
        Ok(())
    }

    pub(super) fn leave_stage(&mut self, visit: StageVisitId) {
        self.cancel_stage_timers(visit);
        self.emit(Event::StageLeft { visit });
    }

    pub(super) fn attach(
        &mut self,
        element: &SmolStr,
        fields: &serde_json::Value,
    ) -> Result<(), Rejection> {
        let kind = self
            .p
            .elements
            .get(element)
            .ok_or_else(|| Rejection::UnknownElement {
                element: element.clone(),
            })?;
        let from = self
            .stage
            .and_then(|(_, s)| self.p.stages.get(s))
            .and_then(|sp| sp.elements.iter().find(|e| e.element == *element))
            .map(|e| e.from.clone())
            .unwrap_or_else(|| kind.owner.clone());
        if self.actor.department.as_ref() != Some(&from) {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: format!("attach element `{element}`: it comes from department `{from}`"),
            });
        }
        // 先入库，后保障: only in the stages the element kind allows.
        if !kind.attach_in.is_empty() {
            let here = self.stage.and_then(|(_, s)| self.p.stages.get(s));
            if here.is_none_or(|sp| !kind.attach_in.contains(&sp.id)) {
                return Err(Rejection::ElementNotInStage {
                    element: element.clone(),
                    stages: kind.attach_in.clone(),
                });
            }
        }
        let fields = check_element_fields(element, &kind.fields, fields)?;
        let visit = self.stage.map(|s| s.0);
        self.emit(Event::ElementAttached {
            element: element.clone(),
            stage: visit,
            by: self.by(),
            fields,
        });
        let el = element.clone();
        self.cancel_timers_where(
            |k| matches!(k.clock(), Some(ClockRef::Element { element, .. }) if *element == el),
        );
        for o in &self.st.outstanding {
            if !o.resolved && o.element == *element {
                self.emit(Event::OutstandingResolved { item: o.id });
                let r = ClockRef::Outstanding(o.id);
                self.cancel_clock_timers(&r);
            }
        }
        Ok(())
    }
}

fn check_element_fields(
    element: &SmolStr,
    decl: &[(SmolStr, FieldType, bool)],
    fields: &serde_json::Value,
) -> Result<serde_json::Value, Rejection> {
    let empty = serde_json::Map::new();
    let map = match fields {
        serde_json::Value::Null => &empty,
        serde_json::Value::Object(m) => m,
        _ => {
            return Err(Rejection::InvalidElement {
                element: element.clone(),
                reason: "fields must be a map".into(),
            });
        }
    };
    for k in map.keys() {
        if !decl.iter().any(|(id, _, _)| id == k) {
            return Err(Rejection::InvalidElement {
                element: element.clone(),
                reason: format!("unknown field `{k}`"),
            });
        }
    }
    for (id, ty, required) in decl {
        match map.get(id.as_str()) {
            None | Some(serde_json::Value::Null) => {
                if *required {
                    return Err(Rejection::InvalidElement {
                        element: element.clone(),
                        reason: format!("field `{id}` is required"),
                    });
                }
            }
            Some(v) => {
                if !type_ok(*ty, v, &[]) {
                    return Err(Rejection::InvalidElement {
                        element: element.clone(),
                        reason: format!("field `{id}` must be a {ty:?}, got {v}").to_lowercase(),
                    });
                }
            }
        }
    }
    Ok(serde_json::Value::Object(map.clone()))
}
