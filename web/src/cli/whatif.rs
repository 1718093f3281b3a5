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
use jiff::Timestamp;
use shenpi_adapters::store::{Db, DefinitionStore};
use shenpi_engine::calendar;
use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::whatif::{Cohort, Comparison, Population, compare};
use shenpi_web::server::whatif;

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
    let horizon_span = whatif::horizon_span(&args.horizon).map_err(|m| anyhow::anyhow!(m))?;

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
    let horizon = whatif::horizon_after(first, horizon_span).context("horizon out of range")?;

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
    let rows: Vec<(String, String, String)> = whatif::rows(def, cmp)
        .into_iter()
        .map(|r| (r.name, r.base, r.draft))
        .collect();

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
    if let Some(k) = whatif::first_refusal(cmp) {
        out.push_str(&format!(
            "\n注：有模拟动作被流程拒绝（例如 {k}），这些任务在模拟中一直等待。\n"
        ));
    }
    out
}
