//! Timers as the office sees them: those whose firing the engine refused, for the 督办看板.
//!
//! A refused timer is not lost: it stays pending with the refusal recorded and is tried again
//! after a calendar or definition revision, or at its retry time (docs/durable.md, "Refused
//! timers"). Until then the warning or escalation it stands for has not gone out, so the board
//! names it in the office's words: the project, the node (or the stage or material the clock
//! belongs to), what the timer was for, and why it was refused.

use shenpi_adapters::store::{RefusedTimer, TimerStore};
use shenpi_engine::runtime::{ClockRef, InstanceState, TimerKind};

use super::engine::EngineCtx;
use super::error::ApiResult;
use super::names::WorkflowNames;
use super::state::App;

/// A refused timer, named for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTimerView {
    pub instance: String,
    /// 项目名称 (the instance id when the project has no name).
    pub project_name: String,
    /// 节点名称, or the stage or material the timer's clock belongs to; empty when unknown.
    pub subject: String,
    /// What the timer was for: 黄色预警, 超期（红色）, 第N级升级, 等待期满.
    pub purpose: String,
    /// The rejection's stable code, and the refusal in Chinese.
    pub code: String,
    pub reason: &'static str,
    /// The engine's own words.
    pub message: String,
    pub due: i64,
    pub refused_at: i64,
    /// `None`: released for a retry, tried as soon as a node claims it.
    pub retry_at: Option<i64>,
}

/// The open timers whose last firing the engine refused, oldest refusal first, named.
pub async fn refused_timers(app: &App, limit: i64) -> ApiResult<Vec<RefusedTimerView>> {
    let rows = app.db.refused_timers(limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // The names are a courtesy: a refused timer is listed even if its instance cannot be
        // read back.
        let loaded = app.instance(&row.timer.instance).await.ok().flatten();
        let named = loaded
            .as_ref()
            .map(|(_, state, _, ctx)| (state, ctx.as_ref()));
        out.push(view(&row, named));
    }
    Ok(out)
}

fn view(row: &RefusedTimer, named: Option<(&InstanceState, &EngineCtx)>) -> RefusedTimerView {
    let kind: Option<TimerKind> = serde_json::from_str(&row.timer.kind).ok();
    let project_name = row
        .project
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or(&row.timer.instance)
        .to_string();
    RefusedTimerView {
        instance: row.timer.instance.clone(),
        project_name,
        subject: match (&kind, named) {
            (Some(k), Some((state, ctx))) => subject(k, state, ctx),
            _ => String::new(),
        },
        purpose: kind.as_ref().map(purpose).unwrap_or_default(),
        code: row.code.clone(),
        reason: reason(&row.code),
        message: row.message.clone(),
        due: row.timer.due,
        refused_at: row.refused_at,
        retry_at: row.retry_at,
    }
}

/// The refusal codes a timer firing can get, in Chinese (see the table in docs/durable.md).
pub fn reason(code: &str) -> &'static str {
    match code {
        "outside_calendar" => "期限超出工作日历的范围，无法计算",
        "bad_limit" => "期限写法无法计算",
        "assignee_rule" => "办理人规则出错",
        "no_route" => "没有符合条件的流转路线",
        "invalid_project" => "项目信息不符合流程要求",
        "internal" => "审批引擎内部错误",
        _ => "审批引擎拒绝执行",
    }
}

/// What a timer is for, in Chinese (「黄色预警」, 「超期（红色）」 ...).
pub fn purpose(k: &TimerKind) -> String {
    match k {
        TimerKind::Yellow { .. } => "黄色预警".into(),
        TimerKind::Due {
            target: ClockRef::Promise(_),
        } => "承诺到期".into(),
        TimerKind::Due { .. } => "超期（红色）".into(),
        TimerKind::Escalation { rung, .. } | TimerKind::Ladder { rung, .. } => {
            format!("第{}级升级", rung.saturating_add(1))
        }
        TimerKind::Wait { .. } => "等待期满".into(),
    }
}

/// What a timer is about, in the workflow's names (the node, 「阶段「审批」」, 「容缺材料「…」」).
pub fn subject(k: &TimerKind, state: &InstanceState, ctx: &EngineCtx) -> String {
    let names = WorkflowNames(&ctx.def);
    let target = match k {
        TimerKind::Escalation { task, .. } => ClockRef::Task(*task),
        TimerKind::Ladder { target, .. } => target.clone(),
        TimerKind::Wait { node: n } => return names.node(n),
        TimerKind::Yellow { target } | TimerKind::Due { target } => target.clone(),
    };
    match &target {
        ClockRef::Task(t) => state.task(*t).map(|t| names.node(&t.spec.node)),
        ClockRef::Step(s) => state.step(*s).map(|s| names.node(&s.node)),
        ClockRef::Promise(p) => state
            .promise(*p)
            .map(|p| format!("容缺材料「{}」", names.material(&p.material))),
        ClockRef::Stage(v) => state
            .stages
            .get(v.ix())
            .map(|s| format!("阶段「{}」", names.stage(&s.stage))),
        ClockRef::Element { stage: v, element } => state.stages.get(v.ix()).map(|s| {
            format!(
                "阶段「{}」要素「{}」",
                names.stage(&s.stage),
                names.element(element)
            )
        }),
        ClockRef::Outstanding(o) => state.outstanding.get(o.ix()).map(|o| {
            format!(
                "阶段「{}」待补要素「{}」",
                names.stage(&o.stage),
                names.element(&o.element)
            )
        }),
    }
    .unwrap_or_default()
}
