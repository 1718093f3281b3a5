//! `shenpi whatif --draft FILE (--population FILE | --db URL) [--base FILE] [--horizon 1y]`:
//! 政策模拟. Runs the projects of a population file, or the projects a database holds (with the
//! response times and shares their histories show), through a draft and through the version in
//! force, on virtual time and in memory, and prints the two side by side (`--json`: the figures).
//!
//! The version in force is `--base FILE` when given; else, with `--db`, the latest version
//! published there; else the file under `--workflows` (default `workflows/`) with the draft's id.
//! Exit codes: 0 it ran; 2 an input could not be read or does not fit (every error printed,
//! located, nothing run).

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use jiff::{Timestamp, ToSpan};
use shenpi_adapters::store::{Db, DefinitionStore};
use shenpi_engine::calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::whatif::{Cohort, Comparison, Figures, Population, Spread, compare};

use super::simulate::{load_calendar, load_definition};

#[derive(clap::Args)]
pub struct Args {
    /// The draft (or any version) to try: a workflow file.
    #[arg(long)]
    draft: PathBuf,
    /// The version to compare with (default: the version in force, see above).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Where the workflows in force are, when neither --base nor --db says.
    #[arg(long, default_value = "workflows")]
    workflows: PathBuf,
    /// A population file (projects, arrivals, field distributions, response times, shares).
    #[arg(long, required_unless_present = "db", conflicts_with = "db")]
    population: Option<PathBuf>,
    /// Run the projects this database holds (sqlite:///path or postgres://...).
    #[arg(long)]
    db: Option<String>,
    /// How far to run: `1y`, `6m`, `90d` from the first arrival.
    #[arg(long, default_value = "1y")]
    horizon: String,
    /// Overrides the population's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Directory of calendars (default: `calendars/` next to the workflow or above).
    #[arg(long)]
    calendars: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let draft_src = fs::read_to_string(&args.draft)
        .with_context(|| format!("cannot read {}", args.draft.display()))?;
    let draft_id = parse_workflow(&draft_src)
        .map(|w| w.id.value)
        .map_err(|_| anyhow::anyhow!("{} is not a workflow file", args.draft.display()))?;
    let (draft, draft_path) = load_definition(&args.draft, &draft_id, args.calendars.clone())?;
    let cal = load_calendar(
        &draft_path,
        &draft.workflow.calendar.value,
        args.calendars.as_deref(),
    )?;
    let horizon_span = parse_horizon(&args.horizon)?;

    let (base, base_label, cohort, source) = match (&args.population, &args.db) {
        (Some(p), _) => {
            let src =
                fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            let (base, label) = base_from_files(&args, &draft_id)?;
            let mut pop = match Population::from_yaml(&src) {
                Ok(pop) => pop,
                Err(errs) => return Ok(population_errors(p, &errs)),
            };
            if let Some(s) = args.seed {
                pop.seed = s;
            }
            // The population must fit both versions (a field the draft dropped is an error).
            for def in [&draft, &base] {
                if let Err(errs) = pop.cohort(def, &src) {
                    return Ok(population_errors(p, &errs));
                }
            }
            let cohort = pop
                .cohort(&draft, &src)
                .map_err(|_| anyhow::anyhow!("population"))?;
            (base, label, cohort, format!("总体文件 {}", p.display()))
        }
        (None, Some(url)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let db = Db::connect(url).await?;
                let (base, label) = match &args.base {
                    Some(_) => base_from_files(&args, &draft_id)?,
                    None => {
                        let Some(row) = db.latest_definition(&draft_id).await? else {
                            bail!("no published version of workflow `{draft_id}` in {url}");
                        };
                        let def = compile_text(&row.yaml, &draft_path, &args)?;
                        (def, format!("现行第 {} 版（数据库）", row.version))
                    }
                };
                let obs =
                    shenpi_adapters::whatif::observed(&db, &base, &cal, args.seed.unwrap_or(0))
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                if obs.cohort.projects.is_empty() {
                    bail!("the database holds no instance of workflow `{draft_id}`");
                }
                let source = format!(
                    "数据库中的 {} 个项目（历史中 {} 次办理、{} 项承诺）",
                    obs.instances, obs.decisions, obs.promises
                );
                Ok((base, label, obs.cohort, source))
            })?
        }
        (None, None) => bail!("--population FILE or --db URL is required"),
    };
    let Some(first) = cohort.projects.iter().map(|p| p.arrival).min() else {
        bail!("the population has no project");
    };
    let horizon = calendar::start_of_day(calendar::local_date(first))
        .checked_add(horizon_span)
        .or_else(|_| {
            calendar::local_datetime(first)
                .checked_add(horizon_span)
                .map(calendar::from_local_datetime)
        })
        .context("horizon out of range")?;

    let started = Instant::now();
    let cmp = compare(&base, &draft, &cal, &cohort, horizon);
    let elapsed = started.elapsed();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
    } else {
        print!(
            "{}",
            table(
                &draft,
                &base_label,
                &args.draft.display().to_string(),
                &cohort,
                &source,
                first,
                horizon,
                &cmp
            )
        );
    }
    eprintln!(
        "whatif: {} projects through 2 versions in {:.2} s",
        cmp.base.projects,
        elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The version in force from files: `--base`, else the file with the draft's id.
fn base_from_files(args: &Args, id: &str) -> anyhow::Result<(Definition, String)> {
    let path = args.base.clone().unwrap_or_else(|| args.workflows.clone());
    let (def, file) = load_definition(&path, id, args.calendars.clone())?;
    Ok((def, format!("现行版本（{}）", file.display())))
}

/// Compiles a version's text with the validation context of the draft's surroundings.
fn compile_text(yaml: &str, near: &std::path::Path, args: &Args) -> anyhow::Result<Definition> {
    let ctx = shenpi_adapters::loader::context_near(
        near,
        &shenpi_adapters::loader::LoadOptions {
            calendars_dir: args.calendars.clone(),
            templates_dir: None,
        },
    )?;
    let wf = parse_workflow(yaml)
        .map_err(|_| anyhow::anyhow!("the published version does not parse"))?;
    compile(wf, &ctx).map_err(|d| {
        anyhow::anyhow!(
            "the published version does not compile here: {}",
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

fn population_errors(
    path: &std::path::Path,
    errs: &[shenpi_engine::whatif::PopulationError],
) -> ExitCode {
    for e in errs {
        eprintln!("{}: {e}", path.display());
    }
    eprintln!("{}: 有 {} 处错误，未运行模拟", path.display(), errs.len());
    ExitCode::from(2)
}

/// `1y`, `18m`, `90d`, `12w`.
fn parse_horizon(s: &str) -> anyhow::Result<jiff::Span> {
    let t = s.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = n.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--horizon `{s}`: write a number and y, m, w or d (1y, 6m, 90d)")
    })?;
    let span = match unit {
        "y" if n <= 10 => n.years(),
        "m" if n <= 120 => n.months(),
        "w" if n <= 520 => n.weeks(),
        "d" if n <= 3650 => n.days(),
        _ => bail!(
            "--horizon `{s}`: write a number and y, m, w or d, at most 10 years (1y, 6m, 90d)"
        ),
    };
    Ok(span)
}

#[allow(clippy::too_many_arguments)]
fn table(
    def: &Definition,
    base_label: &str,
    draft_label: &str,
    cohort: &Cohort,
    source: &str,
    first: Timestamp,
    horizon: Timestamp,
    cmp: &Comparison,
) -> String {
    let wf = &def.workflow;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |name: String, f: &dyn Fn(&Figures) -> String| {
        rows.push((name, f(&cmp.base), f(&cmp.draft)));
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
    let mut stage_ids: Vec<&String> = cmp
        .base
        .stages
        .keys()
        .chain(cmp.draft.stages.keys())
        .collect();
    stage_ids.sort();
    stage_ids.dedup();
    for s in stage_ids {
        let name = wf
            .stages
            .iter()
            .find(|x| x.id.value == *s)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| s.clone());
        row(format!("阶段「{name}」p50 / p90"), &|f| {
            f.stages.get(s).map(spread).unwrap_or_else(|| "—".into())
        });
    }
    let mut dept_ids: Vec<&String> = cmp
        .base
        .departments
        .keys()
        .chain(cmp.draft.departments.keys())
        .collect();
    dept_ids.sort();
    dept_ids.dedup();
    for d in dept_ids {
        let name = if d.is_empty() {
            "项目单位".to_string()
        } else {
            wf.departments
                .iter()
                .find(|x| x.id.value == *d)
                .and_then(|x| x.name.clone())
                .unwrap_or_else(|| d.clone())
        };
        row(format!("「{name}」办理 p50 / p90"), &|f| {
            f.departments
                .get(d)
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
    for c in &wf.channels {
        let name = c.name.clone().unwrap_or_else(|| c.id.value.clone());
        let id = c.id.value.clone();
        row(format!("「{name}」占比"), &move |f| {
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

    let width = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(width(s))));
    let w0 = rows.iter().map(|r| width(&r.0)).max().unwrap_or(0).max(4);
    let w1 = rows.iter().map(|r| width(&r.1)).max().unwrap_or(0).max(4);
    let mut out = String::new();
    let day = |t: Timestamp| calendar::local_date(t).to_string();
    out.push_str(&format!("政策模拟：{}\n", wf.name));
    out.push_str(&format!("现行：{base_label}\n草案：{draft_label}\n"));
    out.push_str(&format!(
        "项目来源：{source}；随机种子 {}；{} 起，模拟至 {}\n\n",
        cohort.seed,
        day(first),
        day(horizon)
    ));
    out.push_str(&format!("{}  {}  草案\n", pad("指标", w0), pad("现行", w1)));
    for (name, a, b) in &rows {
        let mark = if a != b { "  ←" } else { "" };
        out.push_str(&format!("{}  {}  {b}{mark}\n", pad(name, w0), pad(a, w1)));
    }
    if let Some((k, _)) = cmp
        .base
        .refusals
        .iter()
        .chain(cmp.draft.refusals.iter())
        .next()
    {
        out.push_str(&format!(
            "\n注：有模拟动作被流程拒绝（例如 {k}），这些任务在模拟中一直等待。\n"
        ));
    }
    out
}

fn spread(s: &Spread) -> String {
    match (s.p50, s.p90) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "—".into(),
    }
}
