//! `shenpi schema [--out FILE]`: the JSON Schema of the workflow language, generated from the
//! engine's model types. `workflows/schema.json` is this output; an engine test fails when the
//! committed file is stale.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write the schema to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = serde_json::to_string_pretty(&shenpi_engine::model::json_schema())? + "\n";
    match args.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
