//! `shenpi graph FILE [--format mermaid|dot]`: a workflow's state graph as diagram text on stdout.
//!
//! The file is loaded as `shenpi validate` loads it (parse, validate, compile); an invalid workflow
//! prints its diagnostics (rustc style) on stderr and exits 1, since a diagram of a workflow that
//! cannot run would mislead. Warnings go to stderr and the diagram is still printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shenpi_adapters::loader::{self, LoadOptions};
use shenpi_engine::compile::Definition;
use shenpi_engine::diagram::{self, Highlight};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Mermaid `flowchart TD` (paste into a Markdown file or mermaid.live).
    Mermaid,
    /// Graphviz DOT (`| dot -Tsvg > flow.svg`).
    Dot,
}

#[derive(clap::Args)]
pub struct Args {
    /// The workflow file (YAML).
    file: PathBuf,
    #[arg(long, value_enum, default_value = "mermaid")]
    format: Format,
    /// Mark these node ids as where an instance stands (repeatable).
    #[arg(long, value_name = "NODE")]
    current: Vec<String>,
    /// Mark these node ids as passed (repeatable).
    #[arg(long, value_name = "NODE")]
    done: Vec<String>,
    /// Directory of calendars (`<id>.yaml`); default: `calendars/` next to the file or above.
    #[arg(long, value_name = "DIR")]
    calendars: Option<PathBuf>,
    /// Directory of message templates (`<name>.hbs`); default: `templates/` next to the file or
    /// above.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        calendars_dir: args.calendars,
        templates_dir: args.templates,
    };
    let Some(def) = load_workflow(&args.file, &opts)? else {
        return Ok(ExitCode::from(1));
    };
    let current: Vec<&str> = args.current.iter().map(String::as_str).collect();
    let done: Vec<&str> = args.done.iter().map(String::as_str).collect();
    let highlight = Highlight {
        current: &current,
        done: &done,
        skipped: &[],
        not_taken: &[],
    };
    let format = match args.format {
        Format::Mermaid => diagram::Format::Mermaid,
        Format::Dot => diagram::Format::Dot,
    };
    print!("{}", diagram::render(&def, format, &highlight));
    Ok(ExitCode::SUCCESS)
}

/// Loads one workflow file (parse, validate, compile; calendars and templates found next to it or
/// as given). `Ok(None)`: the workflow is invalid and its diagnostics have been printed.
fn load_workflow(path: &Path, opts: &LoadOptions) -> anyhow::Result<Option<Definition>> {
    let file = loader::load_file(path, opts)?;
    let name = file.path.display().to_string();
    for d in file.diagnostics() {
        eprint!("{}", d.render(&name, &file.source));
    }
    Ok(file.result.ok())
}
