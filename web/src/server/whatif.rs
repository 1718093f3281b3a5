//! 政策模拟 in the editor: policy staff run a draft (or the text in the editor) against many
//! projects, beside the version in force, before publishing. The projects are a population file
//! of the workflows folder (`workflows/populations/*.yaml`), one typed on the page, or the
//! projects this server holds with the response times their histories show. The run is the
//! engine's [`compare`], in memory, on virtual time: live data is only read.
//!
//! The table's rows ([`rows`]) and the horizon ([`horizon_span`], [`horizon_after`]) are the
//! ones `shenpi whatif` prints, so the page and the CLI give the same figures in the same words.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use jiff::{Timestamp, ToSpan};
use maud::{Markup, html};
use serde::Deserialize;
use shenpi_adapters::store::DefinitionStore;
use shenpi_engine::calendar;
use shenpi_engine::compile::Definition;
use shenpi_engine::whatif::{Cohort, Comparison, Figures, Population, Spread, compare};

use super::auth::{PageUser, policy};
use super::chrome::{Flash, fail, page};
use super::error::ApiError;
use super::form::{self, Fields, FormError};
use super::names::WorkflowNames;
use super::routes::Routes;
use super::state::App;

pub fn routes() -> Routes {
    Routes::new().page("/workflows/{id}/whatif", get(page_form).post(page_submit))
}

/// The most projects one run on the page takes (the CLI has no cap).
pub const MAX_PROJECTS: usize = 50_000;

/// One line of the comparison: what it counts, the version in force, the draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub base: String,
    pub draft: String,
}

impl Row {
    pub fn differs(&self) -> bool {
        self.base != self.draft
    }
}

/// The comparison as people read it, in the workflow's names (stages, departments, channels).
pub fn rows(def: &Definition, cmp: &Comparison) -> Vec<Row> {
    let names = WorkflowNames(def);
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |name: String, f: &dyn Fn(&Figures) -> String| {
        rows.push(Row {
            name,
            base: f(&cmp.base),
            draft: f(&cmp.draft),
        });
    };
    row("项目".into(), &|f| f.projects.to_string());
    row("批准办结".into(), &|f| f.approved.to_string());
    row("不予批准".into(), &|f| f.rejected.to_string());
    row("撤销（承诺失信）".into(), &|f| {
        f.revoked.to_string()
    });
    row("期末未办结".into(), &|f| f.open_at_horizon.to_string());
    row("未能启动".into(), &|f| f.refused_start.to_string());
    row("办理周期 p50 / p90（工作日）".into(), &|f| {
        spread(&f.lead)
    });
    for s in keys(cmp, |f| &f.stages) {
        row(format!("阶段「{}」p50 / p90", names.stage(&s)), &|f| {
            f.stages.get(&s).map(spread).unwrap_or_else(|| "—".into())
        });
    }
    for d in keys(cmp, |f| &f.departments) {
        let name = if d.is_empty() {
            "项目单位".to_string()
        } else {
            names.department(&d)
        };
        row(format!("「{name}」办理 p50 / p90"), &|f| {
            f.departments
                .get(&d)
                .map(spread)
                .unwrap_or_else(|| "—".into())
        });
    }
    row("任务".into(), &|f| f.tasks.to_string());
    row("黄灯任务".into(), &|f| f.yellow.to_string());
    row("红灯（超期）任务".into(), &|f| f.red.to_string());
    row("期末仍超期".into(), &|f| f.overdue_open.to_string());
    row("逾期升级".into(), &|f| f.escalations.to_string());
    row("挂牌督办".into(), &|f| f.supervised.to_string());
    for c in &def.workflow.channels {
        let id = c.id.value.clone();
        row(format!("「{}」占比", names.channel(&id)), &move |f| {
            let n = f.channels.get(&id).copied().unwrap_or(0);
            let total = f.projects.saturating_sub(f.refused_start);
            if total == 0 {
                "—".into()
            } else {
                format!("{:.1}%（{n}）", f64::from(n) * 100.0 / f64::from(total))
            }
        });
    }
    row("容缺承诺".into(), &|f| f.promises.to_string());
    row("承诺履行".into(), &|f| f.promises_kept.to_string());
    row("承诺失信".into(), &|f| f.promises_breached.to_string());
    row("模拟动作被拒".into(), &|f| {
        f.refused_actions.to_string()
    });
    rows
}

/// The ids either version has figures for, in order.
fn keys<T>(
    cmp: &Comparison,
    of: impl Fn(&Figures) -> &std::collections::BTreeMap<String, T>,
) -> Vec<String> {
    let mut ids: Vec<String> = of(&cmp.base)
        .keys()
        .chain(of(&cmp.draft).keys())
        .cloned()
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

pub fn spread(s: &Spread) -> String {
    match (s.p50, s.p90) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "—".into(),
    }
}

/// A refusal the simulated actors met, if any (they leave the task waiting), for a note.
pub fn first_refusal(cmp: &Comparison) -> Option<&str> {
    cmp.base
        .refusals
        .keys()
        .chain(cmp.draft.refusals.keys())
        .next()
        .map(String::as_str)
}

/// `1y`, `18m`, `90d`, `12w`: how far a run goes, at most ten years.
pub fn horizon_span(s: &str) -> Result<jiff::Span, String> {
    let t = s.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let bad = || {
        format!("模拟期限「{s}」无法识别：请写数字加 y、m、w 或 d（如 1y、6m、90d），最长 10 年")
    };
    let n: i64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    match unit {
        "y" if n <= 10 => Ok(n.years()),
        "m" if n <= 120 => Ok(n.months()),
        "w" if n <= 520 => Ok(n.weeks()),
        "d" if n <= 3650 => Ok(n.days()),
        _ => Err(bad()),
    }
}

/// The end of a run: `span` after the start of the first arrival's day.
pub fn horizon_after(first: Timestamp, span: jiff::Span) -> Option<Timestamp> {
    calendar::start_of_day(calendar::local_date(first))
        .checked_add(span)
        .or_else(|_| {
            calendar::local_datetime(first)
                .checked_add(span)
                .map(calendar::from_local_datetime)
        })
        .ok()
}

/// The population files shipped beside the workflows, by file stem, with their text.
fn population_files(app: &App) -> Vec<(String, String)> {
    let dir = app.workflows_dir.join("populations");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let stem = p.file_stem()?.to_str()?.to_string();
            let yaml = matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"));
            yaml.then(|| std::fs::read_to_string(&p).ok().map(|t| (stem, t)))
                .flatten()
        })
        .collect();
    files.sort();
    files
}

fn default_source(files: &[(String, String)]) -> String {
    files
        .first()
        .map_or_else(|| "db".to_string(), |(s, _)| format!("file:{s}"))
}

#[derive(Debug, Deserialize)]
pub struct WhatifQuery {
    /// The population file chosen first (by stem).
    pub population: Option<String>,
}

/// The form: the draft's text, where the projects come from, how far to run, the seed.
#[derive(Debug, Deserialize)]
struct WhatifForm {
    #[serde(default, deserialize_with = "form::raw")]
    yaml: String,
    /// `file:STEM`, `db` (the projects here) or `custom` (the text below).
    #[serde(default, deserialize_with = "form::text")]
    source: Option<String>,
    #[serde(default, deserialize_with = "form::raw")]
    population: String,
    #[serde(default, deserialize_with = "form::text")]
    horizon: Option<String>,
    #[serde(default, deserialize_with = "form::text")]
    seed: Option<String>,
}

impl WhatifForm {
    fn seed(&self) -> Result<Option<u64>, FormError> {
        match self.seed.as_deref() {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| FormError::new("seed", "随机种子须为非负整数")),
        }
    }
}

/// What the page shows under the form.
enum Outcome {
    None,
    /// Problems of the draft or the population, located.
    Problems(String, Vec<String>),
    Ran(Box<Ran>),
}

struct Ran {
    draft: Definition,
    base_label: String,
    source: String,
    seed: u64,
    first: Timestamp,
    horizon: Timestamp,
    cmp: Comparison,
    seconds: f64,
}

const FORBIDDEN: &str = "政策模拟仅限政策法规人员";
const HORIZONS: [(&str, &str); 4] = [
    ("6m", "半年"),
    ("1y", "一年"),
    ("2y", "两年"),
    ("3y", "三年"),
];

pub async fn page_form(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    UrlQuery(q): UrlQuery<WhatifQuery>,
) -> Response {
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden(FORBIDDEN));
    }
    let Ok(Some(row)) = app.db.latest_definition(&id).await else {
        return fail(&user, ApiError::not_found("没有该流程"));
    };
    let files = population_files(&app);
    let source = match q.population {
        Some(p) => format!("file:{p}"),
        None => default_source(&files),
    };
    let sticky = Sticky {
        yaml: &row.yaml,
        source: &source,
        population: "",
        horizon: "1y",
        seed: "",
    };
    view(&app, &user, &id, &files, &sticky, Outcome::None, None)
        .await
        .into_response()
}

pub async fn page_submit(
    State(app): State<App>,
    user: PageUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let f: WhatifForm = match Fields::typed(&user, &body) {
        Ok(f) => f,
        Err(page) => return page,
    };
    if !policy::can_validate(&user.user) {
        return fail(&user, ApiError::forbidden(FORBIDDEN));
    }
    let yaml = f.yaml.replace("\r\n", "\n");
    let population = f.population.replace("\r\n", "\n");
    let files = population_files(&app);
    // The editor's 政策模拟 button sends no source: the first population file, else the projects here.
    let source = f.source.clone().unwrap_or_else(|| default_source(&files));
    let horizon = f.horizon.clone().unwrap_or_else(|| "1y".into());
    let seed_text = f.seed.clone().unwrap_or_default();
    let sticky = Sticky {
        yaml: &yaml,
        source: &source,
        population: &population,
        horizon: &horizon,
        seed: &seed_text,
    };
    let outcome = match run(&app, &id, &f, &source, &yaml, &population, &files).await {
        Ok(ran) => Outcome::Ran(Box::new(ran)),
        Err(Refused::Form(e)) => return fail(&user, e.into()),
        Err(Refused::Api(e)) => return fail(&user, e),
        Err(Refused::Problems(title, list)) => Outcome::Problems(title, list),
    };
    let status = match outcome {
        Outcome::Problems(..) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    let flash = match &outcome {
        Outcome::Ran(r) => Some(Flash {
            ok: true,
            text: format!(
                "模拟完成：{} 个项目，两个版本共用时 {:.1} 秒",
                r.cmp.base.projects, r.seconds
            ),
            code: None,
        }),
        Outcome::Problems(t, _) => Some(Flash {
            ok: false,
            text: format!("{t}，未运行模拟"),
            code: Some("whatif_input".into()),
        }),
        Outcome::None => None,
    };
    let v = view(&app, &user, &id, &files, &sticky, outcome, flash.as_ref()).await;
    (status, v).into_response()
}

enum Refused {
    Form(FormError),
    Api(ApiError),
    /// What is wrong, and each problem located.
    Problems(String, Vec<String>),
}

async fn run(
    app: &App,
    id: &str,
    f: &WhatifForm,
    source: &str,
    yaml: &str,
    population: &str,
    files: &[(String, String)],
) -> Result<Ran, Refused> {
    let seed = f.seed().map_err(Refused::Form)?;
    let span = horizon_span(f.horizon.as_deref().unwrap_or("1y"))
        .map_err(|m| Refused::Form(FormError::new("horizon", m)))?;
    let draft = app.catalog.check(yaml).map_err(|diags| {
        Refused::Problems(
            format!("草案校验未通过（{} 个问题）", diags.len()),
            diags
                .iter()
                .map(|d| {
                    format!(
                        "草案第 {} 行第 {} 列：{} {}",
                        d.line, d.col, d.code, d.message
                    )
                })
                .collect(),
        )
    })?;
    if draft.id() != id {
        return Err(Refused::Form(FormError::new(
            "yaml",
            format!(
                "草案的流程编号「{}」与本页的流程「{id}」不同：请在该流程的页面模拟",
                draft.id()
            ),
        )));
    }
    let (base_version, base) = match app.catalog.latest(&app.db, id).await {
        Ok(Some(b)) => b,
        _ => return Err(Refused::Api(ApiError::not_found("没有该流程的现行版本"))),
    };
    let Some(cal) = app.catalog.calendar(&draft.workflow.calendar.value) else {
        return Err(Refused::Problems(
            "草案的工作日历不可用".into(),
            vec![format!(
                "日历「{}」未在本服务器加载",
                draft.workflow.calendar.value
            )],
        ));
    };
    let (cohort, source): (Cohort, String) = match source {
        "db" => {
            let obs = shenpi_adapters::whatif::observed(&app.db, &base, &cal, seed.unwrap_or(0))
                .await
                .map_err(|e| Refused::Api(ApiError::internal(e)))?;
            if obs.cohort.projects.is_empty() {
                return Err(Refused::Problems(
                    "没有可模拟的项目".into(),
                    vec![format!(
                        "本服务器还没有「{}」的项目：请选择总体文件",
                        WorkflowNames(&base).workflow()
                    )],
                ));
            }
            let src = format!(
                "本服务器的 {} 个项目（历史中 {} 次办理、{} 项承诺）",
                obs.instances, obs.decisions, obs.promises
            );
            (obs.cohort, src)
        }
        other => {
            let (label, text) = match other.strip_prefix("file:") {
                Some(stem) => match files.iter().find(|(s, _)| s == stem) {
                    Some((s, t)) => (format!("总体文件 populations/{s}.yaml"), t.as_str()),
                    None => {
                        return Err(Refused::Form(FormError::new(
                            "source",
                            format!("没有名为「{stem}」的总体文件"),
                        )));
                    }
                },
                None if other == "custom" => ("页面输入的总体".to_string(), population),
                None => {
                    return Err(Refused::Form(FormError::new("source", "请选择项目来源")));
                }
            };
            let located = |errs: Vec<shenpi_engine::whatif::PopulationError>| {
                Refused::Problems(
                    format!("{label}有 {} 处错误", errs.len()),
                    errs.iter().map(ToString::to_string).collect(),
                )
            };
            let mut pop = Population::from_yaml(text).map_err(located)?;
            if let Some(s) = seed {
                pop.seed = s;
            }
            // The population must fit both versions (a field the draft dropped is an error).
            pop.cohort(&base, text).map_err(located)?;
            (pop.cohort(&draft, text).map_err(located)?, label)
        }
    };
    if cohort.projects.len() > MAX_PROJECTS {
        return Err(Refused::Problems(
            "项目太多".into(),
            vec![format!(
                "总体有 {} 个项目，页面上一次最多模拟 {MAX_PROJECTS} 个：请减少，或用命令 shenpi whatif",
                cohort.projects.len()
            )],
        ));
    }
    let Some(first) = cohort.projects.iter().map(|p| p.arrival).min() else {
        return Err(Refused::Problems(
            "总体中没有项目".into(),
            vec!["请设置 per_month 与 months".into()],
        ));
    };
    let Some(horizon) = horizon_after(first, span) else {
        return Err(Refused::Form(FormError::new(
            "horizon",
            "模拟期限超出日历范围",
        )));
    };
    let seed = cohort.seed;
    let started = std::time::Instant::now();
    let (draft, cmp) = tokio::task::spawn_blocking(move || {
        let cmp = compare(&base, &draft, &cal, &cohort, horizon);
        (draft, cmp)
    })
    .await
    .map_err(|e| Refused::Api(ApiError::internal(format!("模拟中断：{e}"))))?;
    Ok(Ran {
        draft,
        base_label: format!("现行第 {base_version} 版"),
        source,
        seed,
        first,
        horizon,
        cmp,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the form shows again after a run.
struct Sticky<'a> {
    yaml: &'a str,
    source: &'a str,
    population: &'a str,
    horizon: &'a str,
    seed: &'a str,
}

async fn view(
    app: &App,
    user: &PageUser,
    id: &str,
    files: &[(String, String)],
    s: &Sticky<'_>,
    outcome: Outcome,
    flash: Option<&Flash>,
) -> Html<String> {
    let name = app
        .catalog
        .latest(&app.db, id)
        .await
        .ok()
        .flatten()
        .map(|(_, d)| d.workflow.name.clone())
        .unwrap_or_else(|| id.to_string());
    let body = html! {
        p.crumbs { a href="/workflows" { "流程规则" } " › " a href={"/workflows/editor?id=" (id)} { (name) } " › 政策模拟" }
        h1 { "政策模拟 · " (name) }
        p.muted { "把草案与现行版本放在同一批项目上、按工作日历在虚拟时间中运行，比较办理周期、预警、督办与承诺。只读取现有数据，不改动任何项目。" }
        form method="post" action={"/workflows/" (id) "/whatif"} id="whatif" {
            input type="hidden" name="csrf" value=(user.csrf);
            fieldset {
                legend { "项目来源" }
                @for (stem, _) in files {
                    @let v = format!("file:{stem}");
                    label.choice { input type="radio" name="source" value=(v) checked[s.source == v]; " 总体文件 " code { (stem) ".yaml" } }
                }
                label.choice { input type="radio" name="source" value="db" checked[s.source == "db"]; " 本服务器的项目（按历史中的办理时间）" }
                label.choice { input type="radio" name="source" value="custom" checked[s.source == "custom"]; " 自定义总体（在下框输入）" }
                details open[s.source == "custom"] {
                    summary { "自定义总体" }
                    textarea name="population" id="population" rows="10" spellcheck="false" placeholder="seed: 7\nstart: 2027-01-04\nper_month: 40\nmonths: 12\nrespond:\n  default: { between: [1, 4] }" { (s.population) }
                }
            }
            div.row {
                label { "模拟期限 "
                    select name="horizon" id="horizon" {
                        @for (v, t) in HORIZONS { option value=(v) selected[s.horizon == v] { (t) } }
                    }
                }
                " "
                label { "随机种子（留空用总体中的）" input type="text" name="seed" id="seed" inputmode="numeric" size="8" value=(s.seed); }
            }
            details {
                summary { "草案（默认为现行版本，可改动后模拟）" }
                div.editor { textarea name="yaml" id="yaml" rows="20" spellcheck="false" { (s.yaml) } }
            }
            div.buttons { button type="submit" id="btn-whatif" { "运行模拟" } }
        }
        @match &outcome {
            Outcome::None => {}
            Outcome::Problems(title, list) => {
                section.diagnostics id="whatif-problems" {
                    h2 { (title) }
                    ul { @for p in list { li.diag.error { (p) } } }
                }
            }
            Outcome::Ran(r) => { (result(r)) }
        }
    };
    page("政策模拟", Some(user), flash, body)
}

fn result(r: &Ran) -> Markup {
    let day = |t: Timestamp| {
        let d = calendar::local_date(t);
        format!("{}年{}月{}日", d.year(), d.month(), d.day())
    };
    let rows = rows(&r.draft, &r.cmp);
    html! {
        section id="whatif-result" {
            h2 { "模拟结果" }
            p { "现行：" (r.base_label) "；草案：页面中的文本。" }
            p { "项目来源：" (r.source) "；随机种子 " (r.seed) "；" (day(r.first)) " 起，模拟至 " (day(r.horizon)) "。" }
            (charts(&r.cmp))
            div.scroll {
                table.whatif id="whatif-table" {
                    thead { tr { th { "指标" } th { "现行" } th { "草案" } } }
                    tbody { @for row in &rows {
                        tr class=[row.differs().then_some("changed")] {
                            td { (row.name) } td { (row.base) } td { (row.draft) @if row.differs() { " ←" } }
                        }
                    } }
                }
            }
            @if let Some(k) = first_refusal(&r.cmp) {
                p.notice { "注：有模拟动作被流程拒绝（例如 " code { (k) } "），这些任务在模拟中一直等待。" }
            }
        }
    }
}

/// The figures that move most with a rule change, as paired bars (现行 / 草案), each pair
/// scaled on its own (they count different things).
fn charts(cmp: &Comparison) -> Markup {
    let (b, d) = (&cmp.base, &cmp.draft);
    let pairs: Vec<(&str, u32, u32)> = vec![
        (
            "办理周期 p50",
            b.lead.p50.unwrap_or(0),
            d.lead.p50.unwrap_or(0),
        ),
        (
            "办理周期 p90",
            b.lead.p90.unwrap_or(0),
            d.lead.p90.unwrap_or(0),
        ),
        ("黄灯任务", b.yellow, d.yellow),
        ("红灯任务", b.red, d.red),
        ("逾期升级", b.escalations, d.escalations),
        ("挂牌督办", b.supervised, d.supervised),
        ("承诺失信", b.promises_breached, d.promises_breached),
        ("期末未办结", b.open_at_horizon, d.open_at_horizon),
    ];
    let rowh = 44;
    let h = rowh * pairs.len() + 30;
    html! {
        figure.whatif-chart {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 560 " (h)} width="560" height=(h) class="chart" role="img" aria-label="现行与草案的主要指标对比" {
                rect x="110" y="2" width="12" height="12" class="bar base" {}
                text x="126" y="13" font-size="12" { "现行" }
                rect x="170" y="2" width="12" height="12" class="bar draft" {}
                text x="186" y="13" font-size="12" { "草案" }
                @for (i, (label, x, y)) in pairs.iter().enumerate() {
                    @let top = 24 + i * rowh;
                    @let max = (*x).max(*y).max(1);
                    @let wx = 360 * *x as usize / max as usize;
                    @let wy = 360 * *y as usize / max as usize;
                    text x="0" y=(top + 24) font-size="12" { (label) }
                    rect x="110" y=(top) width=(wx.max(1)) height="17" class="bar base" {}
                    text x=(114 + wx) y=(top + 13) font-size="11" { (x) }
                    rect x="110" y=(top + 19) width=(wy.max(1)) height="17" class="bar draft" {}
                    text x=(114 + wy) y=(top + 32) font-size="11" { (y) }
                }
            }
            figcaption.muted { "每组按其中较大者缩放；办理周期单位为工作日。" }
        }
    }
}
