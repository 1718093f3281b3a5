//! Walking the graph: starting an instance, entering a node and walking on through the nodes
//! that need no one (gateways, notify nodes, skipped nodes, empty parallel steps), routing, 驳回
//! back to an earlier node, and ending the instance.
//!
//! `Cx::enter` is the only way into a node: it moves the stage, emits `NodeEntered` and opens
//! what the node waits on.

use smol_str::SmolStr;

use crate::calendar::{local_date, start_of_day};
use crate::compile::{NodePlan, Party, Plan};
use crate::model::{Delivery, FieldType, NodeType, NotificationEvent, Outcome};
use crate::runtime::clock::Clock;
use crate::runtime::event::{CancelReason, Event, NoticeData, TimerKind};
use crate::runtime::rejection::{ProjectProblem, Rejection};

use super::{Cx, internal};

impl<'a> Cx<'a> {
    pub(super) fn start(
        &mut self,
        project: &serde_json::Value,
        channel: Option<&SmolStr>,
    ) -> Result<(), Rejection> {
        check_project(self.p, project)?;
        self.emit(Event::InstanceStarted {
            workflow: SmolStr::new(self.def.id()),
            by: self.by(),
            at: self.now,
            project: project.clone(),
        });
        let chosen = match channel {
            Some(c) => {
                let ix = self
                    .p
                    .channel_ix(c)
                    .ok_or_else(|| Rejection::UnknownChannel { channel: c.clone() })?;
                Some((ix, "chosen explicitly at start".to_string()))
            }
            None => self.p.channels.iter().enumerate().find_map(|(i, c)| {
                if let Some(f) = &c.flag
                    && project.get(f.as_str()).and_then(|v| v.as_bool()) == Some(true)
                {
                    return Some((i, format!("flag `{f}` is set")));
                }
                match &c.when {
                    Some(w) if w.eval_bool(project).unwrap_or(false) => {
                        Some((i, format!("condition `{}` holds", w.source())))
                    }
                    _ => None,
                }
            }),
        };
        if let Some((ix, reason)) = chosen {
            let ch = self
                .p
                .channels
                .get(ix)
                .ok_or_else(|| internal("channel index out of range"))?;
            self.channel = Some(ix);
            self.priority = ch.priority;
            self.emit(Event::ChannelChosen {
                channel: ch.id.clone(),
                reason: reason.clone(),
                priority: ch.priority,
            });
            let natural: Vec<Party> = ch
                .coordinator
                .as_ref()
                .and_then(|a| self.resolve_quiet(a))
                .into_iter()
                .collect();
            self.notify(
                NotificationEvent::GreenChannel,
                natural,
                NoticeData {
                    channel: Some(ch.id.clone()),
                    text: Some(reason),
                    ..NoticeData::default()
                },
            );
        }
        self.enter(self.p.start)
    }

    /// Enters node `ix` and walks on through nodes that need no one (gateways, notify nodes,
    /// skipped nodes, parallel steps with no branch) until a task, step, wait or end.
    pub(super) fn enter(&mut self, mut ix: usize) -> Result<(), Rejection> {
        let limit = self.p.nodes.len() * 2 + 4;
        for _ in 0..limit {
            let n = self.node(ix)?;
            if let Some(c) = self.channel
                && let Some(ch) = self.p.channels.get(c)
                && ch.skip.contains(&ix)
                && let Some(next) = n.next
            {
                self.emit(Event::NodeSkipped {
                    node: n.id.clone(),
                    channel: ch.id.clone(),
                });
                ix = next;
                continue;
            }
            let approved_end = n.kind == NodeType::End
                && n.outcome.unwrap_or(Outcome::Approved) == Outcome::Approved;
            self.move_stage(n.stage, approved_end)?;
            self.emit(Event::NodeEntered { node: n.id.clone() });
            match n.kind {
                NodeType::Task => return self.open_node_task(ix),
                NodeType::Parallel => {
                    if self.open_step(ix)? {
                        return Ok(());
                    }
                    ix = n
                        .next
                        .ok_or_else(|| internal(format!("node `{}` has no next", n.id)))?;
                }
                NodeType::Gateway => ix = self.route(n)?,
                NodeType::Wait => {
                    if let Some(l) = n.wait {
                        let due = Clock::new(self.now, l).due(self.cal)?.unwrap_or(self.now);
                        self.arm(due, TimerKind::Wait { node: n.id.clone() });
                    } else if let Some(date) = n.wait_until {
                        // The start of the date's day (the next working day when it rests),
                        // on the calendar; a date already reached goes on at once.
                        let day = self.cal.wait_ends(local_date(self.now), date)?;
                        let due = start_of_day(day).max(self.now);
                        self.arm(due, TimerKind::Wait { node: n.id.clone() });
                    }
                    return Ok(());
                }
                NodeType::Notify => {
                    if let Some(spec) = &n.notify {
                        let recipients: Vec<Party> = spec
                            .to
                            .iter()
                            .filter_map(|a| self.resolve_quiet(a))
                            .collect();
                        self.emit(Event::NotificationRequested {
                            on: None,
                            recipients,
                            template: spec.template.clone(),
                            via: vec![Delivery::Log],
                            data: NoticeData {
                                node: Some(n.id.clone()),
                                ..NoticeData::default()
                            },
                        });
                    }
                    match n.next {
                        Some(next) => ix = next,
                        None => return Ok(()),
                    }
                }
                NodeType::End => {
                    let outcome = n.outcome.unwrap_or(Outcome::Approved);
                    self.emit(Event::EndReached {
                        node: n.id.clone(),
                        outcome,
                    });
                    if outcome == Outcome::Approved && self.promises_pending() {
                        // 容缺: the path is done, the commitments are not; the instance stays
                        // open until every promise is verified (or one is breached).
                        return Ok(());
                    }
                    self.end_instance(outcome);
                    return Ok(());
                }
            }
        }
        Err(internal(
            "the flow loops through nodes without reaching a task",
        ))
    }

    pub(super) fn route(&self, n: &NodePlan) -> Result<usize, Rejection> {
        for (when, to) in &n.routes {
            match when {
                None => return Ok(*to),
                // A condition that cannot be evaluated (e.g. an optional field left empty) does
                // not hold; the default route catches the case.
                Some(e) if e.eval_bool(self.project).unwrap_or(false) => return Ok(*to),
                Some(_) => {}
            }
        }
        Err(Rejection::NoRoute { node: n.id.clone() })
    }

    /// A step was rejected: back to `to` (驳回) or a final rejection.
    pub(super) fn apply_reject(
        &mut self,
        from: usize,
        to: Option<SmolStr>,
    ) -> Result<(), Rejection> {
        let n = self.node(from)?;
        match to {
            Some(target) => {
                let tix = self.node_ix(&target)?;
                if !n.reject_to.contains(&tix) {
                    return Err(not_earlier(self.p, n, &target));
                }
                // Only the abandoned path closes (review tasks, branches, co-signers): a
                // verification task checks the applicant's commitment, which the pre-approval
                // made and a 驳回 of the review round does not undo.
                for t in self.open_path_tasks() {
                    self.cancel_task(t, CancelReason::RejectedBack);
                }
                self.emit(Event::RejectedBack {
                    from: n.id.clone(),
                    to: target,
                    by: self.by(),
                });
                self.backwards = true;
                self.enter(tix)
            }
            None => match n.on_reject {
                Some(on) => {
                    // Verification tasks are left to `end_instance`, which closes them if the
                    // end ends the instance.
                    for t in self.open_path_tasks() {
                        self.cancel_task(t, CancelReason::InstanceEnded);
                    }
                    self.enter(on)
                }
                None => {
                    self.end_instance(Outcome::Rejected);
                    Ok(())
                }
            },
        }
    }

    pub(super) fn end_instance(&mut self, outcome: Outcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        for t in self.open_tasks() {
            self.cancel_task(t, CancelReason::InstanceEnded);
        }
        self.cancel_timers_where(|_| true);
        self.emit(Event::InstanceEnded { outcome });
    }

    pub(super) fn withdraw(&mut self, reason: &Option<String>) -> Result<(), Rejection> {
        if !self.is_applicant() {
            return Err(Rejection::NotAuthorised {
                actor: self.by(),
                what: "withdraw the application (only the applicant may)".into(),
            });
        }
        self.emit(Event::Withdrawn {
            by: self.by(),
            reason: reason.clone(),
        });
        self.end_instance(Outcome::Withdrawn);
        Ok(())
    }
}

/// The project must be a map holding every required field, each of its declared type.
fn check_project(p: &Plan, project: &serde_json::Value) -> Result<(), Rejection> {
    let Some(map) = project.as_object() else {
        return Err(Rejection::InvalidProject {
            field: SmolStr::new_static("project"),
            reason: "the project must be a map of field values".into(),
            problem: ProjectProblem::NotAMap,
        });
    };
    for (id, ty, required, values) in &p.fields {
        match map.get(id.as_str()) {
            None | Some(serde_json::Value::Null) => {
                if *required {
                    return Err(Rejection::InvalidProject {
                        field: id.clone(),
                        reason: "is required".into(),
                        problem: ProjectProblem::Required,
                    });
                }
            }
            Some(v) => {
                if !type_ok(*ty, v, values) {
                    let want = match ty {
                        FieldType::Enum => format!("one of {values:?}"),
                        other => format!("a {other:?}").to_lowercase(),
                    };
                    return Err(Rejection::InvalidProject {
                        field: id.clone(),
                        reason: format!("must be {want}, got {v}"),
                        problem: match ty {
                            FieldType::Enum => ProjectProblem::NotOneOf {
                                values: values.to_vec(),
                            },
                            other => ProjectProblem::WrongType { want: *other },
                        },
                    });
                }
            }
        }
    }
    Ok(())
}

pub(super) fn type_ok(ty: FieldType, v: &serde_json::Value, values: &[SmolStr]) -> bool {
    use serde_json::Value as J;
    match ty {
        FieldType::String | FieldType::User | FieldType::Date => v.is_string(),
        FieldType::Number => v.is_number(),
        FieldType::Int => v.is_i64() || v.is_u64(),
        FieldType::Bool => v.is_boolean(),
        FieldType::Enum => match v {
            J::String(s) => values.is_empty() || values.iter().any(|x| x == s),
            _ => false,
        },
        FieldType::List => v.is_array(),
    }
}

pub(super) fn not_earlier(p: &Plan, n: &NodePlan, target: &str) -> Rejection {
    Rejection::NotEarlierNode {
        to: SmolStr::new(target),
        allowed: n
            .reject_to
            .iter()
            .filter_map(|i| p.nodes.get(*i).map(|x| x.id.clone()))
            .collect(),
    }
}
