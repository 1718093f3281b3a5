//! The YAML workflow language, as typed serde structs.
//!
//! These types are what policy staff write. They are deliberately *loose*: a node is one struct
//! with a `type` and the optional fields of every node type, limits are strings such as `"10wd"`,
//! conditions are CEL source text. Reading YAML into them only fails on YAML syntax and on shapes
//! that cannot be read at all (a list where a map belongs, an unknown key); everything else (an
//! unknown reference, a limit of zero, a red-line material in a waiver list, a task with branches)
//! is left to `validate`, which reports *all* problems with their positions instead of the first.
//!
//! Every list of named things is a YAML list of maps with an `id`, not a map keyed by id, so that
//! a duplicate id is a located validation error rather than a parse failure, and order is kept.
//!
//! The same types generate `workflows/schema.json` (see [`json_schema`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::span::Sp;

/// One workflow definition: one YAML file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Stable identifier, used in API paths and to match versions of the same workflow.
    pub id: Sp<String>,
    /// Human name, e.g. `省级重大项目审批`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The working-day calendar limits are counted on, e.g. `cn-mainland`
    /// (a file `workflows/calendars/<id>.yaml`).
    pub calendar: Sp<String>,
    /// The node where every instance starts.
    pub start: Sp<String>,
    /// The project's fields: what conditions and assignee rules may read as `project.<id>`.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// Departments taking part (发改委, 自然资源局 ...), with who supervises them.
    #[serde(default)]
    pub departments: Vec<Department>,
    /// Named groups of people that tasks are assigned to.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Application materials (申报材料); red-line ones can never be waived.
    #[serde(default)]
    pub materials: Vec<Material>,
    /// The element catalogue (要素): land, funds, energy ... with typed fields and owners.
    #[serde(default)]
    pub elements: Vec<ElementKind>,
    /// Lifecycle stages (谋划 → 生成 → 审批 → 建设 → 竣工) and the elements each requires.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Green channels (绿色通道).
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Colour thresholds and the escalation ladder.
    #[serde(default)]
    pub warnings: Warnings,
    /// The state graph.
    pub nodes: Vec<Node>,
    /// Cron-scheduled reports (周统计, 半月通报, 月调度).
    #[serde(default)]
    pub reports: Vec<Report>,
    /// Who receives which notification, on which channel, with which template.
    #[serde(default)]
    pub notifications: Vec<NotificationRule>,
    /// The 文号 of the official documents the workflow issues, e.g.
    /// `"皖发改投资〔{{year}}〕{{seq}}号"`: `{{year}}` is the year of issue (Asia/Shanghai),
    /// `{{seq}}` the document's number in that year, counted per workflow from 1 without gaps.
    /// Must contain `seq`. Without it, a document is numbered `〔year〕seq号`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_number: Option<Sp<String>>,
}

/// An official document (公文) issued when an instance reaches an end or a step pre-approves:
/// rendered from a template, numbered, dated and verifiable at `/verify/{code}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentSpec {
    /// What the document is.
    pub kind: Sp<DocumentKind>,
    /// The title printed on it; defaults to the kind's name (批复, 备案证明 ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A template in `workflows/documents/<name>.txt` (`{{ name }}` placeholders): the body.
    pub template: Sp<String>,
    /// The department that issues it (发文机关): its name heads the document.
    pub issuer: Sp<String>,
}

/// The kinds of official documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// 预批复: a 容缺 pre-approval.
    PreApproval,
    /// 批复: an approval.
    Approval,
    /// 备案证明: a filing confirmed.
    Filing,
    /// 不予许可决定书: a refusal.
    Refusal,
    /// 撤销决定: a pre-approval revoked on a breached commitment.
    Revocation,
}

impl DocumentKind {
    /// The kind's Chinese name, the default title.
    pub fn name_zh(self) -> &'static str {
        match self {
            DocumentKind::PreApproval => "预批复",
            DocumentKind::Approval => "批复",
            DocumentKind::Filing => "备案证明",
            DocumentKind::Refusal => "不予许可决定书",
            DocumentKind::Revocation => "撤销决定",
        }
    }

    /// The snake_case name, as written in YAML and stored.
    pub fn code(self) -> &'static str {
        match self {
            DocumentKind::PreApproval => "pre_approval",
            DocumentKind::Approval => "approval",
            DocumentKind::Filing => "filing",
            DocumentKind::Refusal => "refusal",
            DocumentKind::Revocation => "revocation",
        }
    }
}

/// A field of the project record.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub ty: Sp<FieldType>,
    /// The allowed values of an `enum` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Sp<String>>,
    /// A project cannot start without it.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Int,
    Bool,
    Date,
    /// One of `values`.
    Enum,
    /// A user name (e.g. the project's 1-to-1 service officer).
    User,
    /// A list of strings.
    List,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role notified on the second escalation rung for this department's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Sp<String>>,
    /// Role that receives 挂牌督办 for this department's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The department the role belongs to; a task for the role lands in that department's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 红线: can never be waived under 容缺.
    #[serde(default)]
    pub red_line: Sp<bool>,
}

/// One kind in the element catalogue.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElementKind {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub category: Sp<ElementCategory>,
    /// The department that supplies this element.
    pub owner: Sp<String>,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// The stages in which this element may be attached; empty: any time. "先入库，后保障":
    /// `attach_in: [shenpi, jianshe]` keeps land, funds or energy from being guaranteed
    /// before the project is in the library. Attaching it elsewhere is refused
    /// (`element_not_in_stage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_in: Vec<Sp<String>>,
}

/// The eight element categories of 要素跟着项目走.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ElementCategory {
    /// 土地
    Land,
    /// 资金
    Funds,
    /// 能耗
    Energy,
    /// 污染物排放总量替代指标
    Emissions,
    /// 数据
    Data,
    /// 市政配套
    Utilities,
    /// 人才
    Talent,
    /// 重大协调服务
    Coordination,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Overall limit for the stage, counted from entering it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Sp<RawLimit>>,
    /// The department that answers for the stage's limit: its supervisor and leader receive the
    /// stage's escalations (when `warnings.escalate` lists `stage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Sp<String>>,
    /// Elements that must be attached before the stage closes.
    #[serde(default)]
    pub elements: Vec<StageElement>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageElement {
    /// An element kind id.
    pub element: Sp<String>,
    /// Department that must attach it; defaults to the element's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Sp<String>>,
    /// Limit from entering the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Sp<RawLimit>>,
    /// The stage may close with this element outstanding; it is then carried as an outstanding
    /// item with a deadline of `carry_limit` from the close.
    #[serde(default)]
    pub may_carry: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry_limit: Option<Sp<RawLimit>>,
    /// Only an attachment made while the project is in this stage counts for it: one attached
    /// in an earlier stage must be attached again (a fresh 用地 or 资金 confirmation per stage).
    #[serde(default)]
    pub fresh: bool,
}

/// A green channel (绿色通道).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// CEL condition on `project`; the channel applies when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Sp<String>>,
    /// A `bool` project field the lead office sets to put a project in this channel explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<Sp<String>>,
    /// Scale every limit, e.g. `50%`. Results round up to whole units, never below one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_scale: Option<Sp<String>>,
    /// 即报即审: every task is due the same working day it opens.
    #[serde(default)]
    pub same_day: bool,
    /// Node ids skipped for instances in this channel.
    #[serde(default)]
    pub skip: Vec<Sp<String>>,
    /// Added to every task's priority in inboxes (higher sorts first).
    #[serde(default)]
    pub priority: i32,
    /// Who is notified when an instance enters the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<Assignee>,
}

/// Colour thresholds and the escalation ladder, for every limit of the workflow.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Warnings {
    /// Share of a limit used at which the colour turns yellow, e.g. `75%`.
    #[serde(default = "default_yellow")]
    pub yellow_at: Sp<String>,
    /// Rungs after a limited thing goes red (overdue), in order.
    #[serde(default)]
    pub escalation: Vec<Rung>,
    /// What the ladder applies to: `task` (the default), `step` (a parallel step's overall
    /// limit), `promise` (a 容缺 commitment, from its breach), `stage` (a stage's limit) and
    /// `outstanding` (an element carried past its stage, 问题清单).
    #[serde(default = "default_escalate")]
    pub escalate: Vec<Sp<Escalated>>,
}

fn default_yellow() -> Sp<String> {
    Sp::new("75%".to_string())
}

fn default_escalate() -> Vec<Sp<Escalated>> {
    vec![Sp::new(Escalated::Task)]
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings {
            yellow_at: default_yellow(),
            escalation: Vec::new(),
            escalate: default_escalate(),
        }
    }
}

/// The kinds of limited things the escalation ladder may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Escalated {
    /// A task's limit (the default).
    Task,
    /// A parallel step's overall limit: the lead branch's department is escalated to.
    Step,
    /// A 容缺 commitment, from its breach until the material is verified: the department of
    /// the step that pre-approved.
    Promise,
    /// A stage's limit: the stage's `department`.
    Stage,
    /// An element carried past its stage (问题清单): the element's owner department.
    Outstanding,
}

/// One rung of the escalation ladder.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Time after the deadline at which this rung fires, e.g. `0wd`, `2wd`.
    pub after: Sp<RawLimit>,
    pub action: Sp<RungAction>,
    /// Recipient; defaults per action: the assignee, the department supervisor, its leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Assignee>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RungAction {
    /// 提醒 the assignee.
    Remind,
    /// Notify the department's supervisor.
    Supervisor,
    /// 挂牌督办: put the task on the leader's supervision list.
    Supervise,
}

/// Who a task goes to. Exactly one of the fields is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignee {
    /// A role id: the task lands in the pool of the role's department, for holders of the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Sp<String>>,
    /// A department id: anyone of the department may claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Sp<String>>,
    /// A named user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Sp<String>>,
    /// The project's 1-to-1 service officer: the name of a `user` field of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_officer: Option<Sp<String>>,
    /// A CEL expression over `project` returning a user name, or `"dept:<id>"` / `"role:<id>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Sp<String>>,
}

/// A time limit as written: a bare number of working days, or text such as `10wd`, `10 working
/// days`, `10工作日`, `5d`/`5自然日` (natural days), `8h`/`8小时` (hours). Parsed by
/// [`crate::limit::Limit::parse`] during validation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawLimit {
    Days(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// A human task.
    Task,
    /// 并联审批: fans out to several departments at once and joins.
    Parallel,
    /// Exclusive choice on conditions.
    Gateway,
    /// Waits for a time (or for the applicant) before going on.
    Wait,
    /// Sends a notification and goes on.
    Notify,
    /// Ends the instance with an outcome.
    End,
}

/// What an approver may do on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    /// 驳回 to a named earlier node (one of `reject_to`), or a final rejection when none.
    Reject,
    /// 补正: return to the applicant for supplement; the clocks of the open tasks, parallel steps
    /// and the current stage stop (promises keep running).
    Return,
    /// 容缺: approve with waivable materials missing against a commitment.
    Conditional,
    Delegate,
    Cosign,
    Comment,
    /// 延长: extend the limit, with a reason.
    Extend,
    /// Stop the clock for time the law does not count (听证, 专家评审, 检测).
    Suspend,
}

/// One node of the state graph. Which fields apply depends on `type`; `validate` reports fields
/// that do not belong to the node's type.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: Sp<String>,
    #[serde(rename = "type")]
    pub ty: Sp<NodeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The lifecycle stage this node belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Sp<String>>,
    /// The node that follows (task on approve, parallel on join, wait, notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Sp<String>>,

    // --- task ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Assignee>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Sp<Action>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Sp<RawLimit>>,
    /// Per-channel limits, overriding the channel's scaling: `{channel: green, limit: 2wd}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_limits: Vec<ChannelLimit>,
    /// Materials this step needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<Sp<String>>,
    /// 容缺+承诺 on this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional: Option<Conditional>,
    /// Earlier nodes this step may reject back to (驳回).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reject_to: Vec<Sp<String>>,
    /// Where a final rejection goes (an `end` node); defaults to ending `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reject: Option<Sp<String>>,
    /// Roles allowed to extend (延长) this step's limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extend_by: Vec<Sp<String>>,

    // --- parallel ---
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Branch>,
    /// The lead branch id (一家牵头); its opinion is recorded as the step's lead opinion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<Sp<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,

    // --- gateway ---
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,

    // --- wait ---
    /// How long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Sp<RawLimit>>,
    /// Wait until a calendar date instead: `"01-10"` is the next 1 月 10 日 after the wait
    /// starts (「10 月征集，次年 1 月印发」), `"2027-01-10"` that day. The wait ends at the start
    /// of that day, or of the first working day after it when it is a rest day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<Sp<String>>,

    // --- notify ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,

    // --- end ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Sp<Outcome>>,
    /// The official document issued when the instance ends here (批复, 备案证明, 不予许可决定书).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimit {
    pub channel: Sp<String>,
    pub limit: Sp<RawLimit>,
}

/// 容缺+承诺 settings of a step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditional {
    /// Materials that may be missing at approval against a commitment; never red-line ones.
    pub waivable: Vec<Sp<String>>,
    /// Time the applicant has to supply them, e.g. `20wd`.
    pub limit: Sp<RawLimit>,
    /// What happens when a commitment is breached, in order.
    #[serde(default)]
    pub on_breach: Vec<Sp<BreachAction>>,
    /// Who verifies supplied materials; defaults to the step's assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_by: Option<Assignee>,
    /// The 预批复 issued when the step pre-approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentSpec>,
    /// The 撤销决定 issued when a breach revokes the pre-approval (`on_breach: [revoke]`); the
    /// 预批复 then shows as revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<DocumentSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// Revoke the pre-approval; the instance ends `revoked`.
    Revoke,
    /// Escalate to the department leader (挂牌督办).
    Escalate,
    /// Record a credit mark (信用记录) against the applicant.
    CreditMark,
}

/// One department's branch of a parallel step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub id: Sp<String>,
    pub department: Sp<String>,
    /// Who in the department; defaults to the department's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Assignee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Sp<RawLimit>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<Sp<String>>,
    /// Only for projects where this CEL condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    pub policy: Sp<JoinPolicy>,
    /// For `vote`: the share of approvals needed, `2/3` or `67%`; `ceil(share × branches)`
    /// approvals, so with 6 branches `2/3` needs 4 and `67%` needs 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Sp<String>>,
    #[serde(default)]
    pub on_reject: RejectPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinPolicy {
    /// 会签: every branch must approve.
    All,
    /// 或签: the first approval decides.
    Any,
    /// 票签: approvals reach `share` of the branches.
    Vote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectPolicy {
    /// One rejection rejects the step at once; open branches are cancelled.
    #[default]
    Immediate,
    /// Collect every branch's opinion before deciding.
    Collect,
}

/// One route of a gateway: `when` a CEL condition holds go `to`; a route without `when` is the
/// default and must be last.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Sp<String>>,
    pub to: Sp<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub to: Vec<Assignee>,
    /// A template name in `workflows/templates/`.
    pub template: Sp<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    Rejected,
    Withdrawn,
    Revoked,
}

/// A cron-scheduled report.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub id: Sp<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: Sp<ReportKind>,
    /// Cron expression in Asia/Shanghai time, 5 fields (`min hour day month weekday`).
    pub cron: Sp<String>,
    pub to: Vec<Assignee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// 周统计
    Weekly,
    /// 半月通报
    HalfMonthly,
    /// 月调度
    Monthly,
}

/// Who receives which notification.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRule {
    pub on: Sp<NotificationEvent>,
    pub to: Vec<Assignee>,
    /// Delivery channels; `log` when empty.
    #[serde(default)]
    pub via: Vec<Sp<Delivery>>,
    /// Template name; defaults to the event's own template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    TaskAssigned,
    Yellow,
    Overdue,
    Escalation,
    Supervise,
    PromiseDue,
    PromiseBreach,
    GreenChannel,
    Urge,
    Cc,
    Report,
    /// A calendar revision moved a deadline earlier (期限提前).
    DeadlineMoved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Log,
    Webhook,
    Dingtalk,
    Wecom,
    Email,
}

/// The JSON Schema of the workflow language, shipped as `workflows/schema.json`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Workflow);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}
