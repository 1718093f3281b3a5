//! `shenpi validate PATH...`: check workflow files (files or directories, default `workflows`)
//! and print every diagnostic rustc style on stderr, or as JSON on stdout with `--format json`.
//!
//! Exit codes follow `main`: 0 when every file is clean (warnings allowed), 1 when some file has
//! errors, 2 when a path cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use shenpi_adapters::loader::{self, LoadOptions, LoadedFile};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: error[CODE]: message`, the line quoted, a caret and a help line.
    Text,
    /// A JSON array of diagnostics, each with its file.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Workflow files or directories of them.
    #[arg(default_value = "workflows")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Directory of calendars (`<id>.yaml`); default: `calendars/` next to each file or above.
    #[arg(long)]
    calendars: Option<PathBuf>,
    /// Directory of message templates (`<name>.hbs`); default: `templates/` next to each file
    /// or above.
    #[arg(long)]
    templates: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        calendars_dir: args.calendars,
        templates_dir: args.templates,
    };
    let mut unreadable = false;
    let mut files: Vec<LoadedFile> = Vec::new();
    for path in &args.paths {
        let found = match loader::workflow_files(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                unreadable = true;
                continue;
            }
        };
        for f in found {
            match loader::load_file(&f, &opts) {
                Ok(loaded) => files.push(loaded),
                Err(e) => {
                    eprintln!("error: {e}");
                    unreadable = true;
                }
            }
        }
    }
    loader::reject_duplicate_ids(&mut files);

    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut json = Vec::new();
    for file in &files {
        let name = file.path.display().to_string();
        for d in file.diagnostics() {
            if d.is_error() {
                errors += 1;
            } else {
                warnings += 1;
            }
            match args.format {
                Format::Text => eprint!("{}", d.render(&name, &file.source)),
                Format::Json => {
                    let mut v = serde_json::to_value(&d)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("file".into(), serde_json::Value::String(name.clone()));
                    }
                    json.push(v);
                }
            }
        }
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    let failed = files.iter().filter(|f| f.result.is_err()).count();
    eprintln!(
        "checked {} workflow file{}: {} error{}, {} warning{}{}",
        files.len(),
        plural(files.len()),
        errors,
        plural(errors),
        warnings,
        plural(warnings),
        if failed > 0 {
            format!("; {failed} file{} not loaded", plural(failed))
        } else {
            String::new()
        }
    );
    Ok(if unreadable {
        ExitCode::from(2)
    } else if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
