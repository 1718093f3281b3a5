//! The task page (办理): the project facts, the node's materials with their status (red-line
//! marked), the promises, and the action forms the node allows (approve, 容缺 with only waivable
//! materials selectable, reject back to a chosen node, return for 补正, delegate, co-signer,
//! extend, suspend, comment; claim for a pool task, verify for a verification task). A refused
//! action shows the page again with the refusal.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use shenpi_engine::compile::Party;
use shenpi_engine::model::{Action, NodeType, RawLimit};
use shenpi_engine::runtime::event::{SignOrder, TaskKind};
use shenpi_engine::runtime::{self, Command, CommandEnvelope, TaskId};

use super::super::auth::PageUser;
use super::super::chrome::{
    Flash, clock_provisional, colour_mark, days_text, due_date, fail, page,
};
use shenpi_engine::runtime::policy;

use super::super::auth::policy as auth_policy;
use super::super::commands::{command_name, page_caller, run_command_with};
use super::super::engine::timestamp;
use super::super::form::{Fields, hidden};
use super::super::instances::detail::materials_of;
use super::super::instances::pages::{
    Loaded, copies_block, diagram_svg, elements_block, facts, history, load, promises_table,
    read_copies,
};
use super::super::names::WorkflowNames;
use super::super::state::App;
use super::forms::TaskForm;

fn material_status(s: &str) -> &'static str {
    match s {
        "present" => "已提交",
        "missing" => "缺",
        "promised" => "已承诺（容缺）",
        "supplied" => "已补交，待核验",
        "verified" => "已核验",
        "breached" => "逾期未补（违约）",
        _ => "未知",
    }
}

/// A limit as people write it (「20工作日」), which the form's limit fields read back.
fn limit_text(l: &RawLimit) -> String {
    match shenpi_engine::limit::Limit::parse(l, true) {
        Ok(l) => match l.unit {
            shenpi_engine::limit::Unit::WorkingDays => format!("{}工作日", l.amount),
            shenpi_engine::limit::Unit::Days => format!("{}自然日", l.amount),
            shenpi_engine::limit::Unit::Hours => format!("{}小时", l.amount),
        },
        Err(_) => match l {
            RawLimit::Days(d) => format!("{d}工作日"),
            RawLimit::Text(t) => t.clone(),
        },
    }
}

pub async fn task_page(
    State(app): State<App>,
    user: PageUser,
    Path((id, task)): Path<(String, u32)>,
) -> Response {
    let l = match load(&app, &user.user, &id).await {
        Ok(l) => l,
        Err(e) => return fail(&user, e),
    };
    let l = read_copies(&app, &user, &id, l).await;
    let staff = staff_users(&app, &user).await;
    render_task(&user, &l, &id, task, None, &staff).into_response()
}

/// The users a task may be handed to, consulted on or signed by (picked, not typed): every
/// account that may take tasks, but the user themselves.
/// Each as (name, how it reads: the name and the department's name).
async fn staff_users(app: &App, user: &PageUser) -> Vec<(String, String)> {
    let names = super::super::names::Everywhere::of(&app.machine);
    app.accounts
        .users()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|u| auth_policy::may_take_tasks(u) && u.name != user.user.name)
        .map(|u| {
            let label = match &u.department {
                Some(d) => format!("{}（{}）", u.name, names.department(d)),
                None => u.name.clone(),
            };
            (u.name, label)
        })
        .collect()
}

/// Whether the engine would accept `cmd` from this user now: what an action is offered on
/// (the engine decides, the page only asks it).
fn engine_accepts(user: &PageUser, l: &Loaded, cmd: Command) -> bool {
    let env = CommandEnvelope {
        actor: user.user.actor(),
        command: cmd,
    };
    runtime::decide(&l.ctx.def, &l.ctx.cal, &l.st, &env, timestamp(user.now)).is_ok()
}

/// A select of the users a task may be given to.
fn user_select(name: &str, users: &[(String, String)]) -> Markup {
    html! {
        select name=(name) required {
            option value="" { "— 请选择 —" }
            @for (n, label) in users {
                option value=(n) { (label) }
            }
        }
    }
}

fn order_name(o: SignOrder) -> &'static str {
    match o {
        SignOrder::Before => "前加签",
        SignOrder::With => "并加签",
        SignOrder::After => "后加签",
    }
}

/// The signers added to task `task` (加签) who have not decided, with a 减签 form each when
/// the engine would accept it from this user.
fn signers_block(user: &PageUser, l: &Loaded, task: TaskId) -> Markup {
    let Some(t) = l.st.task(task) else {
        return html! {};
    };
    let mut signers: Vec<(String, &'static str)> = t
        .cosigners
        .iter()
        .filter_map(|c| l.st.task(*c))
        .filter(|c| c.is_open())
        .filter_map(|c| match &c.spec.assignment {
            Party::User(u) => Some((u.to_string(), order_name(c.spec.order))),
            _ => None,
        })
        .collect();
    if t.is_open() {
        signers.extend(
            t.after_signers
                .iter()
                .map(|u| (u.to_string(), "后加签（待本人通过后办理）")),
        );
    }
    if signers.is_empty() {
        return html! {};
    }
    html! {
        section.signers {
            h2 { "加签人" }
            table { tbody { @for (u, order) in &signers {
                tr {
                    td { (u) } td { (order) } td { "尚未表态" }
                    td {
                        @if engine_accepts(user, l, Command::RemoveCosigner { task, user: u.as_str().into() }) {
                            (action_form(user, "act-uncosign", "uncosign", Some("inline"), html! {
                                input type="hidden" name="user" value=(u);
                                label.check { input type="checkbox" name="confirm" value="true" required; "确认减签" }
                                button type="submit" class="danger" { "减签" }
                            }))
                        }
                    }
                }
            } } }
        }
    }
}

/// The phrases an approver picks from instead of typing (常用意见).
const PHRASES: &[&str] = &[
    "同意。",
    "同意，请按规定办理。",
    "材料齐全，符合要求。",
    "请补充完善相关材料后重新提交。",
    "不符合要求，不予通过。",
];

/// A multi-line opinion with the 常用意见 to pick from.
fn opinion(name: &str, label: &str, placeholder: &str, required: bool) -> Markup {
    html! {
        label.opinion {
            (label)
            textarea name=(name) rows="3" placeholder=(placeholder) required[required] {}
        }
        span.phrases { "常用意见：" @for p in PHRASES { button type="button" class="phrase" data-phrase=(p) { (p) } } }
    }
}

fn render_task(
    user: &PageUser,
    l: &Loaded,
    id: &str,
    task: u32,
    flash: Option<&Flash>,
    staff: &[(String, String)],
) -> Html<String> {
    let names = WorkflowNames(&l.ctx.def);
    let t = l.view.tasks.iter().find(|t| t.id == TaskId(task));
    let spec = l.st.task(TaskId(task));
    let node_id = spec.map(|s| s.spec.node.to_string()).unwrap_or_default();
    let node = l.ctx.def.node(&node_id);
    let node_name = WorkflowNames(&l.ctx.def).node(&node_id);
    let materials = materials_of(&l.ctx, &l.st, &node_id);
    let actions: Vec<Action> = node
        .map(|n| n.actions.iter().map(|a| a.value).collect())
        .unwrap_or_default();
    let is_verify = spec.is_some_and(|s| s.spec.kind == TaskKind::Verify);
    let is_cosign = spec.is_some_and(|s| s.spec.kind == TaskKind::Cosign);
    // A verification task (核验材料) shows the files supplied against its promise.
    let verified_files: Vec<_> = match spec.and_then(|s| s.spec.promise) {
        Some(p) if is_verify => l
            .files
            .iter()
            .filter(|v| v.promise == Some(p.0))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let is_parallel = node.is_some_and(|n| n.ty.value == NodeType::Parallel);
    let allowed = |a: Action| {
        !is_verify
            && !is_cosign
            && (actions.contains(&a)
                || (is_parallel && matches!(a, Action::Approve | Action::Reject | Action::Comment)))
    };
    // The engine's policy says whether this user may act here (an applicant on a task assigned
    // to the applicant, an approver on their own): the actions are offered only then.
    let may_act = spec.is_some_and(|s| policy::may_act(s, &user.user.actor(), &l.st.applicant));
    // 委派 in progress: the one consulted answers; the holder waits. 前加签: the holder waits.
    let consulting = spec.and_then(|s| s.consulting.clone());
    let consulted = consulting.as_deref() == Some(user.user.name.as_str());
    let awaiting: Vec<String> = spec
        .map(|s| {
            s.awaiting
                .iter()
                .filter_map(|a| l.st.task(*a))
                .map(|a| WorkflowNames(&l.ctx.def).party(&a.spec.assignment))
                .collect()
        })
        .unwrap_or_default();
    let deciding = may_act && !consulted && awaiting.is_empty();
    let take_back = t.is_none()
        && spec.is_some()
        && engine_accepts(user, l, Command::TakeBack { task: TaskId(task) });
    let pool =
        spec.is_some_and(|s| !matches!(policy::addressee(s, &l.st.applicant), Party::User(_)));
    let conditional = node.and_then(|n| n.conditional.as_ref());
    let title = l
        .detail
        .project
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.to_string());
    let body = html! {
        p.crumbs { a href="/inbox" { "待办" } " › " a href={"/instances/" (id)} { (title) } " › " (node_name) }
        h1 { (node_name) @if let Some(t) = t { " " (colour_mark(t.colour)) } }
        @match t {
            Some(t) => {
                p.taskmeta {
                    span.days { (days_text(t.days_left)) }
                    @if let Some(c) = &t.clock { @if let Some(d) = c.due { " · 截止 " (due_date(d.as_millisecond())) } (clock_provisional(c)) " · 时限 " (super::super::refusals::limit_zh(&c.limit.to_string())) }
                    " · 办理人 " (names.party(&t.assignment))
                    @if let Some(c) = &t.claimed_by { "（" (c) " 已认领）" }
                    @if l.view.channel.is_some() { " · " span.green-channel { "绿色通道" } }
                    @if t.supervised { " · " span.supervised { "挂牌督办" } }
                    @if t.suspended { " · " span.warn { "计时中止" } }
                }
            }
            None => { p.warn { "该任务已办结或不存在。" a href={"/instances/" (id)} { "查看实例" } } }
        }
        @if let Some(c) = &consulting {
            @if consulted {
                p.notice { "该任务委派给您征求意见：请回复意见，由委派人作出决定。" }
            } @else {
                p.notice { "已委派给 " (c) " 征求意见，待其回复后交回办理人。" }
            }
        }
        @if !awaiting.is_empty() {
            p.notice { "已前加签 " (awaiting.join("、")) "，待其办理后再由办理人决定。" }
        }
        @if take_back {
            section.actions {
                h2 { "拿回" }
                p { "您已办理本任务，下一环节尚未办理：可以拿回重新办理。" }
                (action_form(user, "act-take-back", "take_back", None, html! {
                    label.check { input type="checkbox" name="confirm" value="true" required; "确认拿回（下一环节的待办将撤销）" }
                    button type="submit" class="danger" { "拿回" }
                }))
            }
        }
        (signers_block(user, l, TaskId(task)))
        div.grid {
            section { h2 { "项目信息" } (facts(l)) }
            section {
                h2 { "申报材料" }
                @if materials.is_empty() { p.empty { "本环节无材料要求。" } } @else {
                    table.materials {
                        thead { tr { th { "材料" } th { "类别" } th { "状态" } th { "承诺截止" } } }
                        tbody { @for m in &materials {
                            tr data-material=(m.material) class={"mat-" (m.status)} {
                                td { (m.name.clone().unwrap_or_else(|| m.material.clone())) }
                                td { @if m.red_line { span.redline { "红线" } } @else if m.waivable { "可容缺" } @else { "—" } }
                                td { (material_status(&m.status)) }
                                td { @if let Some(d) = m.due { (due_date(d)) } }
                            }
                        } }
                    }
                }
                h2 { "容缺承诺" }
                (promises_table(l))
            }
        }
        @if is_verify {
            section.material-files {
                h2 { "待核验的材料文件" }
                (super::super::files::versions_block(&WorkflowNames(&l.ctx.def), &l.detail.id, &verified_files))
            }
        }
        @if t.is_some() && may_act {
            section.actions {
                h2 { "办理" }
                @if pool {
                    (action_form(user, "act-claim", "claim", None, html! {
                        button type="submit" { "认领任务" }
                    }))
                }
                @if is_verify {
                    (action_form(user, "act-verify", "verify", None, html! {
                        (opinion("reason", "核验意见", "核验情况", false))
                        button type="submit" name="accepted" value="true" { "核验通过" }
                        button type="submit" name="accepted" value="false" class="danger" data-confirm="确定核验不通过吗？" { "核验不通过" }
                    }))
                }
                @if consulted {
                    (action_form(user, "act-answer", "answer", None, html! {
                        label { "意见 " textarea name="opinion" rows="3" cols="50" required {} }
                        button type="submit" { "回复意见" }
                    }))
                }
                @if is_cosign && deciding {
                    (action_form(user, "act-cosign-decide", "approve", None, html! {
                        (opinion("comment", "意见", "会签意见", false))
                        button type="submit" { "会签同意" }
                    }))
                }
                @if deciding && allowed(Action::Approve) {
                    (action_form(user, "act-approve", "approve", None, html! {
                        (opinion("comment", "审批意见", "同意", false))
                        button type="submit" { "审批通过" }
                    }))
                }
                @if deciding && allowed(Action::Conditional) {
                    @if let Some(c) = conditional {
                        (action_form(user, "act-conditional", "conditional", Some("conditional"), html! {
                            fieldset {
                                legend { "容缺通过（申请人书面承诺限期补交）" }
                                @for m in &materials {
                                    @let waivable = c.waivable.iter().any(|w| w.value == m.material);
                                    label.check title=(if m.red_line { "红线材料不得容缺" } else { "" }) {
                                        input type="checkbox" name="waive" value=(m.material) disabled[!waivable || m.red_line];
                                        (m.name.clone().unwrap_or_else(|| m.material.clone()))
                                        @if m.red_line { " " span.redline { "红线，不可容缺" } }
                                    }
                                }
                                label { "承诺补交时限 " input name="limit" value=(limit_text(&c.limit.value)) size="6"; " （不得超过规则的 " (limit_text(&c.limit.value)) "）" }
                                (opinion("comment", "意见", "同意容缺受理", false))
                            }
                            button type="submit" { "容缺通过" }
                        }))
                    }
                }
                @if deciding && allowed(Action::Reject) {
                    (action_form(user, "act-reject", "reject", None, html! {
                        label { "驳回至 " select name="to" {
                            @for r in node.map(|n| n.reject_to.clone()).unwrap_or_default() {
                                option value=(r.value) { (WorkflowNames(&l.ctx.def).node(&r.value)) }
                            }
                            option value="" { "不予批准（终止）" }
                        } }
                        (opinion("reason", "驳回理由", "请写明驳回的理由", true))
                        button type="submit" class="danger" data-confirm="确定驳回吗？驳回后本环节的办理结果作废，案件退至所选环节。" { "驳回" }
                    }))
                }
                @if deciding && allowed(Action::Return) {
                    (action_form(user, "act-return", "return", None, html! {
                        (opinion("reason", "补正原因", "请写明需要补正的内容", true))
                        @for m in &materials { label.check { input type="checkbox" name="materials" value=(m.material); (m.name.clone().unwrap_or_else(|| m.material.clone())) } }
                        button type="submit" data-confirm="确定退回申请人补正吗？补正期间计时中止。" { "退回补正" }
                    }))
                }
                @if deciding && allowed(Action::Delegate) {
                    (action_form(user, "act-delegate", "delegate", None, html! {
                        label { "交给 " (user_select("to", staff)) }
                        label.check { input type="radio" name="mode" value="consult" checked; "委派（征求意见后交回我决定）" }
                        label.check { input type="radio" name="mode" value="transfer"; "转办（移交对方办理）" }
                        label.check { input type="radio" name="mode" value="entrust"; "委托（对方可代为办理）" }
                        label { "说明 " input name="text" size="30"; }
                        button type="submit" { "确定" }
                    }))
                }
                @if may_act && !consulted && allowed(Action::Cosign) {
                    (action_form(user, "act-cosign", "cosign", None, html! {
                        label { "加签人 " (user_select("user", staff)) }
                        label.check { input type="radio" name="order" value="before"; "前加签（对方先办理）" }
                        label.check { input type="radio" name="order" value="with" checked; "并加签（同时办理）" }
                        label.check { input type="radio" name="order" value="after"; "后加签（我通过后对方办理）" }
                        button type="submit" { "加签" }
                    }))
                }
                @if deciding && allowed(Action::Extend) {
                    (action_form(user, "act-extend", "extend", None, html! {
                        label { "延长 " input name="limit" size="6" value="5工作日"; }
                        label { "理由 " input name="reason" size="30" required; }
                        button type="submit" { "延长时限" }
                    }))
                }
                @if deciding && allowed(Action::Suspend) {
                    (action_form(user, "act-suspend", "suspend", None, html! {
                        label { "中止原因（听证/专家评审/检测） " input name="reason" size="30" required; }
                        button type="submit" { "中止计时" }
                    }))
                }
                (action_form(user, "act-comment", "comment", None, html! {
                    (opinion("text", "意见/备注", "办理过程中的意见或备注", true))
                    button type="submit" { "添加意见" }
                }))
            }
        }
        section { h2 { "流程图" } div.diagram { (diagram_svg(l)) } }
        section { h2 { "要素台账" } (elements_block(l)) }
        (copies_block(l))
        section { h2 { "办理历程" } (history(l)) }
    };
    page(&node_name, Some(user), flash, body)
}

/// One action form of the task page: the hidden fields, its `action`, and what it asks for.
fn action_form(
    user: &PageUser,
    id: &str,
    action: &str,
    class: Option<&str>,
    fields: Markup,
) -> Markup {
    html! {
        form method="post" id=(id) class=[class] {
            (hidden(user)) input type="hidden" name="action" value=(action);
            (fields)
        }
    }
}

/// An action on the task; a refusal shows the task page again with the reason.
pub async fn task_act(
    State(app): State<App>,
    user: PageUser,
    Path((id, task)): Path<(String, u32)>,
    body: Bytes,
) -> Response {
    let posted = match Fields::checked(&user, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let result = match posted
        .action::<TaskForm>()
        .and_then(|f| f.command(TaskId(task)))
    {
        Ok(cmd) => {
            let label = command_name(&cmd);
            run_command_with(&app, &page_caller(&user), &id, cmd, posted.key(&user), None)
                .await
                .map(|r| (label, r))
        }
        Err(e) => Err(e.into()),
    };
    match result {
        // The 督办看板's 催办 and 挂牌督办 go back to the board.
        Ok((label, _)) if posted.first("back") == Some("/dashboard") => {
            Redirect::to(&format!("/dashboard?done={label}")).into_response()
        }
        Ok((label, _)) => Redirect::to(&format!("/instances/{id}?done={label}")).into_response(),
        Err(e) => match load(&app, &user.user, &id).await {
            Ok(l) => {
                let flash = Flash {
                    ok: false,
                    text: format!("未能办理：{}", e.body.message),
                    code: Some(e.body.error.clone()),
                };
                let staff = staff_users(&app, &user).await;
                (
                    e.status,
                    render_task(&user, &l, &id, task, Some(&flash), &staff),
                )
                    .into_response()
            }
            Err(_) => fail(&user, e),
        },
    }
}
