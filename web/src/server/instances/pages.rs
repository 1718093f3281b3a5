//! The instance page: project facts, open tasks, promises and pre-approvals, the diagram, the
//! elements ledger, the history and the audit trail, and the applicant's actions (supply a
//! promised material, resubmit after 补正, withdraw, attach an element). The blocks the task
//! page shows too ([`Loaded`], [`facts`], [`promises_table`], [`elements_block`], [`history`])
//! are written here once.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use shenpi_engine::runtime::event::{Decision, SignOrder, TimerKind};
use shenpi_engine::runtime::policy as engine_policy;
use shenpi_engine::runtime::state::PromiseStatus;
use shenpi_engine::runtime::view::{TaskView, outcome_name};
use shenpi_engine::runtime::{Colour, Command, Event, InstanceState, InstanceView};

use super::super::accounts::User;
use super::super::auth::PageUser;
use super::super::chrome::{
    Flash, clock_provisional, colour_mark, datetime, day_of, days_text, due_date, fail,
    outcome_text, page,
};
use super::super::commands::{command_label_zh, command_name, page_caller, run_command_with};
use super::super::diagrams;
use super::super::engine::{EngineCtx, timestamp};
use super::super::error::ApiError;
use super::super::files;
use super::super::form::{self, Fields, hidden};
use super::super::inbox::task_name;
use super::super::letters;
use super::super::names::WorkflowNames;
use super::super::state::App;
use super::detail::{InstanceDetail, instance_detail};
use super::forms::InstanceForm;
use shenpi_engine::model::FieldType;

/// An event in Chinese with the workflow's names (who, what, the opinion), for the history of
/// the instance and task pages and the dossier; `None` for the bookkeeping events nobody reads.
pub fn event_text(e: &Event, ctx: &EngineCtx) -> Option<String> {
    let names = WorkflowNames(&ctx.def);
    let node_name = |n: &str| names.node(n);
    Some(match e {
        Event::InstanceStarted { by, .. } => format!("{by} 提交申报"),
        Event::ChannelChosen {
            channel, reason, ..
        } => format!(
            "进入绿色通道「{}」：{}",
            names.channel(channel),
            channel_reason(&names, reason)
        ),
        Event::NodeEntered { node } => format!("进入环节「{}」", node_name(node)),
        Event::NodeSkipped { node, channel } => {
            format!(
                "绿色通道「{}」跳过「{}」",
                names.channel(channel),
                node_name(node)
            )
        }
        Event::StageEntered { stage, .. } => format!("进入阶段「{}」", names.stage(stage)),
        Event::StageClosed { .. } => "阶段完成".to_string(),
        Event::ElementAttached { element, by, .. } => {
            format!("{by} 挂接要素「{}」", names.element(element))
        }
        Event::TaskOpened(t) => format!(
            "任务「{}{}」分派给 {}",
            node_name(&t.node),
            // A parallel step's branch: which department's part of the step.
            t.branch
                .as_ref()
                .and(t.department.as_deref())
                .map(|d| format!("·{}", names.department(d)))
                .unwrap_or_default(),
            names.party(&t.assignment)
        ),
        Event::TaskClaimed { by, .. } => format!("{by} 认领任务"),
        Event::TaskDelegated {
            to, by, transfer, ..
        } => format!("{by} {} 给 {to}", if *transfer { "转办" } else { "委托" }),
        Event::TaskDecided {
            decision,
            by,
            to,
            comment,
            ..
        } => format!(
            "{by} {}{}{}",
            match decision {
                Decision::Approve => "审批通过",
                Decision::ApproveConditional => "容缺通过",
                Decision::Reject => "驳回",
                Decision::Accept => "核验通过",
                Decision::Refuse => "核验不通过",
            },
            to.as_ref()
                .map(|t| format!(" 至「{}」", node_name(t)))
                .unwrap_or_default(),
            comment
                .as_ref()
                .map(|c| format!("：{c}"))
                .unwrap_or_default()
        ),
        Event::ReturnedToApplicant {
            by,
            reason,
            materials,
            ..
        } => format!(
            "{by} 退回补正：{reason}{}",
            if materials.is_empty() {
                String::new()
            } else {
                format!(
                    "（需补正：{}）",
                    materials
                        .iter()
                        .map(|m| names.material(m))
                        .collect::<Vec<_>>()
                        .join("、")
                )
            }
        ),
        Event::ApplicantResubmitted { by } => format!("{by} 补正后重新提交"),
        Event::Suspended { by, reason, .. } => format!("{by} 中止计时：{reason}"),
        Event::Resumed { by, .. } => format!("{by} 恢复计时"),
        Event::LimitExtended {
            amount, reason, by, ..
        } => format!("{by} 延长时限 {amount}：{reason}"),
        Event::StepOpened { node, .. } => format!("并联审批「{}」开始", node_name(node)),
        Event::JoinFired {
            approved,
            approvals,
            rejects,
            ..
        } => format!(
            "并联汇总：{}（同意 {approvals}，不同意 {rejects}）",
            if *approved { "通过" } else { "不通过" }
        ),
        Event::RejectedBack { to, by, .. } => format!("{by} 驳回至「{}」", node_name(to)),
        Event::PreApproved { materials, by, .. } => format!(
            "{by} 出具预批复（容缺材料：{}）",
            materials
                .iter()
                .map(|m| names.material(m))
                .collect::<Vec<_>>()
                .join("、")
        ),
        Event::LetterIssued { node, .. } => {
            format!(
                "出具「{}」环节的容缺受理承诺书，待申请人签署",
                node_name(node)
            )
        }
        Event::LetterSigned { by, remote, .. } => format!(
            "{by} 签署容缺受理承诺书{}",
            remote
                .as_ref()
                .map(|r| format!("（来源地址 {r}）"))
                .unwrap_or_default()
        ),
        Event::PromiseMade { material, .. } => {
            format!("申请人承诺补交「{}」", names.material(material))
        }
        Event::MaterialSupplied { material, by, .. } => {
            format!("{by} 补交材料「{}」", names.material(material))
        }
        Event::MaterialVerified { accepted, by, .. } => format!(
            "{by} 核验材料：{}",
            if *accepted { "通过" } else { "不通过" }
        ),
        Event::FormalApproval { .. } => "容缺材料全部核验，转为正式批复".to_string(),
        Event::PromiseBreached { .. } => "承诺逾期未履行".to_string(),
        Event::CreditMarked { material, .. } => {
            format!("记入信用记录（{}）", names.material(material))
        }
        Event::Warning { colour, .. } => format!(
            "预警：{}",
            match colour {
                Colour::Red => "红（超期）",
                Colour::Yellow => "黄",
                Colour::Green => "绿",
            }
        ),
        Event::Supervised { .. } | Event::ItemSupervised { .. } => "挂牌督办".to_string(),
        Event::SupervisionResolved { note, .. } => format!("督办销号：{note}"),
        Event::Retimed {
            revision, moves, ..
        } => format!(
            "工作日历第 {revision} 版发布，重新计时：{}",
            moves
                .iter()
                .map(|m| {
                    // A yellow point is the start of its day; the others end their last day.
                    let (what, day): (&str, fn(i64) -> String) = match &m.kind {
                        TimerKind::Yellow { .. } => ("黄色预警", day_of),
                        TimerKind::Due { .. } => ("到期日", due_date),
                        TimerKind::Escalation { .. } | TimerKind::Ladder { .. } => {
                            ("超期督办", due_date)
                        }
                        TimerKind::Wait { .. } => ("等待", due_date),
                    };
                    format!(
                        "{what}由 {} 改为 {}",
                        day(m.old_due.as_millisecond()),
                        day(m.new_due.as_millisecond())
                    )
                })
                .collect::<Vec<_>>()
                .join("；")
        ),
        Event::Urged { by, .. } => format!("{by} 催办"),
        Event::Commented { by, text, .. } => format!("{by} 意见：{text}"),
        Event::CarbonCopied { by, to, .. } => format!("{by} 抄送 {}", to.join("、")),
        Event::CopyRead { by, .. } => format!("{by} 已阅抄送"),
        Event::Consulted { to, by, text, .. } => format!(
            "{by} 委派 {to} 征求意见{}",
            text.as_ref().map(|t| format!("：{t}")).unwrap_or_default()
        ),
        Event::ConsultAnswered { by, opinion, .. } => {
            format!("{by} 回复委派意见：{opinion}（任务交回委派人）")
        }
        Event::SignerAdded {
            user, order, by, ..
        } => format!(
            "{by} {} {user}",
            match order {
                SignOrder::Before => "前加签",
                SignOrder::With => "加签",
                SignOrder::After => "后加签",
            }
        ),
        Event::SignerRemoved { user, by, .. } => format!("{by} 减签 {user}"),
        Event::TakenBack { by, task, .. } => format!("{by} 拿回任务 {task} 的审批，重新办理"),
        Event::Withdrawn { by, .. } => format!("{by} 撤回申报"),
        Event::EndReached { node, .. } => format!("流程到达「{}」", node_name(node)),
        Event::InstanceEnded { outcome } => {
            format!("办结：{}", outcome_text(outcome_name(*outcome)))
        }
        Event::Migrated {
            from,
            to,
            mapping,
            by,
            ..
        } => {
            let renamed: Vec<String> = mapping
                .nodes
                .iter()
                .map(|(old, new)| format!("环节「{}」原为「{old}」", node_name(new)))
                .chain(
                    mapping
                        .stages
                        .iter()
                        .map(|(old, new)| format!("阶段「{}」原为「{old}」", names.stage(new))),
                )
                .collect();
            let mut text = format!("{by} 将本项目由流程规则 v{from} 迁移至 v{to}");
            if !renamed.is_empty() {
                text.push_str(&format!("（{}）", renamed.join("，")));
            }
            text
        }
        _ => return None,
    })
}

/// Why a channel was chosen, as the engine recorded it (`chosen explicitly at start`, ``flag `F`
/// is set``, ``condition `EXPR` holds``), in Chinese with the project's fields by their labels.
fn channel_reason(names: &WorkflowNames<'_>, reason: &str) -> String {
    let inner = |s: &str, pre: &str, post: &str| {
        s.strip_prefix(pre)
            .and_then(|r| r.strip_suffix(post))
            .map(str::to_string)
    };
    if reason == "chosen explicitly at start" {
        return "申报时指定".to_string();
    }
    if let Some(f) = inner(reason, "flag `", "` is set") {
        return format!("「{}」为是", names.field(&f));
    }
    if let Some(expr) = inner(reason, "condition `", "` holds") {
        let mut out = String::new();
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("project.") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + "project.".len()..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.push_str(&format!("「{}」", names.field(&tail[..end])));
            rest = &tail[end..];
        }
        out.push_str(rest);
        let out = quoted_zh(&lists_zh(&out))
            .replace(" in ", " 属于 ")
            .replace(" && ", " 且 ")
            .replace(" || ", " 或 ")
            .replace(">=", "≥")
            .replace("<=", "≤")
            .replace("==", "为");
        return format!("项目满足条件 {out}");
    }
    reason.to_string()
}

/// `x in ["a", "b"]` as a person says it: `x 为「a」或「b」`.
fn lists_zh(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find(" in [") {
        let Some(close) = rest[at..].find(']') else {
            break;
        };
        let items: Vec<String> = rest[at + " in [".len()..at + close]
            .split(',')
            .map(|i| format!("「{}」", i.trim().trim_matches(['"', '\''])))
            .collect();
        out.push_str(&rest[..at]);
        out.push_str(" 为");
        out.push_str(&items.join("或"));
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    out
}

/// String literals of a condition (`"重中之重"`, `'备案类'`) in corner brackets.
fn quoted_zh(expr: &str) -> String {
    let mut out = String::new();
    let mut open: Option<char> = None;
    for c in expr.chars() {
        match (open, c) {
            (None, '"' | '\'') => {
                open = Some(c);
                out.push('「');
            }
            (Some(q), c) if c == q => {
                open = None;
                out.push('」');
            }
            _ => out.push(c),
        }
    }
    out
}

/// An instance as its pages read it: the API's detail, the state, the definition it runs on,
/// and the engine's view at now.
pub struct Loaded {
    pub detail: InstanceDetail,
    pub st: InstanceState,
    /// The events so far (the diagram reads which nodes were entered).
    pub history: Vec<Event>,
    pub ctx: std::sync::Arc<EngineCtx>,
    pub view: InstanceView,
    /// The material files supplied, by version (`files::versions`).
    pub files: Vec<super::super::files::FileVersion>,
}

/// Reads an instance for a page, if the user may see it.
pub async fn load(app: &App, user: &User, id: &str) -> Result<Loaded, ApiError> {
    let detail = instance_detail(app, user, id).await?;
    let (_, st, events, ctx) = app.instance(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("没有编号为 {id} 的办理实例。"))
            .in_english(format!("no instance `{id}`"))
    })?;
    let view = shenpi_engine::runtime::view(&ctx.def, &ctx.cal, &st, timestamp(app.now()));
    let files = super::super::files::versions(&events);
    Ok(Loaded {
        detail,
        st,
        history: events.into_iter().map(|(_, _, e)| e).collect(),
        ctx,
        view,
        files,
    })
}

/// Opening an instance (its page or one of its task pages) marks the copies sent to the user
/// read (抄送): a `read_copies` command through the bus when there is one to mark, and the
/// page then shows the state after it.
pub async fn read_copies(app: &App, user: &PageUser, id: &str, l: Loaded) -> Loaded {
    if !l.st.copies.iter().any(|c| c.unread_by(&user.user.name)) {
        return l;
    }
    let cmd = shenpi_engine::runtime::Command::ReadCopies;
    if run_command_with(app, &page_caller(user), id, cmd, None, None)
        .await
        .is_err()
    {
        return l;
    }
    load(app, &user.user, id).await.unwrap_or(l)
}

/// The copies sent from the instance (抄送): from whom, to whom, and who has read them.
pub fn copies_block(l: &Loaded) -> Markup {
    if l.st.copies.is_empty() {
        return html! {};
    }
    html! {
        section.copies {
            h2 { "抄送" }
            table.copies {
                thead { tr { th { "抄送人" } th { "抄送给" } th { "附言" } } }
                tbody { @for c in &l.st.copies {
                    tr {
                        td { (c.by) }
                        td { @for u in &c.to {
                            @let read = c.read_by.contains(u);
                            span class=(if read { "copy-read" } else { "copy-unread" }) data-user=(u) {
                                (u) "（" (if read { "已读" } else { "未读" }) "）"
                            }
                            " "
                        } }
                        td { (c.text.clone().unwrap_or_default()) }
                    }
                } }
            }
        }
    }
}

/// The instance's diagram, current nodes highlighted, passed ones and branches not taken marked.
pub fn diagram_svg(l: &Loaded) -> Markup {
    PreEscaped(diagrams::instance_svg(&l.ctx.def, &l.st, &l.history))
}

pub fn facts(l: &Loaded) -> Markup {
    let fields = &l.ctx.def.workflow.fields;
    let project = l.detail.project.as_ref();
    let values = project
        .map(|p| p.fields.clone())
        .unwrap_or(l.st.project.clone());
    html! {
        table.facts {
            @if let Some(p) = project { tr { th { "项目编号" } td { (p.id) } } tr { th { "申报单位账号" } td { (p.owner) } } }
            @for f in fields {
                @if let Some(v) = values.get(&f.id.value) {
                    tr {
                        th { (f.label.clone().unwrap_or_else(|| f.id.value.clone())) }
                        td { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) }
                    }
                }
            }
            @if let Some(c) = &l.view.channel { tr { th { "通道" } td { span.green-channel { (WorkflowNames(&l.ctx.def).channel(c)) } } } }
        }
    }
}

pub fn promises_table(l: &Loaded) -> Markup {
    html! {
        @if l.view.promises.is_empty() {
            p.empty { "无容缺承诺。" }
        } @else {
            table.promises {
                thead { tr { th { "材料" } th { "状态" } th { "承诺截止" } th { "预警" } } }
                tbody {
                    @for p in &l.view.promises {
                        @let name = WorkflowNames(&l.ctx.def).material(&p.material);
                        tr.promise data-material=(p.material) {
                            td { (name) }
                            td { (if p.breached { "违约" } else { match p.status { PromiseStatus::Open => "待补交", PromiseStatus::Supplied => "已补交待核验", PromiseStatus::Verified => "已核验" } }) }
                            td.due { @if let Some(c) = &p.clock { @if let Some(d) = c.due { (due_date(d.as_millisecond())) } " （" (days_text(Some(c.days_left))) "）" (clock_provisional(c)) } }
                            td { @if let Some(c) = &p.clock { (colour_mark(c.colour)) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn elements_block(l: &Loaded) -> Markup {
    let names = WorkflowNames(&l.ctx.def);
    let stage_name = |s: &str| names.stage(s);
    let element_name = |e: &str| names.element(e);
    html! {
        @if let Some(s) = &l.view.stage {
            h3 { "当前阶段：" (stage_name(&s.stage)) @if let Some(c) = &s.clock { " " (colour_mark(c.colour)) " " (days_text(Some(c.days_left))) @if let Some(d) = c.due { " · 截止 " (due_date(d.as_millisecond())) } (clock_provisional(c)) } }
            table.elements {
                thead { tr { th { "要素" } th { "责任部门" } th { "状态" } th { "时限" } } }
                tbody { @for e in &s.elements {
                    tr { td { (element_name(&e.element)) } td { (names.department(&e.from)) }
                         td { @if e.attached { "已挂接" } @else if e.may_carry { "缺（可带缺项转入下阶段）" } @else { "缺" } }
                         td { @if let Some(c) = &e.clock { (colour_mark(c.colour)) " " (days_text(Some(c.days_left))) (clock_provisional(c)) } } }
                } }
            }
        }
        @if !l.view.elements.is_empty() {
            h3 { "已挂接要素（按阶段）" }
            ul.ledger { @for e in &l.view.elements {
                li { strong { (e.stage.as_deref().map(stage_name).unwrap_or_default()) } " · " (element_name(&e.element)) " · " (e.by) " · " (element_fields(l, &e.element, &e.fields)) }
            } }
        }
        @if l.view.outstanding.iter().any(|o| !o.resolved) {
            h3 { "带缺项" }
            ul { @for o in l.view.outstanding.iter().filter(|o| !o.resolved) {
                li { (stage_name(&o.stage)) " · " (element_name(&o.element)) @if let Some(c) = &o.clock { " " (colour_mark(c.colour)) " " (days_text(Some(c.days_left))) (clock_provisional(c)) } }
            } }
        }
    }
}

/// An attached element's values, by the labels the element catalogue gives its fields.
fn element_fields(l: &Loaded, element: &str, values: &serde_json::Value) -> Markup {
    let kind = l
        .ctx
        .def
        .workflow
        .elements
        .iter()
        .find(|e| e.id.value == element);
    let Some(obj) = values.as_object() else {
        return html! {};
    };
    html! {
        span.fields { @for (k, v) in obj {
            @let label = kind
                .and_then(|e| e.fields.iter().find(|f| f.id.value == *k))
                .and_then(|f| f.label.clone())
                .unwrap_or_else(|| k.clone());
            span.field { (label) "：" (match v { serde_json::Value::String(s) => s.clone(), serde_json::Value::Bool(b) => (if *b { "是" } else { "否" }).to_string(), other => other.to_string() }) } " "
        } }
    }
}

pub fn history(l: &Loaded) -> Markup {
    html! {
        ol.timeline {
            @for h in &l.detail.history {
                @if let Ok(ev) = serde_json::from_value::<Event>(h.event.clone()) {
                    @if let Some(t) = event_text(&ev, &l.ctx) {
                        li { time { (datetime(h.at)) } " " (t) }
                    }
                }
            }
        }
        @if !l.detail.audit.is_empty() {
            details { summary { "操作审计（谁、何时、从何处）" }
                table.audit { @for a in &l.detail.audit {
                    tr { td { (datetime(a.at)) } td { (a.user) } td { (a.remote.clone().unwrap_or_default()) } td { (a.action) } td { (a.outcome) } }
                } }
            }
        }
    }
}

fn task_row(l: &Loaded, t: &TaskView) -> Markup {
    let names = WorkflowNames(&l.ctx.def);
    html! {
        tr { td { (colour_mark(t.colour)) " " strong { (task_name(&names, &t.label)) } }
             td data-label="办理人" { (names.party(&t.assignment)) @if let Some(c) = &t.claimed_by { "（" (c) " 已认领）" } }
             td data-label="时限" { (days_text(t.days_left)) @if let Some(c) = &t.clock { @if let Some(d) = c.due { br; small { "截止 " (due_date(d.as_millisecond())) } } (clock_provisional(c)) } } }
    }
}

/// For the applicant, at the top of the page: what the project still owes, why, and by when:
/// the materials a 补正 asked for and its reason, the promised materials with their due dates,
/// the current stage's elements not yet attached.
fn what_is_missing(l: &Loaded) -> Markup {
    let names = WorkflowNames(&l.ctx.def);
    let returned = l.st.returned.as_ref().filter(|_| l.view.with_applicant);
    let promises: Vec<_> = l
        .view
        .promises
        .iter()
        .filter(|p| matches!(p.status, PromiseStatus::Open))
        .collect();
    let elements: Vec<_> = l
        .view
        .stage
        .iter()
        .flat_map(|s| s.elements.iter())
        .filter(|e| !e.attached)
        .collect();
    if returned.is_none() && promises.is_empty() && elements.is_empty() {
        return html! {};
    }
    html! {
        section.missing role="alert" {
            h2 { "尚缺什么" }
            ul {
                @if let Some(r) = returned {
                    li.returned {
                        strong { "退回补正" } "：" (r.reason)
                        @if !r.materials.is_empty() {
                            "。请补正："
                            (r.materials.iter().map(|m| format!("「{}」", names.material(m))).collect::<Vec<_>>().join("、"))
                        }
                        "（" (r.by) " 退回；补正期间审批计时中止，补正完毕后点「补正完毕，重新提交」继续计时）"
                    }
                }
                @for p in &promises {
                    li.promise {
                        strong { "容缺承诺" } "：补交「" (names.material(&p.material)) "」"
                        @if let Some(c) = &p.clock {
                            @if let Some(d) = c.due { "，截止 " (due_date(d.as_millisecond())) }
                            "（" (days_text(Some(c.days_left))) "）" " " (colour_mark(c.colour)) (clock_provisional(c))
                        }
                    }
                }
                @for e in &elements {
                    li.element {
                        strong { "要素" } "：「" (names.element(&e.element)) "」尚未挂接，由" (names.department(&e.from)) "提供"
                        @if let Some(c) = &e.clock {
                            @if let Some(d) = c.due { "，截止 " (due_date(d.as_millisecond())) }
                            "（" (days_text(Some(c.days_left))) "）"
                        }
                        @if e.may_carry { "；可带缺项转入下一阶段" }
                    }
                }
            }
        }
    }
}

/// The instance page's query: what was just done, after an action redirected here.
#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn instance_page(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let l = match load(&app, &user.user, &id).await {
        Ok(l) => l,
        Err(e) => return fail(&user, e),
    };
    let l = read_copies(&app, &user, &id, l).await;
    let flash = q.done.map(|d| Flash {
        ok: true,
        text: format!("已办理：{}", command_label_zh(&d)),
        code: None,
    });
    // The applicant's actions are offered to whom the engine's policy counts as this instance's
    // applicant side (its applicant, the service officer its project names).
    let is_party = engine_policy::is_applicant_party(
        &l.ctx.def.plan,
        &l.st.applicant,
        &l.st.project,
        &user.user.actor(),
    );
    let open_promises: Vec<_> = l
        .view
        .promises
        .iter()
        .filter(|p| matches!(p.status, PromiseStatus::Open))
        .collect();
    // The materials the applicant may upload now: each open promise's, and a 补正's (all the
    // node's materials when it names none). The engine still decides on each upload.
    let mut expected: Vec<String> = open_promises
        .iter()
        .map(|p| p.material.to_string())
        .collect();
    if let Some(r) = &l.st.returned {
        let listed: Vec<String> = if r.materials.is_empty() {
            l.detail
                .materials
                .iter()
                .map(|m| m.material.clone())
                .collect()
        } else {
            r.materials.iter().map(|m| m.to_string()).collect()
        };
        for m in listed {
            if !expected.contains(&m) && !r.supplied.iter().any(|s| *s == m) {
                expected.push(m);
            }
        }
    }
    let title = l
        .detail
        .project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.clone());
    let names = WorkflowNames(&l.ctx.def);
    let docs = super::super::documents::documents_of(&app, &id)
        .await
        .unwrap_or_default();
    let body = html! {
        h1 { (title) }
        p.no-print { a.button href={"/instances/" (id) "/dossier"} { "打印办件档案" } }
        @if is_party { (what_is_missing(&l)) }
        p.status { "流程 " (l.ctx.def.workflow.name) "（第 " (l.detail.def_version) " 版）"
            " · 状态：" strong.outcome { (outcome_text(&l.view.outcome)) }
            @if l.view.with_applicant { " · " span.warn { "已退回申请人补正" } } }
        div.grid {
            section { h2 { "项目信息" } (facts(&l)) }
            section {
                h2 { "当前待办" }
                @if l.view.tasks.is_empty() { p.empty { "无。" } } @else {
                    div.table-wrap.cards { table { tbody { @for t in &l.view.tasks { (task_row(&l, t)) } } } }
                    @if user.user.is_staff() {
                        ul { @for t in &l.view.tasks { li { a href={"/instances/" (id) "/tasks/" (t.id)} { "办理「" (task_name(&names, &t.label)) "」" } } } }
                    }
                }
                h2 { "容缺承诺" }
                (promises_table(&l))
                @if !l.view.pre_approvals.is_empty() {
                    p { @for p in &l.view.pre_approvals { span.preapproval { (if p.formal { "正式批复" } else { "预批复" }) "（" (names.node(&p.node)) "）" } " " } }
                }
            }
        }
        (letters::letters_block(&user, &id, &letters::instance_letters(&l.ctx, &l.st, &user.user, app.now())))
        // The diagram carries its own legend.
        section { h2 { "流程图" } div.diagram { (diagram_svg(&l)) } }
        section.material-files { h2 { "材料文件" } (files::versions_block(&names, &id, &l.files)) }
        section.documents { h2 { "公文" } (super::super::documents::list_block(&docs)) }
        section { h2 { "要素台账" } (elements_block(&l)) }
        (copies_block(&l))
        @if is_party || user.user.has("admin") {
            section.applicant {
                h2 { "申请人操作" }
                @for m in &expected {
                    (files::upload_form(&user, &id, m, &names.material(m), app.security.max_file_bytes.div_ceil(1 << 20)))
                }
                @for p in &open_promises {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user))
                        input type="hidden" name="action" value="supply";
                        input type="hidden" name="material" value=(p.material);
                        button type="submit" { "补交材料「" (names.material(&p.material)) "」" }
                    }
                }
                @if l.view.with_applicant {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user)) input type="hidden" name="action" value="resume";
                        button type="submit" { "补正完毕，重新提交" }
                    }
                }
                @if l.view.outcome == "running" {
                    form method="post" action={"/instances/" (id)} class="inline" {
                        (hidden(&user)) input type="hidden" name="action" value="withdraw";
                        button type="submit" class="danger" data-confirm="确定撤回本项目的申报吗？撤回后流程终止，不能恢复。" { "撤回申报" }
                    }
                }
            }
        }
        @if l.view.outcome == "running" && !l.ctx.def.workflow.elements.is_empty() {
            section.attach {
                h2 { "挂接要素" }
                p.muted { "按要素目录填写各字段；由要素的责任部门或申请人挂接到当前阶段。" }
                @for e in &l.ctx.def.workflow.elements {
                    details.element-form {
                        summary { (e.name.clone().unwrap_or_else(|| e.id.value.clone())) " · " (names.department(&e.owner.value)) }
                        form method="post" action={"/instances/" (id)} {
                            (hidden(&user)) input type="hidden" name="action" value="attach";
                            input type="hidden" name="element" value=(e.id.value);
                            @for f in &e.fields {
                                label {
                                    (f.label.clone().unwrap_or_else(|| f.id.value.clone())) @if f.required { " *" } " "
                                    @if !f.values.is_empty() {
                                        select name={"e." (f.id.value)} required[f.required] { option value="" { "—" } @for v in &f.values { option value=(v.value) { (v.value) } } }
                                    } @else if matches!(f.ty.value, FieldType::Bool) {
                                        select name={"e." (f.id.value)} required[f.required] { option value="" { "—" } option value="true" { "是" } option value="false" { "否" } }
                                    } @else if matches!(f.ty.value, FieldType::Number | FieldType::Int) {
                                        input name={"e." (f.id.value)} type="number" step="any" required[f.required];
                                    } @else if matches!(f.ty.value, FieldType::Date) {
                                        input name={"e." (f.id.value)} type="date" required[f.required];
                                    } @else {
                                        input name={"e." (f.id.value)} required[f.required];
                                    }
                                }
                            }
                            button type="submit" { "挂接" }
                        }
                    }
                }
            }
        }
        section { h2 { "办理历程" } (history(&l)) }
    };
    page(&title, Some(&user), flash.as_ref(), body).into_response()
}

/// An applicant's action on the instance page.
pub async fn instance_act(
    State(app): State<App>,
    user: PageUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut cmd = match posted
        .action::<InstanceForm>()
        .and_then(InstanceForm::command)
    {
        Ok(c) => c,
        Err(e) => return fail(&user, e.into()),
    };
    // An element's form sends one `e.FIELD` per field of the element catalogue, typed here as
    // the catalogue declares them.
    if let Command::AttachElement { element, fields } = &mut cmd
        && posted.first("fields").is_none()
        && let Ok(Some((_, _, _, ctx))) = app.instance(&id).await
        && let Some(kind) = ctx
            .def
            .workflow
            .elements
            .iter()
            .find(|e| e.id.value == element.as_str())
    {
        let mut typed = serde_json::Map::new();
        for f in &kind.fields {
            if let Some(v) = posted
                .first(&format!("e.{}", f.id.value))
                .map(str::trim)
                .filter(|v| !v.is_empty())
            {
                typed.insert(f.id.value.clone(), form::typed_value(f.ty.value, v));
            }
        }
        *fields = serde_json::Value::Object(typed);
    }
    let label = command_name(&cmd);
    let key = posted.key(&user);
    match run_command_with(&app, &page_caller(&user), &id, cmd, key, None).await {
        Ok(_) => Redirect::to(&format!("/instances/{id}?done={label}")).into_response(),
        Err(e) => fail(&user, e),
    }
}
