//! Cron-scheduled reports (周统计, 半月通报, 月调度): when they are due, what they say, and who
//! gets them.
//!
//! A workflow declares `reports:` with a 5-field cron in Asia/Shanghai time (fixed UTC+08:00, no
//! daylight saving). [`run_due_reports`] is called from the scheduler tick on every node: for each
//! report it takes the latest slot at or before `now` and, if that slot has not run, computes the
//! content from the projections ([`ReportStore::report_data`]) and writes the `report_runs` row
//! together with the outbox rows in one transaction ([`ReportStore::run_report`]). The
//! `(report, scheduled_at)` primary key decides which node runs a slot; the others write nothing.
//!
//! After downtime only the latest missed slot runs, never a backlog. A report that has never run
//! sends its latest slot only if it is at most `first_run_grace_ms` old, so deploying a new
//! workflow on a Wednesday does not send last Monday's weekly report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use shenpi_engine::calendar::{end_of_day, local_date, local_datetime};
use shenpi_engine::cron::Schedule;
use shenpi_engine::model::{Assignee, NotificationEvent, Report, ReportKind, Workflow};
use shenpi_engine::runtime::deadline::{last_day, working_days_overdue};

use crate::engine_machine::{EngineContext, timestamp};
use crate::store::{Millis, OutboxRow, ReportData, ReportStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The cron expression is not 5 valid fields.
    #[error("report `{report}`: invalid cron `{expr}`: {reason}")]
    Cron {
        report: String,
        expr: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// This node's name in `report_runs` (for operators).
    pub node: String,
    /// Rows per list (overdue, promises due, supervised) in one report.
    pub limit: i64,
    /// A report with no run recorded sends its latest slot only if it is at most this old.
    pub first_run_grace_ms: i64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            node: format!("node-{}", std::process::id()),
            limit: 200,
            first_run_grace_ms: 24 * 3_600_000,
        }
    }
}

/// One report run this node committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRun {
    /// `<workflow id>/<report id>`, the key in `report_runs`.
    pub report: String,
    pub scheduled_at: Millis,
    pub messages: usize,
}

/// A report's schedule: the engine's cron ([`shenpi_engine::cron`], the same parser and meaning
/// validation uses), on store milliseconds.
#[derive(Debug, Clone)]
pub struct Cron(Schedule);

impl Cron {
    /// Parses; `report` names the report in the error.
    pub fn parse(report: &str, expr: &str) -> Result<Cron, ReportError> {
        Schedule::parse(expr)
            .map(Cron)
            .map_err(|e| ReportError::Cron {
                report: report.to_string(),
                expr: expr.to_string(),
                reason: e.to_string(),
            })
    }

    /// The latest slot at or before `now`.
    pub fn latest_at_or_before(&self, now: Millis) -> Option<Millis> {
        self.0
            .latest_at_or_before(timestamp(now))
            .map(|t| t.as_millisecond())
    }

    /// The slot before `slot` (the start of the period the slot reports on).
    pub fn before(&self, slot: Millis) -> Option<Millis> {
        self.0
            .latest_before(timestamp(slot))
            .map(|t| t.as_millisecond())
    }

    /// The first slot after `now`.
    pub fn next_after(&self, now: Millis) -> Option<Millis> {
        self.0
            .next_after(timestamp(now))
            .map(|t| t.as_millisecond())
    }
}

/// The store key of a report.
pub fn report_key(workflow: &Workflow, report: &Report) -> String {
    format!("{}/{}", workflow.id.value, report.id.value)
}

/// Checks every report's cron of a workflow (for publishing and for tests).
pub fn check_reports(workflow: &Workflow) -> Result<(), ReportError> {
    for r in &workflow.reports {
        Cron::parse(&report_key(workflow, r), &r.cron.value)?;
    }
    Ok(())
}

/// Runs every report of `definitions` whose latest slot at or before `now` has not run yet.
/// Errors of one report (a bad cron, a database error) are logged and the others still run;
/// the first error is returned after all were tried.
pub async fn run_due_reports<S: ReportStore>(
    store: &S,
    definitions: &[Arc<EngineContext>],
    now: Millis,
    opts: &ReportOptions,
) -> Result<Vec<ReportRun>, ReportError> {
    let mut runs = Vec::new();
    let mut first_err = None;
    for ctx in definitions {
        for report in &ctx.def.workflow.reports {
            match run_one(store, ctx, report, now, opts).await {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("report failed: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) if runs.is_empty() => Err(e),
        _ => Ok(runs),
    }
}

async fn run_one<S: ReportStore>(
    store: &S,
    ctx: &EngineContext,
    report: &Report,
    now: Millis,
    opts: &ReportOptions,
) -> Result<Option<ReportRun>, ReportError> {
    let wf = &ctx.def.workflow;
    let key = report_key(wf, report);
    let cron = Cron::parse(&key, &report.cron.value)?;
    let Some(slot) = cron.latest_at_or_before(now) else {
        return Ok(None);
    };
    match store.last_report_run(&key).await? {
        Some(last) if last >= slot => return Ok(None),
        None if now - slot > opts.first_run_grace_ms => return Ok(None),
        _ => {}
    }
    let from = cron
        .before(slot)
        .unwrap_or(slot - default_period_ms(report.kind.value));
    let payload = content(store, ctx, report, from, slot, now, opts.limit).await?;
    let rows = messages(wf, report, &key, slot, now, &payload);
    let n = rows.len();
    if store.run_report(&key, slot, &opts.node, now, &rows).await? {
        tracing::info!(report = %key, scheduled_at = slot, messages = n, "report ran");
        Ok(Some(ReportRun {
            report: key,
            scheduled_at: slot,
            messages: n,
        }))
    } else {
        Ok(None)
    }
}

/// What a report says for the period `from`..`slot`, read at `now`: the one content of a
/// report, for the scheduled runs and for a report asked for on the spot ([`report_now`]).
async fn content<S: ReportStore>(
    store: &S,
    ctx: &EngineContext,
    report: &Report,
    from: Millis,
    slot: Millis,
    now: Millis,
    limit: i64,
) -> Result<Value, ReportError> {
    let today = local_date(timestamp(now));
    let promise_until = ctx
        .cal
        .add_working_days(today, 5)
        .map(|d| end_of_day(d).as_millisecond())
        // Past the calendar's years: a week of calendar days is the honest approximation.
        .unwrap_or(now + 7 * 86_400_000);
    let data = store
        .report_data(&ctx.def.workflow.id.value, from, now, promise_until, limit)
        .await?;
    Ok(payload(ctx, report, from, slot, now, &data))
}

/// A report of `kind` asked for now (a supervisor's 立即生成): for every workflow of
/// `definitions` that declares one, the same content its scheduled run would send, over the
/// period since its last slot. Nothing is sent and no slot is taken.
pub async fn report_now<S: ReportStore>(
    store: &S,
    definitions: &[Arc<EngineContext>],
    kind: ReportKind,
    now: Millis,
    limit: i64,
) -> Result<Vec<(String, Value)>, ReportError> {
    let mut out = Vec::new();
    for ctx in definitions {
        for report in ctx
            .def
            .workflow
            .reports
            .iter()
            .filter(|r| r.kind.value == kind)
        {
            let key = report_key(&ctx.def.workflow, report);
            let cron = Cron::parse(&key, &report.cron.value)?;
            let from = cron
                .latest_at_or_before(now)
                .unwrap_or(now - default_period_ms(kind));
            out.push((
                key,
                content(store, ctx, report, from, now, now, limit).await?,
            ));
        }
    }
    Ok(out)
}

fn default_period_ms(kind: ReportKind) -> i64 {
    let day = 86_400_000;
    match kind {
        ReportKind::Weekly => 7 * day,
        ReportKind::HalfMonthly => 15 * day,
        ReportKind::Monthly => 30 * day,
    }
}

fn kind_defaults(kind: ReportKind) -> (&'static str, &'static str) {
    match kind {
        ReportKind::Weekly => ("周统计", "weekly_report"),
        ReportKind::HalfMonthly => ("半月通报", "half_monthly_report"),
        ReportKind::Monthly => ("月调度", "monthly_report"),
    }
}

fn date(ms: Millis) -> String {
    local_date(timestamp(ms)).strftime("%Y-%m-%d").to_string()
}

fn project_name(project: &Value, instance: &str) -> String {
    ["name", "project_name", "title"]
        .iter()
        .find_map(|k| project.get(k).and_then(Value::as_str))
        .unwrap_or(instance)
        .to_string()
}

/// Every variable the three shipped templates use, plus the lists they do not show yet
/// (`promises_due`, `supervised_items`) for custom templates.
fn payload(
    ctx: &EngineContext,
    report: &Report,
    from: Millis,
    slot: Millis,
    now: Millis,
    d: &ReportData,
) -> Value {
    let wf = &ctx.def.workflow;
    let (default_name, _) = kind_defaults(report.kind.value);
    let dept_name = |id: &Option<String>| -> String {
        match id {
            None => "未分配".to_string(),
            Some(id) => wf
                .departments
                .iter()
                .find(|x| x.id.value == *id)
                .and_then(|x| x.name.clone())
                .unwrap_or_else(|| id.clone()),
        }
    };
    let node_name = |id: &str| -> String {
        wf.nodes
            .iter()
            .find(|n| n.id.value == id)
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let stage_name = |id: &Option<String>| -> String {
        match id {
            None => "未分阶段".to_string(),
            Some(id) => wf
                .stages
                .iter()
                .find(|s| s.id.value == *id)
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| id.clone()),
        }
    };
    let (mut green, mut yellow, mut red, mut total, mut supervised) = (0i64, 0, 0, 0, 0);
    let mut stages: BTreeMap<Option<String>, i64> = BTreeMap::new();
    // Declared departments first, in declaration order, then any others seen.
    let mut dept_order: Vec<Option<String>> = wf
        .departments
        .iter()
        .map(|x| Some(x.id.value.clone()))
        .collect();
    // (open, yellow, red, decided in the period)
    let mut depts: BTreeMap<Option<String>, (i64, i64, i64, i64)> = BTreeMap::new();
    for t in &d.tasks {
        total += t.open;
        supervised += t.supervised;
        match t.colour.as_str() {
            "yellow" => yellow += t.open,
            "red" => red += t.open,
            _ => green += t.open,
        }
        *stages.entry(t.stage.clone()).or_default() += t.open;
        if !dept_order.contains(&t.department) {
            dept_order.push(t.department.clone());
        }
        let e = depts.entry(t.department.clone()).or_default();
        e.0 += t.open;
        match t.colour.as_str() {
            "yellow" => e.1 += t.open,
            "red" => e.2 += t.open,
            _ => {}
        }
    }
    // A department that finished work in the period is listed even with nothing open now.
    for (id, n) in &d.decided_by_department {
        if !dept_order.contains(id) {
            dept_order.push(id.clone());
        }
        depts.entry(id.clone()).or_default().3 += n;
    }
    let departments: Vec<Value> = dept_order
        .iter()
        .map(|id| {
            let (open, y, r, finished) = depts.get(id).copied().unwrap_or_default();
            json!({"id": id, "name": dept_name(id), "open": open, "yellow": y, "red": r, "finished": finished})
        })
        .collect();
    let stages: Vec<Value> = stages
        .iter()
        .map(|(id, open)| json!({"id": id, "name": stage_name(id), "open": open}))
        .collect();
    let overdue: Vec<Value> = d
        .overdue
        .iter()
        .map(|t| {
            // The task page's figure for the same task (see `runtime::deadline`); a date the
            // calendar does not cover falls back to natural days rather than dropping the row.
            let days = working_days_overdue(&ctx.cal, timestamp(t.due), timestamp(now))
                .map(i64::from)
                .unwrap_or_else(|_| (now - t.due) / 86_400_000);
            json!({
                "instance": t.instance,
                "project_name": project_name(&t.project, &t.instance),
                "node_name": node_name(&t.node),
                "department_name": dept_name(&t.department),
                "days_overdue": days,
                "supervised": t.supervised,
            })
        })
        .collect();
    let promises_due: Vec<Value> = d
        .promises_due
        .iter()
        .map(|p| {
            json!({
                "instance": p.instance,
                "project_name": project_name(&p.project, &p.instance),
                "material": p.material,
                "due": last_day(timestamp(p.due)).strftime("%Y-%m-%d").to_string(),
            })
        })
        .collect();
    let supervised_items: Vec<Value> = d
        .supervised
        .iter()
        .map(|t| {
            json!({
                "instance": t.instance,
                "project_name": project_name(&t.project, &t.instance),
                "node_name": node_name(&t.node),
                "department_name": dept_name(&t.department),
            })
        })
        .collect();
    let count = |state: &str| {
        d.promises
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let period_end = slot - 1;
    json!({
        "report_id": report.id.value,
        "report_kind": kind_defaults(report.kind.value).1,
        "report_name": report.name.clone().unwrap_or_else(|| default_name.to_string()),
        "workflow_id": wf.id.value,
        "workflow_name": wf.name,
        "period_start": date(from),
        "period_end": date(period_end),
        "month": local_datetime(timestamp(period_end)).strftime("%Y年%m月").to_string(),
        "generated_at": local_datetime(timestamp(now)).strftime("%Y-%m-%d %H:%M").to_string(),
        "total": total,
        "green": green,
        "yellow": yellow,
        "red": red,
        "started": d.started,
        "finished": d.finished,
        "supervised": supervised,
        "promises_open": count("open"),
        "promises_breached": count("breached"),
        "stages": stages,
        "departments": departments,
        "overdue": overdue,
        "promises_due": promises_due,
        "supervised_items": supervised_items,
    })
}

fn party(a: &Assignee) -> Option<String> {
    if let Some(u) = &a.user {
        Some(format!("user:{}", u.value))
    } else if let Some(r) = &a.role {
        Some(format!("role:{}", r.value))
    } else {
        a.department.as_ref().map(|d| format!("dept:{}", d.value))
    }
}

fn snake<T: serde::Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        _ => "log".to_string(),
    }
}

/// One outbox row per (channel, recipient): the workflow's `on: report` rules (their `to`, or the
/// report's when empty; their `via`, or `log`), or the report's `to` on `log` when no rule.
fn messages(
    wf: &Workflow,
    report: &Report,
    key: &str,
    slot: Millis,
    now: Millis,
    payload: &Value,
) -> Vec<OutboxRow> {
    let (_, default_template) = kind_defaults(report.kind.value);
    let own_template = report.template.as_ref().map(|t| t.value.clone());
    let mut targets: BTreeSet<(String, String, String)> = BTreeSet::new();
    let rules: Vec<_> = wf
        .notifications
        .iter()
        .filter(|r| r.on.value == NotificationEvent::Report)
        .collect();
    for rule in &rules {
        let to = if rule.to.is_empty() {
            &report.to
        } else {
            &rule.to
        };
        let channels: Vec<String> = if rule.via.is_empty() {
            vec!["log".to_string()]
        } else {
            rule.via.iter().map(|v| snake(&v.value)).collect()
        };
        let template = own_template
            .clone()
            .or_else(|| rule.template.as_ref().map(|t| t.value.clone()))
            .unwrap_or_else(|| default_template.to_string());
        for a in to {
            if let Some(p) = party(a) {
                for c in &channels {
                    targets.insert((c.clone(), p.clone(), template.clone()));
                }
            }
        }
    }
    if rules.is_empty() {
        let template = own_template.unwrap_or_else(|| default_template.to_string());
        for a in &report.to {
            if let Some(p) = party(a) {
                targets.insert(("log".to_string(), p, template.clone()));
            }
        }
    }
    targets
        .into_iter()
        .map(|(channel, recipient, template)| OutboxRow {
            id: format!("report:{key}:{slot}:{channel}:{recipient}"),
            instance: None,
            channel,
            recipient,
            template,
            payload: payload.clone(),
            next_attempt_at: now,
            created_at: now,
        })
        .collect()
}
