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
