//! Official documents (公文): which ones an instance's history calls for, and the variables
//! each kind of document gives its template.
//!
//! A workflow declares a document on an end node (`document:`: 备案证明, 不予许可决定书), on a
//! task (`document:`, the 批复 its approval gives: 出具批复, the case goes on to 开工 and 竣工)
//! and on a step's `conditional:` block (`document:` the 预批复, `revocation:` the 撤销决定).
//! [`due`] reads the instance's state and names every document it calls for, each with a stable
//! [`Occasion`] key, so that whoever issues them (the server, after each commit and in its
//! sweeps) can issue each exactly once: numbering and storing are the adapters' business, not
//! the engine's. Validation checks each template against the variables of its kind here, so a
//! template using a variable the document does not provide is refused before publishing.
//!
//! A 不予许可决定书 must say why (《中华人民共和国行政许可法》第三十八条): an end whose outcome is
//! `rejected` gives its template the step whose final rejection led there and what was said in
//! rejecting, read from the history by [`final_rejection`].

use std::collections::HashMap;

use smol_str::SmolStr;

use crate::compile::Party;
use crate::model::{DocumentSpec, NodeType, Outcome, Workflow};
use crate::runtime::event::{Decision, Event, OpenedTask, PreApprovalId, TaskId, TaskKind};
use crate::runtime::state::{InstanceState, PromiseStatus, Status, TaskStatus};

/// The variables of a document: those every document's template may use, then `$extra`.
macro_rules! document_vars {
    ($($extra:literal),* $(,)?) => {
        &[
            // 项目名称 (the project's `name` field, else the instance id)
            "project",
            // the workflow's name
            "workflow",
            // the issuing department's name (发文机关)
            "issuer",
            // the document's own 文号
            "number",
            // the date of issue, `2026年3月2日`
            "date",
            // the document's title
            "title",
            // who applied (the project's `enterprise` field, else the applicant's user name)
            "applicant",
            $($extra),*
        ]
    };
}

/// The variables every document's template may use.
pub const COMMON_VARS: &[&str] = document_vars!();

/// The variables of an end node's document (批复, 备案证明, 不予许可决定书): the end node's
/// name and the outcome in Chinese (批准, 不予许可 ...).
pub const END_VARS: &[&str] = document_vars!("node", "outcome");

/// The variables of the document of an end whose outcome is `rejected` (不予许可决定书, 不予备案
/// 决定书): also the step whose final rejection led there and the reasons given (both empty when
/// a gateway, not a rejection, routed the case there).
pub const REFUSAL_VARS: &[&str] = document_vars!("node", "outcome", "step", "reason");

/// The variables of an end node's document, by the end's outcome (absent: `approved`).
pub fn end_vars(outcome: Option<Outcome>) -> &'static [&'static str] {
    match outcome {
        Some(Outcome::Rejected) => REFUSAL_VARS,
        _ => END_VARS,
    }
}

/// The variables of a step's document (the 批复 its approval gives): the step's name, and the
/// opinion the approver gave (empty when none).
pub const APPROVAL_VARS: &[&str] = document_vars!("node", "step", "opinion");

/// The variables of a node's `document:`: an end's by its outcome, a task's those of its
/// approval.
pub fn node_vars(n: &crate::model::Node) -> &'static [&'static str] {
    if n.ty.value == NodeType::End {
        end_vars(n.outcome.as_ref().map(|o| o.value))
    } else {
        APPROVAL_VARS
    }
}

/// The variables of a 预批复: the step that pre-approved, the waived materials by name (joined
/// with 、), the commitment's limit as written (`20个工作日`) and its last day.
pub const PRE_APPROVAL_VARS: &[&str] = document_vars!("step", "materials", "limit", "deadline");

/// The variables of a 撤销决定: the step, the materials whose commitment was breached, the
/// revoked 预批复's 文号 and date (empty when none was issued).
pub const REVOCATION_VARS: &[&str] = document_vars!("step", "materials", "pre_number", "pre_date");

/// The variables of the 文号 pattern (`document_number`).
pub const NUMBER_VARS: &[&str] = &["year", "seq"];

/// The 文号 of a workflow without a `document_number`: `〔2026〕1号`.
pub const DEFAULT_NUMBER: &str = "〔{{year}}〕{{seq}}号";

/// Why a document is issued; its [`key`](Occasion::key) is unique per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Occasion {
    /// The instance ended at an end node that declares a document.
    End,
    /// A step pre-approved (容缺).
    PreApproval(PreApprovalId),
    /// A task that declares a document was approved (its own task's approval).
    Approved(TaskId),
    /// A breach revoked the instance: the pre-approval's 撤销决定.
    Revocation(PreApprovalId),
}

impl Occasion {
    /// The stored key: `end`, `pre_approval/0`, `approved/7` (the task), `revocation/0`.
    pub fn key(&self) -> String {
        match self {
            Occasion::End => "end".to_string(),
            Occasion::PreApproval(p) => format!("pre_approval/{}", p.0),
            Occasion::Approved(t) => format!("approved/{}", t.0),
            Occasion::Revocation(p) => format!("revocation/{}", p.0),
        }
    }
}

/// A document the history calls for.
#[derive(Debug, Clone)]
pub struct Due<'a> {
    pub occasion: Occasion,
    pub spec: &'a DocumentSpec,
    /// The end node, the step that approved, or the step that pre-approved.
    pub node: &'a str,
    /// The variables its template may use.
    pub vars: &'static [&'static str],
}

/// Every document an instance's state calls for, in the order they were called for:
/// pre-approvals first, then the approvals of steps that declare one (a step with a document
/// cannot be taken back; while a 容缺 promise is open its 批复 waits, as an approved end's does,
/// and a breach that revokes the case never issues it), then the end's document or the
/// revocations.
pub fn due<'a>(wf: &'a Workflow, st: &InstanceState) -> Vec<Due<'a>> {
    let node = |id: &str| wf.nodes.iter().find(|n| n.id.value == id);
    let mut out = Vec::new();
    for pre in &st.pre_approvals {
        let Some(n) = node(&pre.node) else { continue };
        if let Some(spec) = n.conditional.as_ref().and_then(|c| c.document.as_ref()) {
            out.push(Due {
                occasion: Occasion::PreApproval(pre.id),
                spec,
                node: &n.id.value,
                vars: PRE_APPROVAL_VARS,
            });
        }
    }
    let promises_kept = st
        .promises
        .iter()
        .all(|p| p.status == PromiseStatus::Verified && !p.breached)
        && st.outcome != Some(Outcome::Revoked);
    let mut approved: Vec<_> = st
        .tasks
        .iter()
        .filter(|t| {
            promises_kept
                && t.spec.kind == TaskKind::Work
                && t.spec.step.is_none()
                && t.status == TaskStatus::Decided
                && t.decision == Some(Decision::Approve)
                // With co-signers (加签), the step is approved once they all approved too.
                && st.tasks.iter().filter(|c| c.spec.parent == Some(t.spec.task)).all(|c| {
                    c.status == TaskStatus::Decided && c.decision == Some(Decision::Approve)
                })
        })
        .filter_map(|t| {
            let n = node(&t.spec.node)?;
            let spec = n
                .document
                .as_ref()
                .filter(|_| n.ty.value == NodeType::Task)?;
            Some((t.decided_seq, t.spec.task, spec, &n.id.value))
        })
        .collect();
    approved.sort_by_key(|(seq, ..)| *seq);
    for (_, task, spec, node) in approved {
        out.push(Due {
            occasion: Occasion::Approved(task),
            spec,
            node,
            vars: APPROVAL_VARS,
        });
    }
    if st.status != Status::Ended {
        return out;
    }
    match st.outcome {
        Some(Outcome::Revoked) if st.path_end != Some(Outcome::Revoked) => {
            for pre in &st.pre_approvals {
                let Some(n) = node(&pre.node) else { continue };
                if let Some(spec) = n.conditional.as_ref().and_then(|c| c.revocation.as_ref()) {
                    out.push(Due {
                        occasion: Occasion::Revocation(pre.id),
                        spec,
                        node: &n.id.value,
                        vars: REVOCATION_VARS,
                    });
                }
            }
        }
        // Ended where the flow reached an end node, with that node's outcome.
        Some(o) if st.path_end == Some(o) => {
            if let Some(n) = st.at.as_deref().and_then(node)
                && n.ty.value == NodeType::End
                && let Some(spec) = &n.document
            {
                out.push(Due {
                    occasion: Occasion::End,
                    spec,
                    node: &n.id.value,
                    vars: end_vars(n.outcome.as_ref().map(|o| o.value)),
                });
            }
        }
        _ => {}
    }
    out
}

/// The final rejection that ended a case: the step, and each rejection of it that counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalRejection {
    /// The node whose final rejection ended the case.
    pub node: SmolStr,
    /// The final rejections of that step, in the order given: the one task's (or co-signer's),
    /// or every branch's of the parallel step's round (票签 and `collect` hear them all).
    pub opinions: Vec<Opinion>,
}

/// One rejection and what was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opinion {
    /// To whom the rejecting task was assigned (a branch's role or department).
    pub party: Party,
    /// The reason given, trimmed; empty when none was.
    pub text: String,
}

/// The final rejection (a `reject` without `to`) that ended the case, from its history: the
/// last decision of a step's own task decided the case; when that decision, or another of the
/// same parallel round, is a final rejection, this is it. `None` when the case did not end by
/// a rejection (an approval, or a gateway that routed it to a rejected end).
pub fn final_rejection<'e>(events: impl IntoIterator<Item = &'e Event>) -> Option<FinalRejection> {
    let mut opened: HashMap<TaskId, &OpenedTask> = HashMap::new();
    let mut decided: Vec<(TaskId, Decision, Option<&SmolStr>, Option<&String>)> = Vec::new();
    for e in events {
        match e {
            Event::TaskOpened(t) => {
                opened.insert(t.task, t);
            }
            Event::TaskDecided {
                task,
                decision,
                to,
                comment,
                ..
            } => decided.push((*task, *decision, to.as_ref(), comment.as_ref())),
            _ => {}
        }
    }
    // Verification tasks check promises and never end a case by rejecting.
    let (last, _, _, _) = decided
        .iter()
        .rev()
        .find(|(t, ..)| opened.get(t).is_some_and(|o| o.kind != TaskKind::Verify))?;
    let last = *opened.get(last)?;
    let together = |t: &OpenedTask| match last.step {
        Some(step) => t.step == Some(step),
        None => t.task == last.task,
    };
    let opinions: Vec<Opinion> = decided
        .iter()
        .filter(|(_, d, to, _)| *d == Decision::Reject && to.is_none())
        .filter_map(|(t, _, _, comment)| {
            let o = opened.get(t).filter(|o| together(o))?;
            Some(Opinion {
                party: o.assignment.clone(),
                text: comment.map(|c| c.trim().to_string()).unwrap_or_default(),
            })
        })
        .collect();
    if opinions.is_empty() {
        return None;
    }
    Some(FinalRejection {
        node: last.node.clone(),
        opinions,
    })
}

/// The outcome in the words of a document.
pub fn outcome_zh(o: Outcome) -> &'static str {
    match o {
        Outcome::Approved => "批准",
        Outcome::Rejected => "不予许可",
        Outcome::Withdrawn => "撤回",
        Outcome::Revoked => "撤销",
    }
}

/// Whether a 文号 pattern is a template that numbers its documents: it parses, uses `{{seq}}`
/// and no variable but `year` and `seq`.
pub fn numbers(pattern: &str) -> bool {
    crate::template::parse(pattern).is_ok_and(|t| {
        t.first_unknown(NUMBER_VARS).is_none() && t.variables().any(|(v, _)| v == "seq")
    })
}
