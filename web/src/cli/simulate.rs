//! `shenpi simulate FILE --scenario SCENARIO.yaml`: run a scenario through a workflow on virtual
//! time and print `{events: [...], state: {...}}` as JSON on stdout.
//!
//! FILE is a workflow file, or a directory of them (the one whose id the scenario names is used).
//! The calendar is `calendars/<id>.yaml` next to the workflow file or in its parent, unless
//! `--calendars` says where. Exit codes: 0 the scenario ran and met its expectations; 1 it ran
//! but a step was refused unexpectedly or an expectation failed (the output so far is still
//! printed; the reason goes to stderr); 2 an input could not be read (file, workflow, calendar,
//! scenario).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use shenpi_adapters::loader::{self, LoadOptions};
use shenpi_engine::calendar::Calendar;
use shenpi_engine::compile::Definition;
use shenpi_engine::simulate::{Scenario, run_with_output};

#[derive(clap::Args)]
pub struct Args {
    /// The workflow file (or a directory of workflows).
    file: PathBuf,
    /// The scenario to run.
    #[arg(long)]
    scenario: PathBuf,
    /// Directory of calendars (`<id>.yaml`); default: `calendars/` next to the workflow or above.
    #[arg(long)]
    calendars: Option<PathBuf>,
    /// Print compact JSON instead of pretty-printed.
    #[arg(long)]
    compact: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sc_src = fs::read_to_string(&args.scenario)
        .with_context(|| format!("cannot read {}", args.scenario.display()))?;
    let scenario = Scenario::from_yaml(&sc_src)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.scenario.display()))?;
    let (def, wf_path) = load_definition(&args.file, &scenario.workflow, args.calendars.clone())?;
    let cal = load_calendar(
        &wf_path,
        &def.workflow.calendar.value,
        args.calendars.as_deref(),
    )?;

    let (out, result) = run_with_output(&def, &cal, &scenario);
    let json = if args.compact {
        serde_json::to_string(&out)?
    } else {
        serde_json::to_string_pretty(&out)?
    };
    println!("{json}");
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is_input_error() => {
            eprintln!("error: {}: {e}", args.scenario.display());
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("scenario failed: {}: {e}", args.scenario.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Loads the workflow `id` from `path` (a file, or a directory of workflow files).
pub(crate) fn load_definition(
    path: &Path,
    id: &str,
    calendars_dir: Option<PathBuf>,
) -> anyhow::Result<(Definition, PathBuf)> {
    let opts = LoadOptions {
        calendars_dir,
        templates_dir: None,
    };
    let mut candidates = Vec::new();
    for f in loader::workflow_files(path)? {
        let loaded = loader::load_file(&f, &opts)?;
        let matches = match &loaded.result {
            Ok(def) => def.id() == id,
            // A file that does not compile is only an error when it is the one asked for.
            Err(_) => path.is_file(),
        };
        if matches {
            candidates.push(loaded);
        }
    }
    let Some(file) = candidates.into_iter().next() else {
        bail!("no workflow with id `{id}` in {}", path.display());
    };
    match file.result {
        Ok(def) => {
            if def.id() != id {
                bail!(
                    "{} is workflow `{}`, but the scenario is for `{id}`",
                    file.path.display(),
                    def.id()
                );
            }
            Ok((def, file.path))
        }
        Err(diags) => {
            let name = file.path.display().to_string();
            for d in &diags {
                eprint!("{}", d.render(&name, &file.source));
            }
            bail!("{name} does not validate")
        }
    }
}

/// Reads calendar `id` from `dir`, or from `calendars/` next to the workflow or in its parent.
pub(crate) fn load_calendar(
    workflow: &Path,
    id: &str,
    dir: Option<&Path>,
) -> anyhow::Result<Calendar> {
    let here = workflow.parent().unwrap_or(Path::new("."));
    let candidates: Vec<PathBuf> = match dir {
        Some(d) => vec![d.join(format!("{id}.yaml"))],
        None => [Some(here), here.parent()]
            .into_iter()
            .flatten()
            .map(|d| d.join("calendars").join(format!("{id}.yaml")))
            .collect(),
    };
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        bail!(
            "calendar `{id}` not found (looked for {})",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let src =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Calendar::from_yaml(id, &src).map_err(|diags| {
        let name = path.display().to_string();
        for d in &diags {
            eprint!("{}", d.render(&name, &src));
        }
        anyhow::anyhow!("calendar {name} is invalid")
    })
}
