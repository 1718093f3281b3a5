//! What the user reads when the engine refuses a command: one Chinese sentence per rejection, in
//! [`rejection_message_zh`], and the one conversion of a refusal into an [`ApiError`].
//!
//! The engine's own messages are English and speak in ids (`material \`land_site\` is red-line`);
//! the people using the UI need Chinese and the names in their workflow (「用地预审与选址意见书」).
//! The engine's typed [`Rejection`] crosses the durable layer as JSON beside its code (the bus keeps
//! it with a stored refusal, so a replayed refusal reads the same), and is turned into text here
//! and nowhere else. The API body keeps the stable `error` code; `message` is the Chinese text.

use shenpi_adapters::machine;
use shenpi_engine::compile::Definition;
use shenpi_engine::limit::{Limit, Unit};
use shenpi_engine::model::{Action, FieldType, NodeType, RawLimit};
use shenpi_engine::runtime::event::{ClockRef, PreApprovalId};
use shenpi_engine::runtime::migrate::{Blocker, MappingProblem};
use shenpi_engine::runtime::rejection::{Ineligible, TakeBackBlock};
use shenpi_engine::runtime::{InstanceState, ProjectProblem, Rejection, RejectionKind, TaskId};

use super::error::{ApiError, rejection_status};
use super::names::WorkflowNames;

/// Where the names in a refusal come from: the instance's workflow version and its state, when
/// the caller has them. Without them ids are shown as they are.
#[derive(Default, Clone, Copy)]
pub struct Names<'a> {
    pub def: Option<&'a Definition>,
    pub state: Option<&'a InstanceState>,
}

impl<'a> Names<'a> {
    pub fn of(def: &'a Definition, state: Option<&'a InstanceState>) -> Names<'a> {
        Names {
            def: Some(def),
            state,
        }
    }

    /// A name as the workflow gives it, in 「」; the id without the definition.
    fn quoted(&self, id: &str, name: fn(&WorkflowNames<'a>, &str) -> String) -> String {
        format!("「{}」", self.plain(id, name))
    }

    fn plain(&self, id: &str, name: fn(&WorkflowNames<'a>, &str) -> String) -> String {
        self.def
            .map_or_else(|| id.to_string(), |d| name(&WorkflowNames(d), id))
    }

    fn node(&self, id: &str) -> String {
        self.quoted(id, WorkflowNames::node)
    }

    fn material(&self, id: &str) -> String {
        self.quoted(id, WorkflowNames::material)
    }

    fn stage(&self, id: &str) -> String {
        self.quoted(id, WorkflowNames::stage)
    }

    fn element(&self, id: &str) -> String {
        self.quoted(id, WorkflowNames::element)
    }

    fn field(&self, id: &str) -> String {
        self.quoted(id, WorkflowNames::field)
    }

    fn department(&self, id: &str) -> String {
        self.plain(id, WorkflowNames::department)
    }

    /// What a limited thing is, for a refusal about its supervision (挂牌督办).
    fn item(&self, target: &ClockRef) -> String {
        let st = self.state;
        match target {
            ClockRef::Task(t) => self.task(*t),
            ClockRef::Step(s) => st.and_then(|st| st.step(*s)).map_or_else(
                || "并联审批".to_string(),
                |s| format!("并联审批{}", self.node(&s.node)),
            ),
            ClockRef::Promise(p) => st.and_then(|st| st.promise(*p)).map_or_else(
                || "容缺承诺".to_string(),
                |p| format!("容缺承诺（材料{}）", self.material(&p.material)),
            ),
            ClockRef::Stage(v) | ClockRef::Element { stage: v, .. } => {
                st.and_then(|st| st.stages.get(v.ix())).map_or_else(
                    || "阶段".to_string(),
                    |s| format!("阶段{}", self.stage(&s.stage)),
                )
            }
            ClockRef::Outstanding(o) => st.and_then(|st| st.outstanding.get(o.ix())).map_or_else(
                || "遗留事项".to_string(),
                |o| format!("遗留事项（要素{}）", self.element(&o.element)),
            ),
        }
    }

    /// A commitment letter by the step that pre-approved: 「环节」的承诺书.
    fn letter(&self, pre: PreApprovalId) -> String {
        match self.state.and_then(|s| s.letter(pre)) {
            Some(l) => format!("{}环节的承诺书", self.node(&l.node)),
            None => format!("第 {pre} 号预批复的承诺书"),
        }
    }

    /// A task by what it is about: its node, a branch's department, the material it verifies.
    fn task(&self, id: TaskId) -> String {
        let Some(t) = self.state.and_then(|s| s.task(id)) else {
            return format!("任务{id}");
        };
        let spec = &t.spec;
        if let Some(m) = spec.label.strip_prefix("verify.") {
            return format!("核验材料{}任务", self.material(m));
        }
        match (&spec.branch, &spec.department) {
            (Some(_), Some(d)) => {
                format!("{}（{}）任务", self.node(&spec.node), self.department(d))
            }
            (Some(b), None) => format!("{}（{b}）任务", self.node(&spec.node)),
            (None, _) => format!("{}任务", self.node(&spec.node)),
        }
    }
}

/// What each validation code means, in Chinese, for the pages (the workflow editor, the
/// publish refusal); the API keeps the code and the engine's located message beside it.
pub fn diagnostic_title_zh(code: &str) -> Option<&'static str> {
    Some(match code {
        "E001" => "文件不是合法的 YAML，或键名、结构有误",
        "E002" => "同类事物的 id 重复",
        "E003" => "引用了不存在的环节",
        "E004" => "引用了不存在的岗位（角色）",
        "E005" => "引用了不存在的部门",
        "E006" => "引用了不存在的材料",
        "E007" => "引用了不存在的要素种类",
        "E008" => "引用了不存在的阶段",
        "E009" => "引用了不存在的绿色通道",
        "E010" => "流程所用的工作日历不存在",
        "E011" => "引用了不存在的消息模板",
        "E012" => "引用了不存在的项目字段",
        "E013" => "项目字段的类型与用法不符",
        "E014" => "有环节从开始环节无法到达",
        "E015" => "有环节无法到达任何结束环节",
        "E016" => "非并联环节设置了汇总方式（join）",
        "E017" => "并联审批的分支少于两个",
        "E018" => "并联审批的牵头部门不是其分支之一",
        "E019" => "票签汇总缺少有效的通过比例（share）",
        "E020" => "红线材料被列为可容缺",
        "E021" => "可容缺材料不在本环节的材料清单中",
        "E022" => "时限为零、负数或无法识别",
        "E023" => "黄色预警比例不在 0 到 100% 之间",
        "E024" => "条件或办理人规则不是合法的 CEL 表达式",
        "E025" => "条件或办理人规则与项目字段的类型不符",
        "E026" => "环节设置了其类型不使用的字段",
        "E027" => "环节缺少其类型必需的字段",
        "E028" => "分支网关的默认路线（无条件）不在最后，或不止一条",
        "E029" => "驳回目标不是本环节之前的环节",
        "E030" => "环节允许容缺通过却没有容缺设置（conditional）",
        "E031" => "绿色通道既无条件（when）也无标志字段（flag）",
        "E032" => "绿色通道跳过了开始或结束环节",
        "E033" => "绿色通道的时限比例不在 0 到 100% 之间",
        "E034" => "枚举字段没有列出可选值",
        "E035" => "报表的定时表达式（cron）无效",
        "E036" => "可带缺项的要素缺少带缺项时限",
        "E037" => "办理人须且只须指定岗位、部门、用户、帮办专员或规则之一",
        "E038" => "结束环节不能再有下一环节",
        "E039" => "驳回终止的去向不是结束环节",
        "E040" => "升级督办的各级间隔不能递减",
        "E041" => "流程 id 不能用于网址",
        "E042" => "两个流程文件声明了同一个流程 id",
        "E043" => "办理人规则依赖一个可不填的项目字段",
        "E044" => "wait_until 不是日期，或与 wait 同时设置",
        "E045" => "阶段要求的要素不允许在该阶段补充",
        "E046" => "引用了不存在的文书模板",
        "E047" => "文书模板无法解析（占位符未闭合或不是变量名）",
        "E048" => "文书模板使用了该文书不提供的变量",
        "E049" => "文号格式中没有序号 {{seq}}（或不是模板）",
        "W001" => "环节不允许容缺通过，却有容缺设置",
        "W002" => "分支网关没有默认路线",
        "W003" => "非票签的汇总设置了通过比例",
        "W004" => "非枚举字段列出了可选值",
        "W005" => "环节不允许驳回，却设置了驳回目标",
        "W006" => "不可带缺项的要素设置了带缺项时限",
        "W007" => "升级督办覆盖阶段，但有时限的阶段未指定部门",
        _ => return None,
    })
}

/// `5wd` → 「5 个工作日」; text that is not a limit stays as it is.
pub fn limit_zh(text: &str) -> String {
    match Limit::parse(&RawLimit::Text(text.to_string()), true) {
        Ok(l) => match l.unit {
            Unit::WorkingDays => format!("{} 个工作日", l.amount),
            Unit::Days => format!("{} 个自然日", l.amount),
            Unit::Hours => format!("{} 小时", l.amount),
        },
        Err(_) => text.to_string(),
    }
}

fn action_zh(a: Action) -> &'static str {
    match a {
        Action::Approve => "审批通过",
        Action::Reject => "驳回",
        Action::Return => "退回补正",
        Action::Conditional => "容缺受理",
        Action::Delegate => "委托、委派或转办",
        Action::Cosign => "加签或减签",
        Action::Comment => "填写意见",
        Action::Extend => "延长时限",
        Action::Suspend => "中止计时",
    }
}

/// A project field's type, as a form asks for it.
fn field_type_zh(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "文本",
        FieldType::Number => "数字",
        FieldType::Int => "整数",
        FieldType::Bool => "是或否",
        FieldType::Date => "日期（如 2026-12-01）",
        FieldType::Enum => "所列选项之一",
        FieldType::User => "系统中的用户名",
        FieldType::List => "文本列表",
    }
}

/// The Chinese sentence for a refusal, naming the workflow's nodes, materials, stages, elements
/// and fields as the workflow names them. Free text the engine adds (a reason, the calendar's
/// own account of which limit it could not count) is kept, after the sentence.
pub fn rejection_message_zh(r: &Rejection, n: &Names<'_>) -> String {
    match r {
        Rejection::NotStarted => "该申报尚未开始办理。".to_string(),
        Rejection::AlreadyStarted => "该申报已经开始办理，不能重复提交。".to_string(),
        Rejection::InstanceEnded => "该申报已办结，不能再办理。".to_string(),
        Rejection::InvalidProject {
            field,
            reason,
            problem,
        } => {
            let what = match problem {
                ProjectProblem::NotAMap => "项目信息须为各字段及其取值。".to_string(),
                ProjectProblem::Required => "必须填写。".to_string(),
                ProjectProblem::NotOneOf { values } => format!(
                    "须为以下之一：{}。",
                    values
                        .iter()
                        .map(|v| format!("「{v}」"))
                        .collect::<String>()
                ),
                ProjectProblem::WrongType { want } => format!("须为{}。", field_type_zh(*want)),
                ProjectProblem::Unknown => reason.clone(),
            };
            format!("项目信息{}不符合要求：{what}", n.field(field))
        }
        Rejection::UnknownChannel { channel } => format!("没有名为「{channel}」的绿色通道。"),
        Rejection::UnknownTask { task } => format!("没有编号为 {task} 的任务。"),
        Rejection::TaskNotOpen { task } => format!("{}已办结或已取消。", n.task(*task)),
        Rejection::AlreadyDecided { task } => format!("{}已经办理过了。", n.task(*task)),
        Rejection::NotAssigned { task, actor } => {
            format!("{actor} 不是{}的办理人。", n.task(*task))
        }
        Rejection::AlreadyClaimed { task, by } => {
            format!("{}已由 {by} 认领。", n.task(*task))
        }
        Rejection::ActionNotAllowed { node, action } => {
            format!("环节{}不允许{}。", n.node(node), action_zh(*action))
        }
        Rejection::WrongTaskKind { task, reason } => {
            format!("该操作不适用于{}：{reason}", n.task(*task))
        }
        Rejection::NotEarlierNode { to, allowed } => {
            if allowed.is_empty() {
                format!("不能驳回至{}：本环节不能驳回到前面的环节。", n.node(to))
            } else {
                let names: Vec<String> = allowed.iter().map(|a| n.node(a)).collect();
                format!(
                    "不能驳回至{}：本环节只能驳回至{}。",
                    n.node(to),
                    names.join("、")
                )
            }
        }
        Rejection::MaterialIsRedLine { material } => {
            format!("材料{}是红线材料，不得容缺。", n.material(material))
        }
        Rejection::MaterialNotWaivable { material } => {
            format!("材料{}在本环节不可容缺。", n.material(material))
        }
        Rejection::NothingWaived => "容缺受理须至少选择一项容缺材料。".to_string(),
        Rejection::MaterialNotExpected { material } => format!(
            "没有等待补交材料{}的容缺承诺或补正要求。",
            n.material(material)
        ),
        Rejection::MaterialNotListed { material } => format!(
            "材料{}不在本流程的材料清单中，不能补交。",
            n.material(material)
        ),
        Rejection::LimitExceedsRule { asked, rule } => format!(
            "承诺时限 {} 超过规则允许的 {}。",
            limit_zh(asked),
            limit_zh(rule)
        ),
        Rejection::BadLimit { limit, reason } => format!("时限「{limit}」无效：{reason}"),
        Rejection::StageCannotClose { stage, element } => format!(
            "阶段{}不能结束：必备要素{}尚未挂接，且不允许带缺项转入下一阶段。",
            n.stage(stage),
            n.element(element)
        ),
        Rejection::UnknownElement { element } => format!("没有要素「{element}」。"),
        Rejection::InvalidElement { element, reason } => {
            format!("要素{}的内容有误：{reason}", n.element(element))
        }
        Rejection::ElementNotInStage { element, stages } => {
            let names: Vec<String> = stages.iter().map(|s| n.stage(s)).collect();
            format!(
                "要素{}只能在{}阶段挂接（先入库，后保障）。",
                n.element(element),
                names.join("、")
            )
        }
        Rejection::NotSupervised { target } => {
            format!("{}不在挂牌督办清单上，无需销号。", n.item(target))
        }
        Rejection::SupervisionResolved { target } => {
            format!("{}的挂牌督办已经销号。", n.item(target))
        }
        Rejection::SupervisionUnsettled { target } => {
            format!("{}尚未办结，办结后方可销号。", n.item(target))
        }
        Rejection::UnknownLetter { pre } => {
            format!("第 {pre} 号预批复没有承诺书：该环节的容缺受理不要求签署承诺书。")
        }
        Rejection::NotLetterSigner { pre, actor } => format!(
            "{actor} 不是本项目的申请人或帮办专员，不能签署{}。",
            n.letter(*pre)
        ),
        Rejection::LetterAlreadySigned { pre, by } => {
            format!("{}已由 {by} 签署，不能重复签署。", n.letter(*pre))
        }
        Rejection::LetterChanged { pre, .. } => format!(
            "{}的内容与您看到的不一致（SHA-256 摘要不符），未签署：请刷新页面，阅读当前文本后重新签署。",
            n.letter(*pre)
        ),
        Rejection::NotAuthorised { actor, what } => {
            format!("{actor} 无权执行此操作（{what}）。")
        }
        Rejection::ReasonRequired => "请填写理由。".to_string(),
        Rejection::WithApplicant => {
            "案件已退回申请人补正，须待申请人重新提交后再办理。".to_string()
        }
        Rejection::NotWithApplicant => "案件没有退回申请人补正。".to_string(),
        Rejection::Suspended { task } => {
            format!("{}已中止计时，请先恢复计时。", n.task(*task))
        }
        Rejection::NotSuspended { task } => format!("{}没有中止计时。", n.task(*task)),
        Rejection::NoLimit { task } => {
            format!("{}没有办理时限，无从延长。", n.task(*task))
        }
        Rejection::CosignersOpen { task } => {
            format!("{}的会签人尚未全部办理。", n.task(*task))
        }
        Rejection::AlreadyCosigner { task, user } => {
            format!("{user} 已是{}的会签人。", n.task(*task))
        }
        Rejection::Consulting { task, with } => format!(
            "{}已委派给 {with} 征求意见，须待其回复后再由您办理。",
            n.task(*task)
        ),
        Rejection::NotConsulted { task } => {
            format!("{}没有委派给任何人征求意见。", n.task(*task))
        }
        Rejection::AwaitingSigner { task, signer } => format!(
            "{}已前加签 {signer}，须待其先办理后您才能作出决定。",
            n.task(*task)
        ),
        Rejection::NotASigner { task, user } => {
            format!("{user} 不是{}尚未表态的加签人，无从减签。", n.task(*task))
        }
        Rejection::SignerDecided { task, user } => {
            format!("{user} 已在{}上表态，不能再减签。", n.task(*task))
        }
        Rejection::IneligibleUser { user, reason } => match reason {
            Ineligible::Themselves => "不能委派、转办或加签给自己。".to_string(),
            Ineligible::ApplicantSide => {
                format!("{user} 是本申报的申请方，不能审批自己的申报。")
            }
            Ineligible::AlreadyOnTask => format!("{user} 已在办理该任务。"),
        },
        Rejection::CannotTakeBack { task, reason } => format!(
            "不能拿回{}：{}",
            n.task(*task),
            match reason {
                TakeBackBlock::NotYourDecision => "只有办理该任务的本人才能拿回自己的审批。",
                TakeBackBlock::NotAnApproval =>
                    "只能拿回审批通过；驳回与容缺通过已生效，不能拿回。",
                TakeBackBlock::NextActed =>
                    "下一环节已经办理（或已认领、委派、加签、中止计时、退回补正）。",
                TakeBackBlock::LeftStage => "案件已进入下一阶段，请由下一环节驳回。",
                TakeBackBlock::FlowEnded => "流程已经办结。",
                TakeBackBlock::StepRejected => "该并联审批已作出不通过的结论。",
                TakeBackBlock::IssuesDocument =>
                    "该环节的审批通过即出具公文（批复），已出具的公文只能依法撤销，不能拿回。",
            }
        ),
        Rejection::TimerNotDue { timer, due } => {
            format!("定时器 {timer} 尚未到期（{due} 到期）。")
        }
        Rejection::AssigneeRule { node, reason } => {
            format!("环节{}的办理人规则无法确定办理人：{reason}", n.node(node))
        }
        Rejection::NoRoute { node } => {
            format!("判断环节{}没有适用于本项目的去向。", n.node(node))
        }
        Rejection::OutsideCalendar(which) => {
            format!("时限超出工作日日历的范围，无法计算，操作未执行：{which}")
        }
        Rejection::InvalidMapping { problems } => {
            let each: Vec<String> = problems
                .iter()
                .map(|p| mapping_problem_zh(p, n, n))
                .collect();
            format!("迁移的节点对应关系有误：{}", each.join(""))
        }
        Rejection::MigrationBlocked { blockers } => {
            let each: Vec<String> = blockers.iter().map(|b| blocker_zh(b, n, n)).collect();
            format!("该项目不能迁移：{}", each.join(""))
        }
        Rejection::NotOnVersion { runs_on, asked } => {
            format!("该项目运行在 v{runs_on}，不是迁移所指的 v{asked}。")
        }
        Rejection::Internal(what) => format!("流程规则与案件状态不一致（内部错误）：{what}"),
    }
}

fn node_kind_zh(k: NodeType) -> &'static str {
    match k {
        NodeType::Task => "办理环节",
        NodeType::Parallel => "并联审批",
        NodeType::Gateway => "条件判断",
        NodeType::Wait => "等待",
        NodeType::Notify => "通知",
        NodeType::End => "结束",
    }
}

/// Why an instance cannot move, in one Chinese sentence: `old` names what the old version
/// called things, `new` what the new one does.
pub fn blocker_zh(b: &Blocker, old: &Names<'_>, new: &Names<'_>) -> String {
    match b {
        Blocker::NotRunning => "项目已办结或尚未开始，无需迁移。".to_string(),
        Blocker::NodeGone { node } => format!(
            "当前所在环节{}在新版本中已不存在，且未指定对应的新环节。",
            old.node(node)
        ),
        Blocker::NodeKindChanged { node, to, was, now } => format!(
            "环节{}（{}）对应的新环节{}是{}，类型不同。",
            old.node(node),
            node_kind_zh(*was),
            new.node(to),
            node_kind_zh(*now)
        ),
        Blocker::BranchRemoved { node, branch } => format!(
            "并联审批{}正在办理中，新版本删去了其中的「{}」部门，已有或待办的意见将无处落地。",
            old.node(node),
            old.department(branch)
        ),
        Blocker::MaterialGone { material } => format!(
            "容缺承诺补交的材料{}在新版本中已不存在。",
            old.material(material)
        ),
        Blocker::MaterialRedLine { material } => format!(
            "容缺承诺补交的材料{}在新版本中是红线材料，不得容缺。",
            new.material(material)
        ),
        Blocker::PromiseRuleGone { node, material } => format!(
            "材料{}的容缺承诺所依据的环节{}在新版本中不再允许容缺受理。",
            old.material(material),
            old.node(node)
        ),
        Blocker::StageGone { stage } => format!(
            "当前阶段{}在新版本中已不存在，且未指定对应的新阶段。",
            old.stage(stage)
        ),
        Blocker::StageAlreadyClosed { node, stage } => format!(
            "新版本把当前环节{}放在阶段{}，而该阶段已经结束。",
            old.node(node),
            new.stage(stage)
        ),
        Blocker::StageChanged { node, open, wants } => format!(
            "新版本把当前环节{}放在阶段{}，而项目正处于阶段{}。",
            old.node(node),
            new.stage(wants),
            new.stage(open)
        ),
        Blocker::ClosedStageLacksElement { stage, element } => format!(
            "已结束的阶段{}在新版本中要求要素{}，而项目尚未挂接，且不允许带缺项。",
            new.stage(stage),
            new.element(element)
        ),
        Blocker::ChannelGone { channel } => {
            format!("项目所在的绿色通道「{channel}」在新版本中已不存在。")
        }
        Blocker::ProjectField { field } => {
            format!("新版本要求项目信息{}，而本项目没有填写。", new.field(field))
        }
    }
}

/// A mistake in a migration's mapping, in one Chinese sentence (`old` and `new` as in
/// [`blocker_zh`]).
pub fn mapping_problem_zh(p: &MappingProblem, old: &Names<'_>, new: &Names<'_>) -> String {
    match p {
        MappingProblem::DifferentWorkflow { from, to } => {
            format!("不能在不同的流程之间迁移（「{from}」与「{to}」）。")
        }
        MappingProblem::SameVersion => "迁出和迁入是同一个版本。".to_string(),
        MappingProblem::UnknownOldNode { node } => {
            format!("原版本中没有环节「{node}」。")
        }
        MappingProblem::UnknownNewNode { node, to } => {
            format!("环节{}对应的「{to}」不是新版本中的环节。", old.node(node))
        }
        MappingProblem::UnknownOldStage { stage } => format!("原版本中没有阶段「{stage}」。"),
        MappingProblem::UnknownNewStage { stage, to } => {
            let _ = new;
            format!("阶段{}对应的「{to}」不是新版本中的阶段。", old.stage(stage))
        }
    }
}

/// A refusal as the API answers it: the status of its kind, its code, the Chinese message, and
/// in `details` the code and the engine's own words. A refusal whose typed form cannot be read
/// (one stored by a version before refusals were typed) keeps the engine's message and is
/// answered as a request to fix (422).
pub fn refused(r: &machine::Rejection, names: &Names<'_>) -> ApiError {
    let typed = serde_json::from_value::<Rejection>(r.detail.clone())
        .ok()
        .filter(|typed| typed.code() == r.code);
    let (kind, message) = match &typed {
        Some(t) => (t.kind(), rejection_message_zh(t, names)),
        None if r.internal => (
            RejectionKind::Internal,
            "服务器内部错误，详情见服务器日志。".into(),
        ),
        None => (RejectionKind::Invalid, r.message.clone()),
    };
    if r.internal {
        tracing::error!("the engine failed on a command: {r}");
    }
    ApiError::new(rejection_status(kind), &r.code, message)
        .in_english(r.message.clone())
        .with_details(serde_json::json!({ "rejection": r.code, "engine_message": r.message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, as the engine builds them; a new variant fails to compile in
    /// `rejection_message_zh` and is then added here.
    fn all() -> Vec<Rejection> {
        let t = TaskId(0);
        vec![
            Rejection::NotStarted,
            Rejection::AlreadyStarted,
            Rejection::InstanceEnded,
            Rejection::InvalidProject {
                field: "tier".into(),
                reason: "x".into(),
                problem: ProjectProblem::NotOneOf {
                    values: vec!["省级重大".into()],
                },
            },
            Rejection::UnknownChannel {
                channel: "c".into(),
            },
            Rejection::UnknownTask { task: t },
            Rejection::TaskNotOpen { task: t },
            Rejection::AlreadyDecided { task: t },
            Rejection::NotAssigned {
                task: t,
                actor: "li".into(),
            },
            Rejection::AlreadyClaimed {
                task: t,
                by: "li".into(),
            },
            Rejection::ActionNotAllowed {
                node: "intake".into(),
                action: Action::Extend,
            },
            Rejection::WrongTaskKind {
                task: t,
                reason: "x".into(),
            },
            Rejection::NotEarlierNode {
                to: "x".into(),
                allowed: vec!["intake".into()],
            },
            Rejection::MaterialIsRedLine {
                material: "land_site".into(),
            },
            Rejection::MaterialNotWaivable {
                material: "m".into(),
            },
            Rejection::NothingWaived,
            Rejection::MaterialNotExpected {
                material: "m".into(),
            },
            Rejection::MaterialNotListed {
                material: "m".into(),
            },
            Rejection::LimitExceedsRule {
                asked: "30wd".into(),
                rule: "20wd".into(),
            },
            Rejection::BadLimit {
                limit: "x".into(),
                reason: "x".into(),
            },
            Rejection::StageCannotClose {
                stage: "s".into(),
                element: "e".into(),
            },
            Rejection::UnknownElement {
                element: "e".into(),
            },
            Rejection::InvalidElement {
                element: "e".into(),
                reason: "x".into(),
            },
            Rejection::ElementNotInStage {
                element: "e".into(),
                stages: vec!["s".into()],
            },
            Rejection::NotSupervised {
                target: ClockRef::Task(t),
            },
            Rejection::SupervisionResolved {
                target: ClockRef::Step(shenpi_engine::runtime::event::StepId(0)),
            },
            Rejection::SupervisionUnsettled {
                target: ClockRef::Stage(shenpi_engine::runtime::event::StageVisitId(0)),
            },
            Rejection::NotAuthorised {
                actor: "a".into(),
                what: "x".into(),
            },
            Rejection::UnknownLetter {
                pre: PreApprovalId(0),
            },
            Rejection::NotLetterSigner {
                pre: PreApprovalId(0),
                actor: "a".into(),
            },
            Rejection::LetterAlreadySigned {
                pre: PreApprovalId(0),
                by: "a".into(),
            },
            Rejection::LetterChanged {
                pre: PreApprovalId(0),
                sent: "00".into(),
            },
            Rejection::ReasonRequired,
            Rejection::WithApplicant,
            Rejection::NotWithApplicant,
            Rejection::Suspended { task: t },
            Rejection::NotSuspended { task: t },
            Rejection::NoLimit { task: t },
            Rejection::CosignersOpen { task: t },
            Rejection::Consulting {
                task: t,
                with: "u".into(),
            },
            Rejection::NotConsulted { task: t },
            Rejection::AwaitingSigner {
                task: t,
                signer: "u".into(),
            },
            Rejection::NotASigner {
                task: t,
                user: "u".into(),
            },
            Rejection::SignerDecided {
                task: t,
                user: "u".into(),
            },
            Rejection::IneligibleUser {
                user: "u".into(),
                reason: Ineligible::ApplicantSide,
            },
            Rejection::CannotTakeBack {
                task: t,
                reason: TakeBackBlock::NextActed,
            },
            Rejection::AlreadyCosigner {
                task: t,
                user: "u".into(),
            },
            Rejection::TimerNotDue {
                timer: shenpi_engine::runtime::TimerId(1),
                due: "2026-03-02".into(),
            },
            Rejection::AssigneeRule {
                node: "n".into(),
                reason: "x".into(),
            },
            Rejection::NoRoute { node: "n".into() },
            Rejection::OutsideCalendar("2027-01-04".into()),
            Rejection::InvalidMapping {
                problems: vec![MappingProblem::UnknownOldNode { node: "x".into() }],
            },
            Rejection::MigrationBlocked {
                blockers: vec![Blocker::NodeGone { node: "x".into() }],
            },
            Rejection::NotOnVersion {
                runs_on: 2,
                asked: 1,
            },
            Rejection::Internal("x".into()),
        ]
    }

    fn has_han(s: &str) -> bool {
        s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    /// Every rejection reads in Chinese, and its typed form survives the trip through the
    /// durable layer's JSON (which `refused` relies on to word a stored refusal).
    #[test]
    fn every_rejection_has_a_chinese_message_and_survives_the_json_trip() {
        for r in all() {
            let m = rejection_message_zh(&r, &Names::default());
            assert!(has_han(&m), "{}: {m}", r.code());
            let json = serde_json::to_value(&r).expect("serialises");
            let back: Rejection = serde_json::from_value(json).expect("deserialises");
            assert_eq!(back, r);
            let wire = machine::Rejection {
                code: r.code().to_string(),
                message: r.to_string(),
                detail: serde_json::to_value(&r).expect("serialises"),
                internal: false,
            };
            let e = refused(&wire, &Names::default());
            assert_eq!(e.body.error, r.code());
            assert_eq!(e.body.message, m);
        }
    }

    /// The engine codes docs/server.md names under a status other than 422; every other engine
    /// code is documented as 422.
    const DOCUMENTED: &[(&str, u16)] = &[
        ("not_assigned", 403),
        ("not_authorised", 403),
        ("unknown_task", 404),
        ("already_decided", 409),
        ("task_not_open", 409),
        ("already_claimed", 409),
        ("instance_ended", 409),
        ("already_started", 409),
        ("with_applicant", 409),
        ("cosigners_open", 409),
        ("already_cosigner", 409),
        ("consulting", 409),
        ("awaiting_signer", 409),
        ("signer_decided", 409),
        ("cannot_take_back", 409),
        ("supervision_resolved", 409),
        ("letter_already_signed", 409),
        ("letter_changed", 409),
        ("unknown_letter", 404),
        ("not_letter_signer", 403),
        ("migration_blocked", 409),
        ("not_on_version", 409),
        ("internal", 500),
    ];

    /// The status each code stands under in the errors table of docs/server.md (a row is
    /// `| status | `code` / `code` ... | when | details |`).
    fn statuses_in_docs() -> Vec<(String, u16)> {
        let doc = include_str!("../../../docs/server.md");
        let start = doc.find("### Errors").expect("the errors section");
        let mut out = Vec::new();
        for row in doc[start..].lines().filter(|l| l.starts_with("| ")) {
            let mut cells = row.split('|').map(str::trim).skip(1);
            let (Some(status), Some(codes)) = (cells.next(), cells.next()) else {
                continue;
            };
            let Ok(status) = status.parse::<u16>() else {
                continue;
            };
            for code in codes.split('`').skip(1).step_by(2) {
                out.push((code.to_string(), status));
            }
        }
        out
    }

    /// Every refusal answers the status the API documents for its code, and the documentation
    /// says what `DOCUMENTED` says.
    #[test]
    fn every_rejection_code_answers_its_documented_status() {
        let docs = statuses_in_docs();
        for (code, status) in DOCUMENTED {
            assert!(
                docs.iter().any(|(c, s)| c == code && s == status),
                "docs/server.md does not list `{code}` under {status}: {docs:?}"
            );
        }
        for r in all() {
            let documented = DOCUMENTED
                .iter()
                .find(|(c, _)| *c == r.code())
                .map_or(422, |(_, s)| *s);
            let wire = machine::Rejection {
                code: r.code().to_string(),
                message: r.to_string(),
                detail: serde_json::to_value(&r).expect("serialises"),
                internal: false,
            };
            let e = refused(&wire, &Names::default());
            assert_eq!(e.status.as_u16(), documented, "{}", r.code());
            assert_eq!(rejection_status(r.kind()).as_u16(), documented);
        }
    }

    /// A refusal stored before refusals were typed still answers, as a request to fix.
    #[test]
    fn an_untyped_refusal_keeps_the_engines_words() {
        let wire = machine::Rejection {
            code: "not_assigned".into(),
            message: "`li` is not assigned to task 1".into(),
            detail: serde_json::Value::Null,
            internal: false,
        };
        let e = refused(&wire, &Names::default());
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.body.error, "not_assigned");
        assert_eq!(e.body.message, wire.message);
    }

    /// Every validation rule the engine knows has its Chinese title.
    #[test]
    fn every_validation_code_reads_in_chinese() {
        for r in shenpi_engine::validate::RULES {
            let t = diagnostic_title_zh(r.code)
                .unwrap_or_else(|| panic!("{} has no Chinese title", r.code));
            assert!(has_han(t), "{}: {t}", r.code);
        }
    }

    #[test]
    fn limits_read_in_chinese() {
        assert_eq!(limit_zh("20wd"), "20 个工作日");
        assert_eq!(limit_zh("3d"), "3 个自然日");
        assert_eq!(limit_zh("?"), "?");
    }
}
