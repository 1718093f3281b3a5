//! What several engine test files read of the shipped `workflows/` folder: the folder, its file
//! stems, and the validation context a server would build from it.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shenpi_engine::validate::ValidateContext;

pub fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// File stems of the files in `dir` ending with `.ext`, sorted; none when `dir` is missing.
pub fn stems(dir: &Path, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The document templates of `dir` (`<name>.txt`), name → text.
pub fn documents(dir: &Path) -> BTreeMap<String, String> {
    stems(dir, "txt")
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{name}.txt"));
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

/// The context `shenpi serve` builds from the shipped folder: its calendars, message templates
/// and document templates.
pub fn shipped_context() -> ValidateContext {
    let dir = workflows_dir();
    ValidateContext {
        calendars: stems(&dir.join("calendars"), "yaml"),
        templates: stems(&dir.join("templates"), "hbs"),
        documents: documents(&dir.join("documents")),
    }
}

/// The shipped mainland calendar (`workflows/calendars/cn-mainland.yaml`).
pub fn mainland() -> shenpi_engine::calendar::Calendar {
    let src = include_str!("../../../workflows/calendars/cn-mainland.yaml");
    shenpi_engine::calendar::Calendar::from_yaml("cn-mainland", src)
        .unwrap_or_else(|d| panic!("calendar: {d:?}"))
}

/// A workflow text parsed and compiled on the mainland calendar; a test's own workflow, so any
/// error is the test's bug and panics with the diagnostics.
pub fn compiled(src: &str) -> shenpi_engine::compile::Definition {
    let wf = shenpi_engine::parse::parse_workflow(src).unwrap_or_else(|d| panic!("parse: {d:?}"));
    let ctx = ValidateContext {
        calendars: vec!["cn-mainland".into()],
        ..Default::default()
    };
    shenpi_engine::compile::compile(wf, &ctx).unwrap_or_else(|d| panic!("compile: {d:#?}"))
}

/// An instant written in RFC 3339.
pub fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}
