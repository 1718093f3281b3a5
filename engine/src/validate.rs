//! Validation of a workflow: every rule broken, each with a code and a position.
//!
//! Reading YAML ([`crate::parse`]) only fails on syntax and shapes; everything the types cannot
//! say (references, graph shape, limits, conditions, what belongs to which node type) is checked
//! here, and *all* problems are reported at once so a policy officer fixes a file in one pass.
//!
//! Every rule is a [`Rule`] in [`RULES`] (code, severity, title, help); `docs/diagnostics.md`
//! documents the same table and a test keeps the two in step. Each rule is one small method of
//! [`Validator`], and every finding goes through the one [`Validator::report`] helper.
//!
//! To avoid a cascade of follow-on errors, graph checks (reachability, reaching an end, reject
//! targets being earlier) ignore references that are already reported as unknown.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::diag::{Diagnostic, Severity};
use crate::expr::{self, ExprError, ExprType};
use crate::limit::{Limit, parse_share};
use crate::model::{
    Action, Assignee, Branch, Channel, DocumentSpec, FieldDef, FieldType, JoinPolicy, Node,
    NodeType, RawLimit, Stage, Workflow,
};
use crate::span::{Pos, Sp};
use crate::template;

/// What validation needs to know from outside the file.
#[derive(Debug, Clone, Default)]
pub struct ValidateContext {
    /// Ids of the calendars that exist (files in `workflows/calendars/`); empty means "do not
    /// check calendars" (the loader reports a missing calendar directory itself).
    pub calendars: Vec<String>,
    /// Names of the message templates that exist (files in `workflows/templates/`); empty means
    /// "do not check templates".
    pub templates: Vec<String>,
    /// The document templates (files `workflows/documents/<name>.txt`: commitment letters,
    /// official documents), name → text; empty means "do not check document templates".
    pub documents: BTreeMap<String, String>,
}

/// One validation rule: a stable code and what to tell the user.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    /// What the rule checks, one line (the first column of `docs/diagnostics.md`).
    pub title: &'static str,
    /// How to fix a breach, shown as `= help:` under the diagnostic.
    pub help: &'static str,
}

const fn error(code: &'static str, title: &'static str, help: &'static str) -> Rule {
    Rule {
        code,
        severity: Severity::Error,
        title,
        help,
    }
}

const fn warning(code: &'static str, title: &'static str, help: &'static str) -> Rule {
    Rule {
        code,
        severity: Severity::Warning,
        title,
        help,
    }
}

pub const YAML_SYNTAX: Rule = error(
    "E001",
    "the file is not valid YAML, or a key or shape is wrong",
    "check indentation, quoting and key names against workflows/schema.json",
);
pub const DUPLICATE_ID: Rule = error(
    "E002",
    "two things of the same kind share an id",
    "ids must be unique within their list; rename one of them",
);
pub const UNKNOWN_NODE: Rule = error(
    "E003",
    "a reference to a node that does not exist",
    "use the `id` of a node declared under `nodes:`",
);
pub const UNKNOWN_ROLE: Rule = error(
    "E004",
    "a reference to a role that does not exist",
    "declare the role under `roles:` or use the id of an existing one",
);
pub const UNKNOWN_DEPARTMENT: Rule = error(
    "E005",
    "a reference to a department that does not exist",
    "declare the department under `departments:` or use the id of an existing one",
);
pub const UNKNOWN_MATERIAL: Rule = error(
    "E006",
    "a reference to a material that does not exist",
    "declare the material under `materials:` or use the id of an existing one",
);
pub const UNKNOWN_ELEMENT: Rule = error(
    "E007",
    "a reference to an element kind that does not exist",
    "declare the element under `elements:` or use the id of an existing one",
);
pub const UNKNOWN_STAGE: Rule = error(
    "E008",
    "a reference to a stage that does not exist",
    "declare the stage under `stages:` or use the id of an existing one",
);
pub const UNKNOWN_CHANNEL: Rule = error(
    "E009",
    "a reference to a green channel that does not exist",
    "declare the channel under `channels:` or use the id of an existing one",
);
pub const UNKNOWN_CALENDAR: Rule = error(
    "E010",
    "the workflow's calendar does not exist",
    "calendars are the files workflows/calendars/<id>.yaml; use one of their names",
);
pub const UNKNOWN_TEMPLATE: Rule = error(
    "E011",
    "a message template that does not exist",
    "templates are the files workflows/templates/<name>.hbs; use one of their names",
);
pub const UNKNOWN_FIELD: Rule = error(
    "E012",
    "a reference to a project field that does not exist",
    "declare the field under `fields:` or use the id of an existing one",
);
pub const FIELD_TYPE: Rule = error(
    "E013",
    "a project field of the wrong type for where it is used",
    "a channel `flag` must name a `bool` field; a `service_officer` must name a `user` field",
);
pub const UNREACHABLE: Rule = error(
    "E014",
    "a node that no path from `start` reaches",
    "link it from another node's `next`/`routes`, or delete it",
);
pub const NO_END: Rule = error(
    "E015",
    "a node from which no `end` node can be reached",
    "give every path a way on to an `end` node (check `next`, `routes` and loops)",
);
pub const JOIN_WITHOUT_FORK: Rule = error(
    "E016",
    "a `join` on a node that is not a parallel step",
    "only a `type: parallel` node fans out, so only it has a `join`; remove the join or make the node parallel",
);
pub const TOO_FEW_BRANCHES: Rule = error(
    "E017",
    "a parallel step with fewer than two branches",
    "a parallel step fans out to at least two departments; with one, use a `task`",
);
pub const LEAD_NOT_BRANCH: Rule = error(
    "E018",
    "a parallel step's `lead` is not one of its branches",
    "set `lead` to the `id` of one of the step's branches",
);
pub const VOTE_SHARE: Rule = error(
    "E019",
    "a vote join without a valid `share`",
    "a `policy: vote` join needs `share:` above 0 and at most 100%, e.g. `2/3` or `67%`",
);
pub const RED_LINE_WAIVABLE: Rule = error(
    "E020",
    "a red-line material in a `conditional.waivable` list",
    "red-line (红线) materials can never be waived under 容缺; remove it from `waivable`",
);
pub const WAIVABLE_NOT_NEEDED: Rule = error(
    "E021",
    "a waivable material that the step does not ask for",
    "list the material under the step's `materials:` (or a branch's), or remove it from `waivable`",
);
pub const BAD_LIMIT: Rule = error(
    "E022",
    "a time limit that is zero, negative or unreadable",
    "write a positive number and a unit: `10wd` (working days), `5d` (natural days), `8h` (hours); escalation `after` may be `0wd`",
);
pub const BAD_YELLOW: Rule = error(
    "E023",
    "`warnings.yellow_at` is not a percentage between 0 and 100",
    "write a share of the limit strictly between 0% and 100%, e.g. `75%`",
);
pub const EXPR_SYNTAX: Rule = error(
    "E024",
    "a condition or assignee rule that is not valid CEL",
    "write a CEL expression over `project.<field>`, e.g. `project.tier in [\"重中之重\"]`",
);
pub const EXPR_TYPE: Rule = error(
    "E025",
    "a condition or assignee rule that does not type-check against the project's fields",
    "compare fields with values of their own type; enum literals must be among the field's `values`; a condition must give true or false",
);
pub const FIELD_NOT_FOR_TYPE: Rule = error(
    "E026",
    "a node sets a field that its type does not use",
    "remove the field, or change the node's `type`",
);
pub const MISSING_FOR_TYPE: Rule = error(
    "E027",
    "a node lacks a field its type requires",
    "task: assignee, actions, next; parallel: branches, next; gateway: routes; wait: wait, next; notify: notify, next; end: outcome",
);
pub const DEFAULT_ROUTE: Rule = error(
    "E028",
    "a gateway's default route (without `when`) is not last, or there are several",
    "routes are tried in order, so the one route without `when` must be the last",
);
pub const REJECT_NOT_EARLIER: Rule = error(
    "E029",
    "`reject_to` names a node that is not earlier on a path to this one",
    "驳回 goes back: name a node from which this one can be reached",
);
pub const CONDITIONAL_WITHOUT_BLOCK: Rule = error(
    "E030",
    "a step allows the `conditional` action but has no `conditional:` block",
    "add `conditional: {waivable: [...], limit: 20wd}` or remove the action",
);
pub const CHANNEL_WITHOUT_TRIGGER: Rule = error(
    "E031",
    "a green channel with neither `when` nor `flag`",
    "say when the channel applies: a condition (`when:`) and/or a bool project field (`flag:`)",
);
pub const CHANNEL_SKIPS_ENDPOINT: Rule = error(
    "E032",
    "a green channel skips the start node or an end node",
    "only intermediate steps can be skipped",
);
pub const BAD_SCALE: Rule = error(
    "E033",
    "a channel's `limit_scale` is not a percentage above 0 and at most 100",
    "write the share of every limit the channel keeps, e.g. `50%`",
);
pub const ENUM_WITHOUT_VALUES: Rule = error(
    "E034",
    "an `enum` field without `values`",
    "list the allowed values: `values: [重中之重, 省级重大, 一般]`",
);
pub const BAD_CRON: Rule = error(
    "E035",
    "a report's cron expression is not valid",
    "five fields `minute hour day month weekday`, e.g. `0 9 * * MON` (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7)",
);
pub const CARRY_WITHOUT_LIMIT: Rule = error(
    "E036",
    "a stage element `may_carry` without a `carry_limit`",
    "an element carried past the stage's close needs its own deadline: add `carry_limit: 30wd`",
);
pub const ASSIGNEE_SHAPE: Rule = error(
    "E037",
    "an assignee that does not name exactly one of role, department, user, service_officer, rule",
    "set exactly one key, e.g. `{role: fgw_reviewer}`",
);
pub const END_WITH_NEXT: Rule = error(
    "E038",
    "an end node with `next`",
    "an `end` node finishes the instance; remove `next` or change the type",
);
pub const ON_REJECT_NOT_END: Rule = error(
    "E039",
    "`on_reject` names a node that is not an `end` node",
    "a final rejection ends the instance: point `on_reject` at an `end` node (or use `reject_to` to go back)",
);
pub const RUNGS_OUT_OF_ORDER: Rule = error(
    "E040",
    "escalation rungs whose `after` goes down",
    "list rungs in the order they fire, each `after` at least the previous one",
);
pub const BAD_WORKFLOW_ID: Rule = error(
    "E041",
    "a workflow id that cannot be used in a URL",
    "use lower-case ASCII letters, digits, `-` and `_`, starting with a letter",
);
pub const DUPLICATE_WORKFLOW: Rule = error(
    "E042",
    "two workflow files declare the same workflow `id` (reported by the loader)",
    "each file is one workflow; give each a distinct `id` (versions of one workflow are published, not kept side by side)",
);
pub const OPTIONAL_FIELD_IN_ASSIGNEE: Rule = error(
    "E043",
    "a task's assignee depends on an optional project field that a project may leave unset",
    "make the field `required: true`, or test it in the rule: `has(project.officer) ? project.officer : \"role:fgw_reviewer\"`",
);
pub const BAD_WAIT_UNTIL: Rule = error(
    "E044",
    "a `wait_until` that is not a date, or set beside `wait`",
    "write `wait_until: \"01-10\"` (the next 1 月 10 日) or `wait_until: \"2027-01-10\"` (that day), and drop `wait`",
);
pub const ELEMENT_NOT_IN_STAGE: Rule = error(
    "E045",
    "a stage requires an element that its `attach_in` does not allow in that stage",
    "add the stage to the element's `attach_in`, or require the element in a stage it lists",
);
pub const UNKNOWN_DOCUMENT_TEMPLATE: Rule = error(
    "E046",
    "a document template that does not exist",
    "document templates are the files workflows/documents/<name>.txt; use one of their names",
);
pub const BAD_DOCUMENT_TEMPLATE: Rule = error(
    "E047",
    "a document template that does not parse (a `{{` not closed, or not around a name)",
    "write each placeholder as `{{ name }}`, a variable name of letters, digits and `_`",
);
pub const UNPROVIDED_TEMPLATE_VARIABLE: Rule = error(
    "E048",
    "a document template uses a variable that this document does not provide",
    "use one of the variables the message lists, or remove the placeholder from the template",
);
pub const DOCUMENT_NUMBER_WITHOUT_SEQ: Rule = error(
    "E049",
    "a `document_number` pattern without `{{seq}}`, or that is not a template",
    "write the 文号 with the year and the number in it, e.g. `document_number: \"皖发改投资〔{{year}}〕{{seq}}号\"`",
);
pub const STAGE_LADDER_WITHOUT_DEPARTMENT: Rule = warning(
    "W007",
    "the escalation ladder covers stages, but a stage with a limit names no `department`",
    "give the stage `department: fgw` so its supervisor and leader are reached, or give the rungs a `to`",
);
pub const BLOCK_WITHOUT_CONDITIONAL: Rule = warning(
    "W001",
    "a `conditional:` block on a step that does not allow the `conditional` action",
    "add `conditional` to the step's `actions`, or remove the block",
);
pub const NO_DEFAULT_ROUTE: Rule = warning(
    "W002",
    "a gateway without a default route",
    "an instance that matches no route stops at the gateway; add a last route without `when`",
);
pub const SHARE_WITHOUT_VOTE: Rule = warning(
    "W003",
    "a `share` on a join whose policy is not `vote`",
    "`share` only applies to `policy: vote`; remove it or change the policy",
);
pub const VALUES_WITHOUT_ENUM: Rule = warning(
    "W004",
    "`values` on a field that is not an `enum`",
    "only enum fields have a list of values; remove them or make the field `type: enum`",
);
pub const REJECT_TO_WITHOUT_REJECT: Rule = warning(
    "W005",
    "`reject_to` or `on_reject` on a step that does not allow the `reject` action",
    "add `reject` to the step's `actions`, or remove the targets",
);
pub const LIMIT_WITHOUT_CARRY: Rule = warning(
    "W006",
    "a `carry_limit` on a stage element that may not be carried",
    "set `may_carry: true` or remove `carry_limit`",
);

/// Every rule, in code order. `docs/diagnostics.md` lists the same.
pub const RULES: &[Rule] = &[
    YAML_SYNTAX,
    DUPLICATE_ID,
    UNKNOWN_NODE,
    UNKNOWN_ROLE,
    UNKNOWN_DEPARTMENT,
    UNKNOWN_MATERIAL,
    UNKNOWN_ELEMENT,
    UNKNOWN_STAGE,
    UNKNOWN_CHANNEL,
    UNKNOWN_CALENDAR,
    UNKNOWN_TEMPLATE,
    UNKNOWN_FIELD,
    FIELD_TYPE,
    UNREACHABLE,
    NO_END,
    JOIN_WITHOUT_FORK,
    TOO_FEW_BRANCHES,
    LEAD_NOT_BRANCH,
    VOTE_SHARE,
    RED_LINE_WAIVABLE,
    WAIVABLE_NOT_NEEDED,
    BAD_LIMIT,
    BAD_YELLOW,
    EXPR_SYNTAX,
    EXPR_TYPE,
    FIELD_NOT_FOR_TYPE,
    MISSING_FOR_TYPE,
    DEFAULT_ROUTE,
    REJECT_NOT_EARLIER,
    CONDITIONAL_WITHOUT_BLOCK,
    CHANNEL_WITHOUT_TRIGGER,
    CHANNEL_SKIPS_ENDPOINT,
    BAD_SCALE,
    ENUM_WITHOUT_VALUES,
    BAD_CRON,
    CARRY_WITHOUT_LIMIT,
    ASSIGNEE_SHAPE,
    END_WITH_NEXT,
    ON_REJECT_NOT_END,
    RUNGS_OUT_OF_ORDER,
    BAD_WORKFLOW_ID,
    DUPLICATE_WORKFLOW,
    OPTIONAL_FIELD_IN_ASSIGNEE,
    BAD_WAIT_UNTIL,
    ELEMENT_NOT_IN_STAGE,
    UNKNOWN_DOCUMENT_TEMPLATE,
    BAD_DOCUMENT_TEMPLATE,
    UNPROVIDED_TEMPLATE_VARIABLE,
    DOCUMENT_NUMBER_WITHOUT_SEQ,
    BLOCK_WITHOUT_CONDITIONAL,
    NO_DEFAULT_ROUTE,
    SHARE_WITHOUT_VOTE,
    VALUES_WITHOUT_ENUM,
    REJECT_TO_WITHOUT_REJECT,
    LIMIT_WITHOUT_CARRY,
    STAGE_LADDER_WITHOUT_DEPARTMENT,
];

impl Rule {
    /// A diagnostic for this rule, with its help.
    pub fn at(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        let d = match self.severity {
            Severity::Error => Diagnostic::error(self.code, pos, message),
            Severity::Warning => Diagnostic::warning(self.code, pos, message),
        };
        d.with_help(self.help)
    }
}

/// Checks a workflow against every rule. Diagnostics come sorted by position.
pub fn validate(workflow: &Workflow, ctx: &ValidateContext) -> Vec<Diagnostic> {
    let mut v = Validator::new(workflow, ctx);
    v.run();
    let mut diags = v.diags;
    diags.sort_by_key(|d| (d.line, d.col));
    diags
}

/// The ids declared in the file, for resolving references.
struct Names<'w> {
    nodes: HashMap<&'w str, &'w Node>,
    fields: HashMap<&'w str, &'w FieldDef>,
    roles: HashSet<&'w str>,
    departments: HashSet<&'w str>,
    materials: HashMap<&'w str, bool>,
    elements: HashSet<&'w str>,
    stages: HashSet<&'w str>,
    channels: HashSet<&'w str>,
}

impl<'w> Names<'w> {
    fn of(w: &'w Workflow) -> Self {
        // First declaration wins, as duplicates are reported anyway.
        fn first<'a, T>(items: &'a [T], id: impl Fn(&'a T) -> &'a str) -> HashMap<&'a str, &'a T> {
            let mut m = HashMap::with_capacity(items.len());
            for it in items {
                m.entry(id(it)).or_insert(it);
            }
            m
        }
        Names {
            nodes: first(&w.nodes, |n| n.id.value.as_str()),
            fields: first(&w.fields, |f| f.id.value.as_str()),
            roles: w.roles.iter().map(|r| r.id.value.as_str()).collect(),
            departments: w.departments.iter().map(|d| d.id.value.as_str()).collect(),
            materials: first(&w.materials, |m| m.id.value.as_str())
                .into_iter()
                .map(|(k, m)| (k, m.red_line.value))
                .collect(),
            elements: w.elements.iter().map(|e| e.id.value.as_str()).collect(),
            stages: w.stages.iter().map(|s| s.id.value.as_str()).collect(),
            channels: w.channels.iter().map(|c| c.id.value.as_str()).collect(),
        }
    }
}

struct Validator<'w> {
    wf: &'w Workflow,
    ctx: &'w ValidateContext,
    names: Names<'w>,
    diags: Vec<Diagnostic>,
}

impl<'w> Validator<'w> {
    fn new(wf: &'w Workflow, ctx: &'w ValidateContext) -> Self {
        Validator {
            wf,
            ctx,
            names: Names::of(wf),
            diags: Vec::new(),
        }
    }

    /// The one way a finding is recorded.
    fn report(&mut self, rule: Rule, pos: Pos, message: impl Into<String>) {
        self.diags.push(rule.at(pos, message));
    }

    fn run(&mut self) {
        self.workflow_header();
        self.duplicates();
        self.fields();
        self.people();
        self.elements();
        self.stages();
        self.channels();
        self.warnings();
        for node in &self.wf.nodes {
            self.node(node);
        }
        self.graph();
        self.reports();
        self.notifications();
    }

    // --- workflow level ---------------------------------------------------------------------

    fn workflow_header(&mut self) {
        let id = &self.wf.id;
        let ok = id
            .value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            self.report(
                BAD_WORKFLOW_ID,
                id.pos,
                format!("workflow id `{}` cannot be used in a URL", id.value),
            );
        }
        let cal = &self.wf.calendar;
        if !self.ctx.calendars.is_empty() && !self.ctx.calendars.contains(&cal.value) {
            self.report(
                UNKNOWN_CALENDAR,
                cal.pos,
                format!(
                    "unknown calendar `{}`; the calendars are: {}",
                    cal.value,
                    self.ctx.calendars.join(", ")
                ),
            );
        }
        if !self.names.nodes.contains_key(self.wf.start.value.as_str()) {
            self.unknown_node(&self.wf.start, "`start`");
        }
        self.document_number();
    }

    fn duplicates(&mut self) {
        let w = self.wf;
        self.unique("node", w.nodes.iter().map(|n| &n.id));
        self.unique("field", w.fields.iter().map(|f| &f.id));
        self.unique("role", w.roles.iter().map(|r| &r.id));
        self.unique("department", w.departments.iter().map(|d| &d.id));
        self.unique("material", w.materials.iter().map(|m| &m.id));
        self.unique("element", w.elements.iter().map(|e| &e.id));
        self.unique("stage", w.stages.iter().map(|s| &s.id));
        self.unique("channel", w.channels.iter().map(|c| &c.id));
        self.unique("report", w.reports.iter().map(|r| &r.id));
        for e in &w.elements {
            let scope = format!(" in element `{}`", e.id.value);
            self.unique_in("field", &scope, e.fields.iter().map(|f| &f.id));
        }
        for n in &w.nodes {
            let scope = format!(" in step `{}`", n.id.value);
            self.unique_in("branch", &scope, n.branches.iter().map(|b| &b.id));
        }
    }

    fn unique<'a>(&mut self, kind: &str, ids: impl Iterator<Item = &'a Sp<String>>) {
        self.unique_in(kind, "", ids);
    }

    /// `scope` says where, for ids unique only within a parent (` in step `x``).
    fn unique_in<'a>(
        &mut self,
        kind: &str,
        scope: &str,
        ids: impl Iterator<Item = &'a Sp<String>>,
    ) {
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for id in ids {
            if let Some(first) = seen.get(id.value.as_str()) {
                let msg = format!(
                    "duplicate {kind} id `{}`{scope} (first declared at line {})",
                    id.value, first.line
                );
                self.report(DUPLICATE_ID, id.pos, msg);
            } else {
                seen.insert(&id.value, id.pos);
            }
        }
    }

    fn fields(&mut self) {
        for f in &self.wf.fields {
            self.field_def(f);
        }
        for e in &self.wf.elements {
            for f in &e.fields {
                self.field_def(f);
            }
        }
    }

    fn field_def(&mut self, f: &FieldDef) {
        if f.ty.value == FieldType::Enum && f.values.is_empty() {
            let msg = format!("enum field `{}` has no `values`", f.id.value);
            self.report(ENUM_WITHOUT_VALUES, f.ty.pos, msg);
        }
        if f.ty.value != FieldType::Enum
            && let Some(v) = f.values.first()
        {
            let msg = format!("field `{}` is not an enum but has `values`", f.id.value);
            self.report(VALUES_WITHOUT_ENUM, v.pos, msg);
        }
    }

    fn people(&mut self) {
        for d in &self.wf.departments {
            for r in [&d.supervisor, &d.leader].into_iter().flatten() {
                self.role_ref(r, &format!("department `{}`", d.id.value));
            }
        }
        for r in &self.wf.roles {
            if let Some(d) = &r.department {
                self.department_ref(d, &format!("role `{}`", r.id.value));
            }
        }
    }

    fn elements(&mut self) {
        for e in &self.wf.elements {
            self.department_ref(&e.owner, &format!("owner of element `{}`", e.id.value));
            for s in &e.attach_in {
                if !self.names.stages.contains(s.value.as_str()) {
                    let msg = format!(
                        "`attach_in` of element `{}` names unknown stage `{}`",
                        e.id.value, s.value
                    );
                    self.report(UNKNOWN_STAGE, s.pos, msg);
                }
            }
        }
    }

    fn stages(&mut self) {
        for s in &self.wf.stages {
            self.stage(s);
        }
    }

    fn stage(&mut self, s: &Stage) {
        let who = format!("stage `{}`", s.id.value);
        if let Some(l) = &s.limit {
            self.limit(l, &who, false);
        }
        if let Some(d) = &s.department {
            self.department_ref(d, &format!("`department` of {who}"));
        }
        let ladder = &self.wf.warnings;
        let covered = ladder
            .escalate
            .iter()
            .any(|e| e.value == crate::model::Escalated::Stage);
        let reaches_department = ladder
            .escalation
            .iter()
            .any(|r| r.to.is_none() && r.action.value != crate::model::RungAction::Remind);
        if covered
            && reaches_department
            && s.department.is_none()
            && let Some(l) = &s.limit
        {
            let msg = format!(
                "{who} has a limit under the escalation ladder but no `department`: its supervisor and leader rungs reach nobody"
            );
            self.report(STAGE_LADDER_WITHOUT_DEPARTMENT, l.pos, msg);
        }
        for el in &s.elements {
            let kind = self
                .wf
                .elements
                .iter()
                .find(|k| k.id.value == el.element.value);
            if let Some(k) = kind
                && !k.attach_in.is_empty()
                && !k.attach_in.iter().any(|a| a.value == s.id.value)
            {
                let allowed: Vec<&str> = k.attach_in.iter().map(|a| a.value.as_str()).collect();
                let msg = format!(
                    "{who} requires element `{}`, which may be attached only in {}",
                    el.element.value,
                    allowed.join(", ")
                );
                self.report(ELEMENT_NOT_IN_STAGE, el.element.pos, msg);
            }
            if !self.names.elements.contains(el.element.value.as_str()) {
                let msg = format!("{who} requires unknown element `{}`", el.element.value);
                self.report(UNKNOWN_ELEMENT, el.element.pos, msg);
            }
            if let Some(from) = &el.from {
                self.department_ref(from, &format!("element `{}` of {who}", el.element.value));
            }
            if let Some(w) = &el.within {
                self.limit(
                    w,
                    &format!("`within` of element `{}`", el.element.value),
                    false,
                );
            }
            match (&el.carry_limit, el.may_carry) {
                (Some(l), true) => {
                    self.limit(
                        l,
                        &format!("`carry_limit` of `{}`", el.element.value),
                        false,
                    );
                }
                (None, true) => {
                    let msg = format!(
                        "element `{}` of {who} may be carried but has no `carry_limit`",
                        el.element.value
                    );
                    self.report(CARRY_WITHOUT_LIMIT, el.element.pos, msg);
                }
                (Some(l), false) => {
                    let msg = format!(
                        "element `{}` of {who} has a `carry_limit` but `may_carry` is not set",
                        el.element.value
                    );
                    self.report(LIMIT_WITHOUT_CARRY, l.pos, msg);
                }
                (None, false) => {}
            }
        }
    }

    fn channels(&mut self) {
        for c in &self.wf.channels {
            self.channel(c);
        }
    }

    fn channel(&mut self, c: &Channel) {
        let who = format!("channel `{}`", c.id.value);
        if c.when.is_none() && c.flag.is_none() {
            let msg = format!("{who} has neither `when` nor `flag`, so it never applies");
            self.report(CHANNEL_WITHOUT_TRIGGER, c.id.pos, msg);
        }
        if let Some(w) = &c.when {
            self.expression(w, ExprType::Bool, &format!("`when` of {who}"));
        }
        if let Some(flag) = &c.flag {
            self.field_of_type(flag, FieldType::Bool, &format!("`flag` of {who}"));
        }
        if let Some(scale) = &c.limit_scale {
            match percentage(&scale.value) {
                Some(p) if p > 0.0 && p <= 100.0 => {}
                _ => {
                    let msg = format!(
                        "`limit_scale` `{}` of {who} is not a percentage in (0, 100]",
                        scale.value
                    );
                    self.report(BAD_SCALE, scale.pos, msg);
                }
            }
        }
        for s in &c.skip {
            match self.names.nodes.get(s.value.as_str()) {
                None => self.unknown_node(s, &format!("`skip` of {who}")),
                Some(n) if n.ty.value == NodeType::End || s.value == self.wf.start.value => {
                    let msg = format!("{who} skips `{}`, which is the start or an end", s.value);
                    self.report(CHANNEL_SKIPS_ENDPOINT, s.pos, msg);
                }
                Some(_) => {}
            }
        }
        if let Some(a) = &c.coordinator {
            self.assignee(a, c.id.pos, &format!("coordinator of {who}"));
        }
    }

    fn warnings(&mut self) {
        let y = &self.wf.warnings.yellow_at;
        match y
            .value
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
        {
            Some(p) if p > 0.0 && p < 100.0 => {}
            _ => {
                let msg = format!(
                    "`yellow_at` `{}` is not a percentage between 0% and 100%",
                    y.value
                );
                self.report(BAD_YELLOW, y.pos, msg);
            }
        }
        let mut previous: Option<Limit> = None;
        for (i, rung) in self.wf.warnings.escalation.iter().enumerate() {
            let who = format!("escalation rung {}", i + 1);
            let after = self.limit(&rung.after, &format!("`after` of {who}"), true);
            if let (Some(prev), Some(cur)) = (previous, after)
                && prev.unit == cur.unit
                && cur.amount < prev.amount
            {
                let msg = format!("{who} fires after {cur}, before the previous rung ({prev})");
                self.report(RUNGS_OUT_OF_ORDER, rung.after.pos, msg);
            }
            previous = after.or(previous);
            if let Some(to) = &rung.to {
                self.assignee(to, rung.action.pos, &who);
            }
        }
    }

    // --- nodes ------------------------------------------------------------------------------

    fn node(&mut self, n: &Node) {
        self.node_shape(n);
        let who = format!("node `{}`", n.id.value);
        if let Some(s) = &n.stage
            && !self.names.stages.contains(s.value.as_str())
        {
            let msg = format!("{who} is in unknown stage `{}`", s.value);
            self.report(UNKNOWN_STAGE, s.pos, msg);
        }
        if let Some(next) = &n.next {
            self.node_ref(next, &format!("`next` of {who}"));
        }
        if let Some(a) = &n.assignee {
            self.assignee(a, n.id.pos, &format!("assignee of {who}"));
            self.names_someone_always(a, &format!("assignee of {who}"));
        }
        if let Some(l) = &n.limit {
            self.limit(l, &format!("limit of {who}"), false);
        }
        if let Some(w) = &n.wait {
            self.limit(w, &format!("`wait` of {who}"), false);
        }
        if let Some(d) = &n.wait_until {
            if let Err(e) = crate::calendar::DateSpec::parse(&d.value) {
                self.report(BAD_WAIT_UNTIL, d.pos, format!("`wait_until` of {who}: {e}"));
            } else if n.wait.is_some() {
                let msg = format!("{who} sets both `wait` and `wait_until`: keep one");
                self.report(BAD_WAIT_UNTIL, d.pos, msg);
            }
        }
        for cl in &n.channel_limits {
            if !self.names.channels.contains(cl.channel.value.as_str()) {
                let msg = format!(
                    "{who} sets a limit for unknown channel `{}`",
                    cl.channel.value
                );
                self.report(UNKNOWN_CHANNEL, cl.channel.pos, msg);
            }
            self.limit(&cl.limit, &format!("channel limit of {who}"), false);
        }
        for r in &n.extend_by {
            self.role_ref(r, &format!("`extend_by` of {who}"));
        }
        if let Some(d) = &n.document {
            self.document(
                d,
                crate::documents::node_vars(n),
                &format!("the document of {who}"),
            );
        }
        self.materials(n, &who);
        self.reject_targets(n, &who);
        self.parallel(n, &who);
        self.routes(n, &who);
        if let Some(spec) = &n.notify {
            for to in &spec.to {
                self.assignee(to, spec.template.pos, &format!("recipient of {who}"));
            }
            self.template_ref(&spec.template, &who);
        }
    }

    /// Which fields a node of each type uses, and which it must have.
    fn node_shape(&mut self, n: &Node) {
        let ty = n.ty.value;
        let present = present_fields(n);
        for (name, pos) in &present {
            let allowed = match *name {
                "next" => ty != NodeType::End && ty != NodeType::Gateway,
                "assignee" => ty == NodeType::Task,
                // On a parallel node they apply to every branch task.
                "actions" | "extend_by" => matches!(ty, NodeType::Task | NodeType::Parallel),
                "limit" | "channel_limits" | "materials" | "conditional" | "reject_to"
                | "on_reject" => matches!(ty, NodeType::Task | NodeType::Parallel),
                "branches" | "lead" => ty == NodeType::Parallel,
                "join" => true, // reported by its own rule below
                "routes" => ty == NodeType::Gateway,
                "wait" | "wait_until" => ty == NodeType::Wait,
                "notify" => ty == NodeType::Notify,
                "outcome" => ty == NodeType::End,
                // An end's (备案证明, 不予许可决定书) or a task's approval's (批复).
                "document" => matches!(ty, NodeType::End | NodeType::Task),
                _ => true,
            };
            if *name == "next" && ty == NodeType::End {
                let msg = format!("end node `{}` has a `next`", n.id.value);
                self.report(END_WITH_NEXT, *pos, msg);
            } else if !allowed {
                let msg = format!(
                    "`{name}` does not apply to {} node `{}`",
                    type_name(ty),
                    n.id.value
                );
                self.report(FIELD_NOT_FOR_TYPE, *pos, msg);
            }
        }
        if let Some(j) = &n.join
            && ty != NodeType::Parallel
        {
            let msg = format!(
                "`join` on {} node `{}`, which does not fork",
                type_name(ty),
                n.id.value
            );
            self.report(JOIN_WITHOUT_FORK, j.policy.pos, msg);
        }
        let required: &[&str] = match ty {
            NodeType::Task => &["assignee", "actions", "next"],
            NodeType::Parallel => &["branches", "next"],
            NodeType::Gateway => &["routes"],
            NodeType::Wait => &["next"],
            NodeType::Notify => &["notify", "next"],
            NodeType::End => &["outcome"],
        };
        for name in required {
            if !present.iter().any(|(p, _)| p == name) {
                let msg = format!("{} node `{}` has no `{name}`", type_name(ty), n.id.value);
                self.report(MISSING_FOR_TYPE, n.id.pos, msg);
            }
        }
        if ty == NodeType::Wait
            && !present
                .iter()
                .any(|(p, _)| *p == "wait" || *p == "wait_until")
        {
            let msg = format!(
                "wait node `{}` has no `wait` (nor `wait_until`)",
                n.id.value
            );
            self.report(MISSING_FOR_TYPE, n.id.pos, msg);
        }
    }

    fn materials(&mut self, n: &Node, who: &str) {
        let mut needed: HashSet<&str> = HashSet::new();
        let branch_materials = n.branches.iter().flat_map(|b| b.materials.iter());
        for m in n.materials.iter().chain(branch_materials) {
            self.material_ref(m, who);
            needed.insert(&m.value);
        }
        let allows = n.actions.iter().find(|a| a.value == Action::Conditional);
        match (&n.conditional, allows) {
            (None, Some(a)) => {
                let msg = format!("{who} allows `conditional` but has no `conditional:` block");
                self.report(CONDITIONAL_WITHOUT_BLOCK, a.pos, msg);
            }
            // A parallel node without `actions` has the branch defaults, which leave out
            // `conditional`; with a list, the list decides as on a task.
            (Some(c), None) if n.ty.value == NodeType::Task || !n.actions.is_empty() => {
                let msg = format!(
                    "{who} has a `conditional:` block but does not allow the `conditional` action"
                );
                self.report(BLOCK_WITHOUT_CONDITIONAL, c.limit.pos, msg);
            }
            _ => {}
        }
        let Some(c) = &n.conditional else { return };
        for m in &c.waivable {
            match self.names.materials.get(m.value.as_str()) {
                None => self.material_ref(m, who),
                Some(true) => {
                    let msg = format!(
                        "red-line material `{}` is listed as waivable in {who}",
                        m.value
                    );
                    self.report(RED_LINE_WAIVABLE, m.pos, msg);
                }
                Some(false) if !needed.contains(m.value.as_str()) => {
                    let msg = format!(
                        "{who} waives `{}` but does not ask for it in `materials`",
                        m.value
                    );
                    self.report(WAIVABLE_NOT_NEEDED, m.pos, msg);
                }
                Some(false) => {}
            }
        }
        self.limit(&c.limit, &format!("commitment limit of {who}"), false);
        if let Some(l) = &c.letter {
            let what = format!("the commitment letter of {who}");
            self.document_ref(l, crate::runtime::letter::LETTER_VARS, &what);
        }
        if let Some(raw) = &c.sign_within {
            let what = format!("`sign_within` of {who}");
            if let Some(l) = self.limit(raw, &what, false)
                && l.unit != crate::limit::Unit::WorkingDays
            {
                let msg =
                    format!("{what}: the time to sign a letter counts working days, e.g. `3wd`");
                self.report(BAD_LIMIT, raw.pos, msg);
            }
        }
        if let Some(v) = &c.verify_by {
            self.assignee(v, c.limit.pos, &format!("`verify_by` of {who}"));
            self.names_someone_always(v, &format!("`verify_by` of {who}"));
        }
        if let Some(d) = &c.document {
            let what = format!("the pre-approval document of {who}");
            self.document(d, crate::documents::PRE_APPROVAL_VARS, &what);
        }
        if let Some(d) = &c.revocation {
            let what = format!("the revocation document of {who}");
            self.document(d, crate::documents::REVOCATION_VARS, &what);
        }
    }

    /// An official document's issuer and template (every variable it uses one that `known`
    /// provides).
    fn document(&mut self, d: &DocumentSpec, known: &[&str], what: &str) {
        self.department_ref(&d.issuer, &format!("the issuer of {what}"));
        self.document_ref(&d.template, known, what);
    }

    /// The 文号 pattern: a template that numbers (`{{seq}}`).
    fn document_number(&mut self) {
        let Some(p) = &self.wf.document_number else {
            return;
        };
        if !crate::documents::numbers(&p.value) {
            let msg = format!(
                "`document_number` `{}` must be a template with `{{{{seq}}}}` (and no variable but `year` and `seq`): otherwise documents of one year would share a number",
                p.value
            );
            self.report(DOCUMENT_NUMBER_WITHOUT_SEQ, p.pos, msg);
        }
    }

    fn reject_targets(&mut self, n: &Node, who: &str) {
        for r in &n.reject_to {
            self.node_ref(r, &format!("`reject_to` of {who}"));
        }
        if let Some(r) = &n.on_reject {
            match self.names.nodes.get(r.value.as_str()) {
                None => self.unknown_node(r, &format!("`on_reject` of {who}")),
                Some(t) if t.ty.value != NodeType::End => {
                    let msg = format!(
                        "`on_reject` of {who} is `{}`, a {} node, not an end",
                        r.value,
                        type_name(t.ty.value)
                    );
                    self.report(ON_REJECT_NOT_END, r.pos, msg);
                }
                Some(_) => {}
            }
        }
        let allows_reject = n.actions.iter().any(|a| a.value == Action::Reject);
        // A parallel node without `actions` has the branch defaults, which include `reject`.
        let listed = n.ty.value == NodeType::Task || !n.actions.is_empty();
        if listed && !allows_reject {
            let first = n
                .reject_to
                .first()
                .map(|r| r.pos)
                .or(n.on_reject.as_ref().map(|r| r.pos));
            if let Some(pos) = first {
                let msg = format!("{who} names reject targets but does not allow `reject`");
                self.report(REJECT_TO_WITHOUT_REJECT, pos, msg);
            }
        }
    }

    fn parallel(&mut self, n: &Node, who: &str) {
        if n.ty.value != NodeType::Parallel {
            return;
        }
        if n.branches.len() < 2 {
            let msg = format!(
                "parallel {who} has {} branch(es); it needs at least two",
                n.branches.len()
            );
            let pos = n.branches.first().map(|b| b.id.pos).unwrap_or(n.id.pos);
            self.report(TOO_FEW_BRANCHES, pos, msg);
        }
        for b in &n.branches {
            self.branch(b, who);
        }
        if let Some(lead) = &n.lead
            && !n.branches.iter().any(|b| b.id.value == lead.value)
        {
            let ids: Vec<&str> = n.branches.iter().map(|b| b.id.value.as_str()).collect();
            let msg = format!(
                "lead `{}` of {who} is not one of its branches ({})",
                lead.value,
                ids.join(", ")
            );
            self.report(LEAD_NOT_BRANCH, lead.pos, msg);
        }
        if let Some(j) = &n.join {
            match (j.policy.value, &j.share) {
                (JoinPolicy::Vote, None) => {
                    let msg = format!("vote join of {who} has no `share`");
                    self.report(VOTE_SHARE, j.policy.pos, msg);
                }
                (JoinPolicy::Vote, Some(s)) => {
                    if let Err(e) = parse_share(&s.value) {
                        self.report(VOTE_SHARE, s.pos, format!("{e} (join of {who})"));
                    }
                }
                (_, Some(s)) => {
                    let msg = format!("`share` on the join of {who}, whose policy is not `vote`");
                    self.report(SHARE_WITHOUT_VOTE, s.pos, msg);
                }
                (_, None) => {}
            }
        }
    }

    fn branch(&mut self, b: &Branch, who: &str) {
        let bwho = format!("branch `{}` of {who}", b.id.value);
        self.department_ref(&b.department, &bwho);
        if let Some(a) = &b.assignee {
            self.assignee(a, b.id.pos, &bwho);
            self.names_someone_always(a, &bwho);
        }
        if let Some(l) = &b.limit {
            self.limit(l, &format!("limit of {bwho}"), false);
        }
        if let Some(w) = &b.when {
            self.expression(w, ExprType::Bool, &format!("`when` of {bwho}"));
        }
    }

    fn routes(&mut self, n: &Node, who: &str) {
        if n.ty.value != NodeType::Gateway {
            return;
        }
        let defaults: Vec<usize> = (0..n.routes.len())
            .filter(|&i| n.routes.get(i).is_some_and(|r| r.when.is_none()))
            .collect();
        for (i, r) in n.routes.iter().enumerate() {
            self.node_ref(&r.to, &format!("route of {who}"));
            if let Some(w) = &r.when {
                self.expression(w, ExprType::Bool, &format!("route of {who}"));
            }
            if r.when.is_none() && i + 1 != n.routes.len() {
                let msg = format!(
                    "the default route of {who} (to `{}`) is not the last",
                    r.to.value
                );
                self.report(DEFAULT_ROUTE, r.to.pos, msg);
            }
        }
        if defaults.is_empty()
            && let Some(last) = n.routes.last()
        {
            let msg = format!("gateway {who} has no default route");
            self.report(NO_DEFAULT_ROUTE, last.to.pos, msg);
        }
    }

    // --- the graph --------------------------------------------------------------------------

    fn graph(&mut self) {
        let Some(start) = self.names.nodes.get(self.wf.start.value.as_str()) else {
            return;
        };
        // Work on indices: node `i` is `self.wf.nodes[i]`; a duplicate id resolves to its first.
        let nodes = &self.wf.nodes;
        let index: HashMap<&str, usize> = {
            let mut m = HashMap::with_capacity(nodes.len());
            for (i, n) in nodes.iter().enumerate() {
                m.entry(n.id.value.as_str()).or_insert(i);
            }
            m
        };
        let ix = |id: &str| index.get(id).copied();
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut pred: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        // A node whose way on is missing or names an unknown node is already reported, so it
        // counts as finishing rather than dragging everything before it into a second error.
        let mut finishing_roots = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let targets = n
                .next
                .iter()
                .map(|x| x.value.as_str())
                .chain(n.routes.iter().map(|r| r.to.value.as_str()))
                .chain(n.on_reject.iter().map(|x| x.value.as_str()));
            let mut any = false;
            let mut unknown = false;
            for t in targets {
                any = true;
                match ix(t) {
                    Some(j) => {
                        if let Some(s) = succ.get_mut(i) {
                            s.push(j);
                        }
                        if let Some(p) = pred.get_mut(j) {
                            p.push(i);
                        }
                    }
                    None => unknown = true,
                }
            }
            if n.ty.value == NodeType::End || !any || unknown {
                finishing_roots.push(i);
            }
        }
        let start_ix = ix(&start.id.value).unwrap_or(0);
        let reached = reach(&succ, [start_ix]);
        let finishing = reach(&pred, finishing_roots);
        for (i, n) in nodes.iter().enumerate() {
            let id = n.id.value.as_str();
            if ix(id) != Some(i) {
                continue; // a duplicate id, reported already
            }
            if !reached.get(i).copied().unwrap_or(false) {
                let msg = format!(
                    "node `{id}` cannot be reached from start `{}`",
                    self.wf.start.value
                );
                self.report(UNREACHABLE, n.id.pos, msg);
            } else if !finishing.get(i).copied().unwrap_or(false) {
                let msg = format!("no end node can be reached from node `{id}`");
                self.report(NO_END, n.id.pos, msg);
            }
        }
        let mut from_target: HashMap<usize, Vec<bool>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for r in &n.reject_to {
                let Some(t) = ix(&r.value) else { continue };
                let seen = from_target.entry(t).or_insert_with(|| reach(&succ, [t]));
                if !seen.get(i).copied().unwrap_or(false) {
                    let msg = format!(
                        "`reject_to` of node `{}` names `{}`, which is not on a path before it",
                        n.id.value, r.value
                    );
                    self.report(REJECT_NOT_EARLIER, r.pos, msg);
                }
            }
        }
    }

    // --- reports and notifications -----------------------------------------------------------

    fn reports(&mut self) {
        for r in &self.wf.reports {
            let who = format!("report `{}`", r.id.value);
            if let Err(e) = crate::cron::Schedule::parse(&r.cron.value) {
                self.report(
                    BAD_CRON,
                    r.cron.pos,
                    format!("cron `{}` of {who}: {e}", r.cron.value),
                );
            }
            for to in &r.to {
                self.assignee(to, r.id.pos, &format!("recipient of {who}"));
            }
            if let Some(t) = &r.template {
                self.template_ref(t, &who);
            }
        }
    }

    fn notifications(&mut self) {
        for rule in &self.wf.notifications {
            for to in &rule.to {
                self.assignee(to, rule.on.pos, "notification recipient");
            }
            if let Some(t) = &rule.template {
                self.template_ref(t, "notification");
            }
        }
    }

    // --- shared checks ----------------------------------------------------------------------

    fn unknown_node(&mut self, r: &Sp<String>, what: &str) {
        let msg = format!("{what} names unknown node `{}`", r.value);
        self.report(UNKNOWN_NODE, r.pos, msg);
    }

    fn node_ref(&mut self, r: &Sp<String>, what: &str) {
        if !self.names.nodes.contains_key(r.value.as_str()) {
            self.unknown_node(r, what);
        }
    }

    fn role_ref(&mut self, r: &Sp<String>, what: &str) {
        if !self.names.roles.contains(r.value.as_str()) {
            let msg = format!("{what} names unknown role `{}`", r.value);
            self.report(UNKNOWN_ROLE, r.pos, msg);
        }
    }

    fn department_ref(&mut self, d: &Sp<String>, what: &str) {
        if !self.names.departments.contains(d.value.as_str()) {
            let msg = format!("{what} names unknown department `{}`", d.value);
            self.report(UNKNOWN_DEPARTMENT, d.pos, msg);
        }
    }

    fn material_ref(&mut self, m: &Sp<String>, what: &str) {
        if !self.names.materials.contains_key(m.value.as_str()) {
            let msg = format!("{what} names unknown material `{}`", m.value);
            self.report(UNKNOWN_MATERIAL, m.pos, msg);
        }
    }

    fn template_ref(&mut self, t: &Sp<String>, what: &str) {
        if !self.ctx.templates.is_empty() && !self.ctx.templates.contains(&t.value) {
            let msg = format!("{what} uses unknown template `{}`", t.value);
            self.report(UNKNOWN_TEMPLATE, t.pos, msg);
        }
    }

    /// A reference to a document template (`what` says which document, e.g. "the commitment
    /// letter of step `review`"): the template exists, parses, and uses only the variables in
    /// `known`, the ones that document provides. Reported at the reference, naming the
    /// template's own line and column.
    fn document_ref(&mut self, t: &Sp<String>, known: &[&str], what: &str) {
        if self.ctx.documents.is_empty() {
            return;
        }
        let Some(src) = self.ctx.documents.get(&t.value) else {
            let msg = format!("{what} uses unknown document template `{}`", t.value);
            self.report(UNKNOWN_DOCUMENT_TEMPLATE, t.pos, msg);
            return;
        };
        match template::parse(src) {
            Err(e) => {
                let msg = format!(
                    "{what}: template `documents/{}.txt` {}:{}: {}",
                    t.value, e.pos.line, e.pos.col, e.message
                );
                self.report(BAD_DOCUMENT_TEMPLATE, t.pos, msg);
            }
            Ok(tpl) => {
                if let Some((name, at)) = tpl.first_unknown(known) {
                    let msg = format!(
                        "{what}: template `documents/{}.txt` {}:{} uses `{{{{{name}}}}}`, which it does not provide; it provides: {}",
                        t.value,
                        at.line,
                        at.col,
                        known.join(", ")
                    );
                    self.report(UNPROVIDED_TEMPLATE_VARIABLE, t.pos, msg);
                }
            }
        }
    }

    fn field_of_type(&mut self, f: &Sp<String>, ty: FieldType, what: &str) {
        match self.names.fields.get(f.value.as_str()) {
            None => {
                let msg = format!("{what} names unknown field `{}`", f.value);
                self.report(UNKNOWN_FIELD, f.pos, msg);
            }
            Some(def) if def.ty.value != ty => {
                let msg = format!(
                    "{what} names field `{}` of type {}, but it must be {}",
                    f.value,
                    field_type_name(def.ty.value),
                    field_type_name(ty)
                );
                self.report(FIELD_TYPE, f.pos, msg);
            }
            Some(_) => {}
        }
    }

    /// Parses a limit; reports it when bad. `allow_zero` for escalation offsets.
    fn limit(&mut self, raw: &Sp<RawLimit>, what: &str, allow_zero: bool) -> Option<Limit> {
        match Limit::parse(&raw.value, allow_zero) {
            Ok(l) => Some(l),
            Err(e) => {
                self.report(BAD_LIMIT, raw.pos, format!("{what}: {e}"));
                None
            }
        }
    }

    fn expression(&mut self, src: &Sp<String>, expected: ExprType, what: &str) {
        match expr::check_detailed(&src.value, &self.wf.fields, expected) {
            Ok(_) => {}
            Err(ExprError::Syntax(e)) => self.report(EXPR_SYNTAX, src.pos, format!("{what}: {e}")),
            Err(ExprError::Type(e)) => self.report(EXPR_TYPE, src.pos, format!("{what}: {e}")),
        }
    }

    /// A task's assignee must name someone for every project that can start: a rule may read
    /// an optional field only after testing it with `has()`, and a `service_officer` must name
    /// a required field. (A notification recipient that names nobody is skipped instead.)
    fn names_someone_always(&mut self, a: &Assignee, what: &str) {
        if let Some(f) = &a.service_officer
            && let Some(def) = self.names.fields.get(f.value.as_str())
            && def.ty.value == FieldType::User
            && !def.required
        {
            let msg = format!(
                "`service_officer` of {what} names field `{}`, which is not required: a project without it could not start",
                f.value
            );
            self.report(OPTIONAL_FIELD_IN_ASSIGNEE, f.pos, msg);
        }
        // A rule that does not check is reported as such, once.
        if let Some(r) = &a.rule
            && expr::check_detailed(&r.value, &self.wf.fields, ExprType::String).is_ok()
        {
            for field in expr::unguarded_optional_reads(&r.value, &self.wf.fields) {
                let msg = format!(
                    "rule of {what} reads `project.{field}`, which is not required, without `has(project.{field})`: a project without it could not start"
                );
                self.report(OPTIONAL_FIELD_IN_ASSIGNEE, r.pos, msg);
            }
        }
    }

    fn assignee(&mut self, a: &Assignee, fallback: Pos, what: &str) {
        let set: Vec<(&str, &Sp<String>)> = [
            ("role", &a.role),
            ("department", &a.department),
            ("user", &a.user),
            ("service_officer", &a.service_officer),
            ("rule", &a.rule),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        if set.len() != 1 {
            let keys: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
            let pos = set.first().map(|(_, v)| v.pos).unwrap_or(fallback);
            let msg = if keys.is_empty() {
                format!("{what} names nobody")
            } else {
                format!("{what} sets {} at once", keys.join(" and "))
            };
            self.report(ASSIGNEE_SHAPE, pos, msg);
        }
        if let Some(r) = &a.role {
            self.role_ref(r, what);
        }
        if let Some(d) = &a.department {
            self.department_ref(d, what);
        }
        if let Some(f) = &a.service_officer {
            self.field_of_type(f, FieldType::User, &format!("`service_officer` of {what}"));
        }
        if let Some(r) = &a.rule {
            self.expression(r, ExprType::String, &format!("rule of {what}"));
        }
    }
}

/// The fields a node sets, with where (the value's position, or the node's id when the value
/// has none of its own).
fn present_fields(n: &Node) -> Vec<(&'static str, Pos)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, pos: Option<Pos>| {
        if let Some(p) = pos {
            out.push((name, p));
        }
    };
    add("next", n.next.as_ref().map(|x| x.pos));
    add(
        "assignee",
        n.assignee
            .as_ref()
            .map(|a| assignee_pos(a).unwrap_or(n.id.pos)),
    );
    add("actions", n.actions.first().map(|x| x.pos));
    add("limit", n.limit.as_ref().map(|x| x.pos));
    add(
        "channel_limits",
        n.channel_limits.first().map(|x| x.channel.pos),
    );
    add("materials", n.materials.first().map(|x| x.pos));
    add("conditional", n.conditional.as_ref().map(|c| c.limit.pos));
    add("reject_to", n.reject_to.first().map(|x| x.pos));
    add("on_reject", n.on_reject.as_ref().map(|x| x.pos));
    add("extend_by", n.extend_by.first().map(|x| x.pos));
    add("branches", n.branches.first().map(|b| b.id.pos));
    add("lead", n.lead.as_ref().map(|x| x.pos));
    add("join", n.join.as_ref().map(|j| j.policy.pos));
    add("routes", n.routes.first().map(|r| r.to.pos));
    add("wait", n.wait.as_ref().map(|x| x.pos));
    add("wait_until", n.wait_until.as_ref().map(|x| x.pos));
    add("notify", n.notify.as_ref().map(|x| x.template.pos));
    add("outcome", n.outcome.as_ref().map(|x| x.pos));
    add("document", n.document.as_ref().map(|d| d.kind.pos));
    out
}

fn assignee_pos(a: &Assignee) -> Option<Pos> {
    [&a.role, &a.department, &a.user, &a.service_officer, &a.rule]
        .into_iter()
        .flatten()
        .map(|v| v.pos)
        .next()
}

/// Which nodes are reachable from `roots` along `edges` (roots included), by index.
fn reach(edges: &[Vec<usize>], roots: impl IntoIterator<Item = usize>) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack: Vec<usize> = Vec::new();
    for r in roots {
        if let Some(s) = seen.get_mut(r)
            && !*s
        {
            *s = true;
            stack.push(r);
        }
    }
    while let Some(n) = stack.pop() {
        for &m in edges.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(s) = seen.get_mut(m)
                && !*s
            {
                *s = true;
                stack.push(m);
            }
        }
    }
    seen
}

fn type_name(t: NodeType) -> &'static str {
    match t {
        NodeType::Task => "task",
        NodeType::Parallel => "parallel",
        NodeType::Gateway => "gateway",
        NodeType::Wait => "wait",
        NodeType::Notify => "notify",
        NodeType::End => "end",
    }
}

fn field_type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Number => "number",
        FieldType::Int => "int",
        FieldType::Bool => "bool",
        FieldType::Date => "date",
        FieldType::Enum => "enum",
        FieldType::User => "user",
        FieldType::List => "list",
    }
}

/// `50%` → 50.0.
fn percentage(text: &str) -> Option<f64> {
    text.trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_ordered() {
        let codes: Vec<&str> = RULES.iter().map(|r| r.code).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(codes, sorted);
    }
}
