//! `shenpi openapi [--out FILE]`: the API's OpenAPI document, as `/api/openapi.json` serves it,
//! without starting a server (so CI can check it with an OpenAPI validator).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write the document to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = shenpi_web::server::openapi::document()
        .to_pretty_json()
        .context("the OpenAPI document does not serialise")?
        + "\n";
    match args.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
