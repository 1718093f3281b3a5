//! Compilation: a validated [`Workflow`] becomes a [`Definition`], the form the runtime walks.
//!
//! A definition is built once per published version and then only read. The state graph is a
//! petgraph `DiGraph` whose node weights are node ids; the runtime keeps node *ids* (strings) in
//! instance state, never graph indices, so a state stays meaningful across recompilation.
//!
//! Beside the graph, compilation precomputes everything the runtime would otherwise redo on every
//! command (the [`Plan`]): limits parsed and already scaled for every green channel, conditions
//! and assignee rules parsed into [`Expr`] once, node references resolved to indices, per-kind
//! notification rules, the yellow threshold as a number. The runtime's hot path
//! (`decide`/`evolve`) then only indexes vectors; it never parses text.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use smol_str::SmolStr;

use crate::diag::Diagnostic;
use crate::expr::Expr;
use crate::limit::{Limit, Unit, parse_share};
use crate::model::{
    Action, Assignee, BreachAction, Delivery, Escalated, FieldType, JoinPolicy, Node, NodeType,
    NotificationEvent, Outcome, RawLimit, RejectPolicy, RungAction, Workflow,
};
use crate::span::Pos;
use crate::template::{self, Template};
use crate::validate::{ValidateContext, validate};

/// Why one node leads to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// `next:` of a task, parallel step, wait or notify node.
    Next,
    /// A gateway route; `None` is the default route.
    Route(Option<String>),
    /// A 驳回 target (goes backwards).
    RejectTo,
    /// Where a final rejection goes.
    OnReject,
}

/// A compiled, validated workflow version.
#[derive(Debug, Clone)]
pub struct Definition {
    pub workflow: Workflow,
    pub graph: DiGraph<String, Edge>,
    pub index: HashMap<String, NodeIndex>,
    /// Precomputed lookups for the runtime.
    pub plan: Plan,
}

impl Definition {
    pub fn id(&self) -> &str {
        &self.workflow.id.value
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        let ix = self.index.get(id)?;
        self.workflow.nodes.get(ix.index())
    }

    /// Index of a node id in [`Plan::nodes`] (the same as its graph index).
    pub fn node_ix(&self, id: &str) -> Option<usize> {
        self.index.get(id).map(|ix| ix.index())
    }
}

/// A party a task is assigned to or a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    User(SmolStr),
    /// Holders of a role (in the role's department pool).
    Role(SmolStr),
    /// Anyone of a department.
    Department(SmolStr),
}

/// An assignee rule, resolved as far as it can be without a project.
#[derive(Debug, Clone)]
pub enum AssigneePlan {
    Party(Party),
    /// The user named by this `user` field of the project (1对1 帮办专员).
    ServiceOfficer(SmolStr),
    /// A CEL rule giving a user name, `dept:<id>` or `role:<id>`.
    Rule(Expr),
}

/// Limits of one node, branch or stage, for "no channel" (index 0) and each channel `c`
/// (index `c + 1`), with the channel's scaling, same-day rule and per-node overrides applied.
#[derive(Debug, Clone, Default)]
pub struct ChannelLimits(pub Vec<Option<Limit>>);

impl ChannelLimits {
    pub fn get(&self, channel: Option<usize>) -> Option<Limit> {
        let i = channel.map_or(0, |c| c + 1);
        self.0.get(i).copied().flatten()
    }
}

#[derive(Debug, Clone)]
pub struct BranchPlan {
    pub id: SmolStr,
    pub department: SmolStr,
    pub assignee: AssigneePlan,
    pub limits: ChannelLimits,
    pub when: Option<Expr>,
}

#[derive(Debug, Clone)]
pub struct ConditionalPlan {
    pub waivable: Vec<SmolStr>,
    pub limit: Limit,
    pub on_breach: Vec<BreachAction>,
    pub verify_by: Option<AssigneePlan>,
    /// The commitment letter a pre-approval on the step yields, if the step names one.
    pub letter: Option<LetterPlan>,
}

/// A step's commitment letter (承诺书): its template, parsed once, and the time to sign it.
#[derive(Debug, Clone)]
pub struct LetterPlan {
    pub name: SmolStr,
    pub template: Template,
    /// `sign_within`, or [`crate::runtime::letter::DEFAULT_SIGN_WITHIN`] working days.
    pub sign_within: Limit,
}

#[derive(Debug, Clone, Copy)]
pub struct JoinPlan {
    pub policy: JoinPolicy,
    /// For `vote`: the share of approvals needed, in (0, 1].
    pub share: f64,
    pub on_reject: RejectPolicy,
}

impl JoinPlan {
    /// Approvals needed out of `n` branches.
    pub fn needed(&self, n: usize) -> usize {
        match self.policy {
            JoinPolicy::All => n,
            JoinPolicy::Any => n.min(1),
            JoinPolicy::Vote => {
                // The epsilon keeps `2/3 × 3` at 2 although 2/3 is not exact in binary.
                let x = (n as f64 * self.share - 1e-9).ceil();
                (x.max(1.0) as usize).min(n)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct NotifyPlan {
    pub to: Vec<AssigneePlan>,
    pub template: SmolStr,
}

/// One node, with every reference resolved to an index into [`Plan::nodes`].
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub id: SmolStr,
    pub kind: NodeType,
    pub stage: Option<usize>,
    pub next: Option<usize>,
    pub assignee: Option<AssigneePlan>,
    /// Allowed actions; when the YAML lists none: approve, reject, comment (and for a parallel
    /// step's branches also delegate, cosign, suspend).
    pub actions: Vec<Action>,
    /// The task's limit (task), the step's overall limit (parallel), per channel.
    pub limits: ChannelLimits,
    pub materials: Vec<SmolStr>,
    pub conditional: Option<ConditionalPlan>,
    pub reject_to: Vec<usize>,
    pub on_reject: Option<usize>,
    pub extend_by: Vec<SmolStr>,
    pub branches: Vec<BranchPlan>,
    pub lead: Option<SmolStr>,
    pub join: JoinPlan,
    /// Gateway routes in order; `None` condition is the default.
    pub routes: Vec<(Option<Expr>, usize)>,
    pub wait: Option<Limit>,
    /// `wait_until`: the calendar date the wait runs to.
    pub wait_until: Option<crate::calendar::DateSpec>,
    pub notify: Option<NotifyPlan>,
    pub outcome: Option<Outcome>,
}

impl NodePlan {
    pub fn allows(&self, a: Action) -> bool {
        self.actions.contains(&a)
    }
}

#[derive(Debug, Clone)]
pub struct ChannelPlan {
    pub id: SmolStr,
    pub when: Option<Expr>,
    pub flag: Option<SmolStr>,
    pub skip: Vec<usize>,
    pub priority: i32,
    pub coordinator: Option<AssigneePlan>,
}

#[derive(Debug, Clone)]
pub struct StageElementPlan {
    pub element: SmolStr,
    /// The department that must attach it.
    pub from: SmolStr,
    pub within: Option<Limit>,
    pub may_carry: bool,
    pub carry_limit: Option<Limit>,
    /// Only an attachment made in this stage counts for it.
    pub fresh: bool,
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub id: SmolStr,
    /// The department answering for the stage's limit (its escalations).
    pub department: Option<SmolStr>,
    pub limits: ChannelLimits,
    pub elements: Vec<StageElementPlan>,
}

#[derive(Debug, Clone)]
pub struct RungPlan {
    pub after: Limit,
    pub action: RungAction,
    pub to: Option<AssigneePlan>,
}

#[derive(Debug, Clone)]
pub struct RulePlan {
    pub to: Vec<AssigneePlan>,
    pub via: Vec<Delivery>,
    pub template: SmolStr,
}

#[derive(Debug, Clone, Default)]
pub struct DepartmentPlan {
    pub supervisor: Option<SmolStr>,
    pub leader: Option<SmolStr>,
}

#[derive(Debug, Clone)]
pub struct ElementKindPlan {
    pub owner: SmolStr,
    /// (field id, type, required)
    pub fields: Vec<(SmolStr, FieldType, bool)>,
    /// Stage ids it may be attached in; empty: any time.
    pub attach_in: Vec<SmolStr>,
}

/// Everything the runtime looks up, resolved once per definition.
#[derive(Debug, Clone)]
pub struct Plan {
    pub start: usize,
    pub nodes: Vec<NodePlan>,
    pub channels: Vec<ChannelPlan>,
    pub stages: Vec<StagePlan>,
    /// Yellow once `used ≥ ceil(limit × yellow_permille / 1000)`.
    pub yellow_permille: u32,
    pub rungs: Vec<RungPlan>,
    /// What the ladder covers (`warnings.escalate`).
    pub escalate: Vec<Escalated>,
    /// Material id → red-line.
    pub materials: HashMap<SmolStr, bool>,
    /// Role id → its department.
    pub role_department: HashMap<SmolStr, SmolStr>,
    pub departments: HashMap<SmolStr, DepartmentPlan>,
    pub elements: HashMap<SmolStr, ElementKindPlan>,
    /// Project fields: (id, type, required, enum values).
    pub fields: Vec<(SmolStr, FieldType, bool, Vec<SmolStr>)>,
    /// Ids of the project's `user` fields: the applicant side (service officers) may act for
    /// the applicant.
    pub user_fields: Vec<SmolStr>,
    /// Notification rules per [`NotificationEvent`], indexed by [`notification_ix`].
    pub rules: Vec<Vec<RulePlan>>,
}

impl Plan {
    pub fn rules_for(&self, on: NotificationEvent) -> &[RulePlan] {
        self.rules
            .get(notification_ix(on))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn channel_ix(&self, id: &str) -> Option<usize> {
        self.channels.iter().position(|c| c.id == id)
    }

    pub fn stage_ix(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }

    /// Whether the escalation ladder covers this kind of limited thing.
    pub fn escalates(&self, kind: Escalated) -> bool {
        !self.rungs.is_empty() && self.escalate.contains(&kind)
    }
}

/// The index of a notification kind in [`Plan::rules`].
pub fn notification_ix(e: NotificationEvent) -> usize {
    use NotificationEvent as N;
    match e {
        N::TaskAssigned => 0,
        N::Yellow => 1,
        N::Overdue => 2,
        N::Escalation => 3,
        N::Supervise => 4,
        N::PromiseDue => 5,
        N::PromiseBreach => 6,
        N::GreenChannel => 7,
        N::Urge => 8,
        N::Cc => 9,
        N::Report => 10,
        N::DeadlineMoved => 11,
    }
}

const NOTIFICATION_KINDS: usize = 12;

/// Validates and compiles. Returns every error found; warnings alone do not stop compilation.
pub fn compile(workflow: Workflow, ctx: &ValidateContext) -> Result<Definition, Vec<Diagnostic>> {
    let diags = validate(&workflow, ctx);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    build(workflow, ctx)
}

/// Builds the graph and the plan; node `i` of the workflow is graph index `i`.
///
/// Validation has already checked every reference, limit and condition; should one slip through
/// anyway, it becomes a `E900` diagnostic here rather than a runtime surprise.
fn build(workflow: Workflow, ctx: &ValidateContext) -> Result<Definition, Vec<Diagnostic>> {
    let mut graph = DiGraph::with_capacity(workflow.nodes.len(), workflow.nodes.len() * 2);
    let mut index = HashMap::with_capacity(workflow.nodes.len());
    for n in &workflow.nodes {
        let ix = graph.add_node(n.id.value.clone());
        index.insert(n.id.value.clone(), ix);
    }
    for (i, n) in workflow.nodes.iter().enumerate() {
        let from = NodeIndex::new(i);
        let mut link = |to: &str, e: Edge| {
            if let Some(&t) = index.get(to) {
                graph.add_edge(from, t, e);
            }
        };
        if let Some(next) = &n.next {
            link(next, Edge::Next);
        }
        for r in &n.routes {
            link(&r.to, Edge::Route(r.when.as_ref().map(|w| w.value.clone())));
        }
        for r in &n.reject_to {
            link(r, Edge::RejectTo);
        }
        if let Some(r) = &n.on_reject {
            link(r, Edge::OnReject);
        }
    }
    let plan = Planner {
        wf: &workflow,
        index: &index,
        ctx,
        diags: Vec::new(),
    }
    .plan();
    let plan = plan?;
    Ok(Definition {
        workflow,
        graph,
        index,
        plan,
    })
}

struct Planner<'a> {
    wf: &'a Workflow,
    index: &'a HashMap<String, NodeIndex>,
    /// The document templates the letters name.
    ctx: &'a ValidateContext,
    diags: Vec<Diagnostic>,
}

impl Planner<'_> {
    fn fail(&mut self, pos: Pos, msg: String) {
        self.diags.push(Diagnostic::error(
            "E900",
            pos,
            format!("cannot compile: {msg}"),
        ));
    }

    fn node_ref(&mut self, id: &crate::span::Sp<String>) -> Option<usize> {
        match self.index.get(id.value.as_str()) {
            Some(ix) => Some(ix.index()),
            None => {
                self.fail(id.pos, format!("unknown node `{}`", id.value));
                None
            }
        }
    }

    fn limit(&mut self, raw: &crate::span::Sp<RawLimit>, allow_zero: bool) -> Option<Limit> {
        match Limit::parse(raw, allow_zero) {
            Ok(l) => Some(l),
            Err(e) => {
                self.fail(raw.pos, e);
                None
            }
        }
    }

    /// A step's commitment letter: its template parsed from the context's documents (validation
    /// checked its variables when it could; a template that is not loaded cannot be rendered, so
    /// it fails the compilation rather than a pre-approval later).
    fn letter(&mut self, c: &crate::model::Conditional) -> Option<LetterPlan> {
        let name = c.letter.as_ref()?;
        let sign_within = match &c.sign_within {
            Some(raw) => self.limit(raw, false)?,
            None => Limit::working_days(crate::runtime::letter::DEFAULT_SIGN_WITHIN),
        };
        let Some(src) = self.ctx.documents.get(&name.value) else {
            self.fail(
                name.pos,
                format!(
                    "the commitment letter's document template `{}` is not loaded (workflows/documents/{}.txt)",
                    name.value, name.value
                ),
            );
            return None;
        };
        match template::parse(src) {
            Ok(t) => Some(LetterPlan {
                name: SmolStr::new(&name.value),
                template: t,
                sign_within,
            }),
            Err(e) => {
                self.fail(name.pos, format!("document template `{}`: {e}", name.value));
                None
            }
        }
    }

    fn expr(&mut self, src: &crate::span::Sp<String>) -> Option<Expr> {
        match Expr::parse_with_fields(src, &self.wf.fields) {
            Ok(e) => Some(e),
            Err(e) => {
                self.fail(src.pos, e);
                None
            }
        }
    }

    fn assignee(&mut self, a: &Assignee) -> Option<AssigneePlan> {
        if let Some(r) = &a.role {
            return Some(AssigneePlan::Party(Party::Role(SmolStr::new(&r.value))));
        }
        if let Some(d) = &a.department {
            return Some(AssigneePlan::Party(Party::Department(SmolStr::new(
                &d.value,
            ))));
        }
        if let Some(u) = &a.user {
            return Some(AssigneePlan::Party(Party::User(SmolStr::new(&u.value))));
        }
        if let Some(f) = &a.service_officer {
            return Some(AssigneePlan::ServiceOfficer(SmolStr::new(&f.value)));
        }
        if let Some(r) = &a.rule {
            return self.expr(r).map(AssigneePlan::Rule);
        }
        None
    }

    /// Per-channel limits of a base limit and a node's `channel_limits` overrides.
    fn channel_limits(
        &mut self,
        base: Option<Limit>,
        overrides: &[crate::model::ChannelLimit],
        apply_same_day: bool,
        scales: &[(Option<f64>, bool)],
    ) -> ChannelLimits {
        let mut out = Vec::with_capacity(scales.len() + 1);
        out.push(base);
        for (c, (scale, same_day)) in scales.iter().enumerate() {
            let cid = self.wf.channels.get(c).map(|ch| ch.id.value.as_str());
            let over = overrides
                .iter()
                .find(|o| Some(o.channel.value.as_str()) == cid)
                .cloned();
            let l = if let Some(o) = over {
                self.limit(&o.limit, false)
            } else if *same_day && apply_same_day {
                Some(Limit {
                    amount: 0,
                    unit: Unit::WorkingDays,
                })
            } else {
                base.map(|b| match scale {
                    Some(s) => {
                        let x = (f64::from(b.amount) * s - 1e-9).ceil().max(1.0);
                        Limit {
                            amount: x as u32,
                            unit: b.unit,
                        }
                    }
                    None => b,
                })
            };
            out.push(l);
        }
        ChannelLimits(out)
    }

    fn plan(mut self) -> Result<Plan, Vec<Diagnostic>> {
        let wf = self.wf;
        let scales: Vec<(Option<f64>, bool)> = wf
            .channels
            .iter()
            .map(|c| {
                let s = c
                    .limit_scale
                    .as_ref()
                    .and_then(|s| parse_share_or_more(&s.value));
                (s, c.same_day)
            })
            .collect();

        let stage_ix = |id: &str| wf.stages.iter().position(|s| s.id.value == id);
        let mut nodes = Vec::with_capacity(wf.nodes.len());
        for n in &wf.nodes {
            let stage = match &n.stage {
                Some(s) => match stage_ix(&s.value) {
                    Some(i) => Some(i),
                    None => {
                        self.fail(s.pos, format!("unknown stage `{}`", s.value));
                        None
                    }
                },
                None => None,
            };
            let next = n.next.as_ref().and_then(|x| self.node_ref(x));
            let assignee = n.assignee.as_ref().and_then(|a| self.assignee(a));
            let mut actions: Vec<Action> = n.actions.iter().map(|a| a.value).collect();
            if actions.is_empty() {
                actions = match n.ty.value {
                    // A parallel step's branches are departments' own reviews: they may also
                    // delegate, add a co-signer and stop the clock for an expert review.
                    NodeType::Parallel => vec![
                        Action::Approve,
                        Action::Reject,
                        Action::Comment,
                        Action::Delegate,
                        Action::Cosign,
                        Action::Suspend,
                    ],
                    _ => vec![Action::Approve, Action::Reject, Action::Comment],
                };
            }
            let base = n.limit.as_ref().and_then(|l| self.limit(l, false));
            let task_like = matches!(n.ty.value, NodeType::Task | NodeType::Parallel);
            let limits = self.channel_limits(base, &n.channel_limits, task_like, &scales);
            let conditional = match &n.conditional {
                Some(c) => {
                    let limit = self
                        .limit(&c.limit, false)
                        .unwrap_or(Limit::working_days(1));
                    let verify_by = c.verify_by.as_ref().and_then(|a| self.assignee(a));
                    let letter = self.letter(c);
                    Some(ConditionalPlan {
                        waivable: c.waivable.iter().map(|m| SmolStr::new(&m.value)).collect(),
                        limit,
                        on_breach: c.on_breach.iter().map(|b| b.value).collect(),
                        verify_by,
                        letter,
                    })
                }
                None => None,
            };
            let reject_to = n
                .reject_to
                .iter()
                .filter_map(|r| self.node_ref(r))
                .collect();
            let on_reject = n.on_reject.as_ref().and_then(|r| self.node_ref(r));
            let mut branches = Vec::with_capacity(n.branches.len());
            for b in &n.branches {
                let assignee = match &b.assignee {
                    Some(a) => self.assignee(a),
                    None => None,
                }
                .unwrap_or_else(|| {
                    AssigneePlan::Party(Party::Department(SmolStr::new(&b.department.value)))
                });
                let bl = b.limit.as_ref().and_then(|l| self.limit(l, false));
                let limits = self.channel_limits(bl, &[], true, &scales);
                let when = b.when.as_ref().and_then(|w| self.expr(w));
                branches.push(BranchPlan {
                    id: SmolStr::new(&b.id.value),
                    department: SmolStr::new(&b.department.value),
                    assignee,
                    limits,
                    when,
                });
            }
            let join = match &n.join {
                Some(j) => {
                    let share = match &j.share {
                        Some(s) => match parse_share(s) {
                            Ok(x) => x,
                            Err(e) => {
                                self.fail(s.pos, e);
                                1.0
                            }
                        },
                        None => 1.0,
                    };
                    JoinPlan {
                        policy: j.policy.value,
                        share,
                        on_reject: j.on_reject,
                    }
                }
                None => JoinPlan {
                    policy: JoinPolicy::All,
                    share: 1.0,
                    on_reject: RejectPolicy::Immediate,
                },
            };
            let mut routes = Vec::with_capacity(n.routes.len());
            for r in &n.routes {
                let when = r.when.as_ref().and_then(|w| self.expr(w));
                if let Some(to) = self.node_ref(&r.to) {
                    routes.push((when, to));
                }
            }
            let wait = n.wait.as_ref().and_then(|l| self.limit(l, false));
            let wait_until = match &n.wait_until {
                Some(d) => match crate::calendar::DateSpec::parse(&d.value) {
                    Ok(x) => Some(x),
                    Err(e) => {
                        self.fail(d.pos, e);
                        None
                    }
                },
                None => None,
            };
            let notify = n.notify.as_ref().map(|s| NotifyPlan {
                to: s.to.iter().filter_map(|a| self.assignee(a)).collect(),
                template: SmolStr::new(&s.template.value),
            });
            nodes.push(NodePlan {
                id: SmolStr::new(&n.id.value),
                kind: n.ty.value,
                stage,
                next,
                assignee,
                actions,
                limits,
                materials: n.materials.iter().map(|m| SmolStr::new(&m.value)).collect(),
                conditional,
                reject_to,
                on_reject,
                extend_by: n.extend_by.iter().map(|r| SmolStr::new(&r.value)).collect(),
                branches,
                lead: n.lead.as_ref().map(|l| SmolStr::new(&l.value)),
                join,
                routes,
                wait,
                wait_until,
                notify,
                outcome: n.outcome.as_ref().map(|o| o.value),
            });
        }

        let mut channels = Vec::with_capacity(wf.channels.len());
        for c in &wf.channels {
            let when = c.when.as_ref().and_then(|w| self.expr(w));
            let skip = c.skip.iter().filter_map(|s| self.node_ref(s)).collect();
            let coordinator = c.coordinator.as_ref().and_then(|a| self.assignee(a));
            channels.push(ChannelPlan {
                id: SmolStr::new(&c.id.value),
                when,
                flag: c.flag.as_ref().map(|f| SmolStr::new(&f.value)),
                skip,
                priority: c.priority,
                coordinator,
            });
        }

        let mut stages = Vec::with_capacity(wf.stages.len());
        for s in &wf.stages {
            let base = s.limit.as_ref().and_then(|l| self.limit(l, false));
            let limits = self.channel_limits(base, &[], false, &scales);
            let mut elements = Vec::with_capacity(s.elements.len());
            for e in &s.elements {
                let owner = wf
                    .elements
                    .iter()
                    .find(|k| k.id.value == e.element.value)
                    .map(|k| SmolStr::new(&k.owner.value));
                let from = match (&e.from, owner) {
                    (Some(f), _) => SmolStr::new(&f.value),
                    (None, Some(o)) => o,
                    (None, None) => {
                        self.fail(
                            e.element.pos,
                            format!("unknown element `{}`", e.element.value),
                        );
                        SmolStr::default()
                    }
                };
                elements.push(StageElementPlan {
                    element: SmolStr::new(&e.element.value),
                    from,
                    within: e.within.as_ref().and_then(|l| self.limit(l, false)),
                    may_carry: e.may_carry,
                    carry_limit: e.carry_limit.as_ref().and_then(|l| self.limit(l, false)),
                    fresh: e.fresh,
                });
            }
            stages.push(StagePlan {
                id: SmolStr::new(&s.id.value),
                department: s.department.as_ref().map(|d| SmolStr::new(&d.value)),
                limits,
                elements,
            });
        }

        let yellow_permille = match parse_share(&wf.warnings.yellow_at) {
            Ok(x) => (x * 1000.0).round() as u32,
            Err(e) => {
                self.fail(wf.warnings.yellow_at.pos, e);
                750
            }
        };
        let mut rungs = Vec::with_capacity(wf.warnings.escalation.len());
        for r in &wf.warnings.escalation {
            let after = self.limit(&r.after, true).unwrap_or(Limit::working_days(0));
            let to = r.to.as_ref().and_then(|a| self.assignee(a));
            rungs.push(RungPlan {
                after,
                action: r.action.value,
                to,
            });
        }

        let mut rules: Vec<Vec<RulePlan>> = vec![Vec::new(); NOTIFICATION_KINDS];
        for r in &wf.notifications {
            let to = r.to.iter().filter_map(|a| self.assignee(a)).collect();
            let mut via: Vec<Delivery> = r.via.iter().map(|v| v.value).collect();
            if via.is_empty() {
                via.push(Delivery::Log);
            }
            let template = r
                .template
                .as_ref()
                .map(|t| SmolStr::new(&t.value))
                .unwrap_or_else(|| SmolStr::new(default_template(r.on.value)));
            if let Some(slot) = rules.get_mut(notification_ix(r.on.value)) {
                slot.push(RulePlan { to, via, template });
            }
        }

        let start = match self.index.get(wf.start.value.as_str()) {
            Some(ix) => ix.index(),
            None => {
                self.fail(
                    wf.start.pos,
                    format!("unknown start node `{}`", wf.start.value),
                );
                0
            }
        };

        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        Ok(Plan {
            start,
            nodes,
            channels,
            stages,
            yellow_permille,
            rungs,
            escalate: wf.warnings.escalate.iter().map(|e| e.value).collect(),
            materials: wf
                .materials
                .iter()
                .map(|m| (SmolStr::new(&m.id.value), m.red_line.value))
                .collect(),
            role_department: wf
                .roles
                .iter()
                .filter_map(|r| {
                    r.department
                        .as_ref()
                        .map(|d| (SmolStr::new(&r.id.value), SmolStr::new(&d.value)))
                })
                .collect(),
            departments: wf
                .departments
                .iter()
                .map(|d| {
                    (
                        SmolStr::new(&d.id.value),
                        DepartmentPlan {
                            supervisor: d.supervisor.as_ref().map(|s| SmolStr::new(&s.value)),
                            leader: d.leader.as_ref().map(|s| SmolStr::new(&s.value)),
                        },
                    )
                })
                .collect(),
            elements: wf
                .elements
                .iter()
                .map(|k| {
                    (
                        SmolStr::new(&k.id.value),
                        ElementKindPlan {
                            owner: SmolStr::new(&k.owner.value),
                            fields: k
                                .fields
                                .iter()
                                .map(|f| (SmolStr::new(&f.id.value), f.ty.value, f.required))
                                .collect(),
                            attach_in: k.attach_in.iter().map(|s| SmolStr::new(&s.value)).collect(),
                        },
                    )
                })
                .collect(),
            fields: wf
                .fields
                .iter()
                .map(|f| {
                    (
                        SmolStr::new(&f.id.value),
                        f.ty.value,
                        f.required,
                        f.values.iter().map(|v| SmolStr::new(&v.value)).collect(),
                    )
                })
                .collect(),
            user_fields: wf
                .fields
                .iter()
                .filter(|f| f.ty.value == FieldType::User)
                .map(|f| SmolStr::new(&f.id.value))
                .collect(),
            rules,
        })
    }
}

/// A channel's `limit_scale`: a share such as `50%`. Values above 100% (lengthening) are not a
/// green channel's business and validation rejects them; they are read as "no scaling" here.
fn parse_share_or_more(s: &str) -> Option<f64> {
    parse_share(s).ok()
}

/// The template a notification kind uses when its rule names none.
pub fn default_template(on: NotificationEvent) -> &'static str {
    use NotificationEvent as N;
    match on {
        N::TaskAssigned => "task_assigned",
        N::Yellow => "yellow_warning",
        N::Overdue => "overdue_alert",
        N::Escalation => "escalation",
        N::Supervise => "supervise",
        N::PromiseDue => "promise_due",
        N::PromiseBreach => "promise_breach",
        N::GreenChannel => "green_channel",
        N::Urge => "urge",
        N::Cc => "cc",
        N::Report => "report",
        N::DeadlineMoved => "deadline_moved",
    }
}
