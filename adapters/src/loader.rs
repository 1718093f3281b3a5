//! Loading workflow files from disk: find them, read them, and parse + validate + compile each.
//!
//! This is the I/O half of what `engine::compile` does purely. It owns where things live on disk:
//! a workflow directory holds `*.yaml` workflows directly (the `calendars/`, `templates/` and
//! `scenarios/` subfolders hold other things and are not walked); the calendars a workflow may
//! name are the stems of `calendars/*.yaml`, its templates the stems of `templates/*.hbs`, looked
//! up next to the workflow file and then in its parent (so `workflows/x.yaml` and
//! `workflows/drafts/y.yaml` both find `workflows/calendars/`), unless given explicitly.
//!
//! A file that fails is never half-loaded: its result is its diagnostics, not a partial
//! definition. Two files declaring the same workflow id are both kept out of doubt: the later one
//! (in path order) fails with `E042`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shenpi_engine::compile::{Definition, compile};
use shenpi_engine::diag::Diagnostic;
use shenpi_engine::parse::{parse_workflow, source_text};
use shenpi_engine::span::Pos;
use shenpi_engine::validate::{DUPLICATE_WORKFLOW, UNKNOWN_CALENDAR, ValidateContext};

/// Why loading could not even look at a workflow.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a workflow file (.yaml) or a directory of them", path.display())]
    NotWorkflow { path: PathBuf },
}

/// Where calendars and templates are, when not found next to the workflow files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A directory of `<id>.yaml` calendars.
    pub calendars_dir: Option<PathBuf>,
    /// A directory of `<name>.hbs` templates.
    pub templates_dir: Option<PathBuf>,
}

/// One workflow file and what became of it.
#[derive(Debug)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub source: String,
    /// The compiled definition, or every diagnostic that stopped it. Warnings of a file that
    /// compiled are in `warnings`.
    pub result: Result<Definition, Vec<Diagnostic>>,
    pub warnings: Vec<Diagnostic>,
}

impl LoadedFile {
    /// Every diagnostic of the file, errors and warnings, in position order.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut all = self.warnings.clone();
        if let Err(errs) = &self.result {
            all.extend(errs.iter().cloned());
        }
        all.sort_by_key(|d| (d.line, d.col));
        all.dedup();
        all
    }
}

/// The workflow files at `path`: the file itself, or the `*.yaml`/`*.yml` files directly in the
/// directory, sorted.
pub fn workflow_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = fs::metadata(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        return if is_yaml(path) {
            Ok(vec![path.to_path_buf()])
        } else {
            Err(LoadError::NotWorkflow {
                path: path.to_path_buf(),
            })
        };
    }
    let mut files = files_with(path, is_yaml)?;
    files.sort();
    Ok(files)
}

fn is_yaml(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Regular files directly in `dir` that `keep` accepts.
fn files_with(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let p = entry.path();
        if p.is_file() && keep(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The files in `dir` with extension `ext`, with their stems, sorted by stem.
pub fn named_files(dir: &Path, ext: &str) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let mut out: Vec<(String, PathBuf)> =
        files_with(dir, |p| p.extension().and_then(|e| e.to_str()) == Some(ext))?
            .into_iter()
            .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
            .collect();
    out.sort();
    Ok(out)
}

/// The document templates of a workflow folder (`documents/<name>.txt`: commitment letters,
/// official documents), name → text; none when the folder has no `documents/`.
pub fn document_templates(dir: &Path) -> Result<BTreeMap<String, String>, LoadError> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for (name, path) in named_files(dir, "txt")? {
        let text = fs::read_to_string(&path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        out.insert(name, text);
    }
    Ok(out)
}

/// Stems of the files in `dir` with extension `ext`, sorted.
fn stems(dir: &Path, ext: &str) -> Result<Vec<String>, LoadError> {
    Ok(named_files(dir, ext)?.into_iter().map(|(s, _)| s).collect())
}

/// The directory `name` next to `file`, or in the directory above.
fn find_dir(file: &Path, name: &str) -> Option<PathBuf> {
    let here = file.parent().unwrap_or(Path::new("."));
    let here = if here.as_os_str().is_empty() {
        Path::new(".")
    } else {
        here
    };
    [Some(here), here.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|d| d.is_dir())
}

/// What validation needs to know about `file`'s surroundings; `None` calendars when no calendar
/// directory exists at all.
fn context_for(file: &Path, opts: &LoadOptions) -> Result<(ValidateContext, bool), LoadError> {
    let cal_dir = opts
        .calendars_dir
        .clone()
        .or_else(|| find_dir(file, "calendars"));
    let tpl_dir = opts
        .templates_dir
        .clone()
        .or_else(|| find_dir(file, "templates"));
    let calendars = match &cal_dir {
        Some(d) => stems(d, "yaml")?,
        None => Vec::new(),
    };
    let templates = match &tpl_dir {
        Some(d) => stems(d, "hbs")?,
        None => Vec::new(),
    };
    let documents = match find_dir(file, "documents") {
        Some(d) => document_templates(&d)?,
        None => BTreeMap::new(),
    };
    let found = !calendars.is_empty();
    Ok((
        ValidateContext {
            calendars,
            templates,
            documents,
        },
        found,
    ))
}

/// What validation needs to know about the surroundings of `file` (its calendars and templates),
/// for compiling a version's text that did not come from that file (what-if on a database's
/// latest version).
pub fn context_near(file: &Path, opts: &LoadOptions) -> Result<ValidateContext, LoadError> {
    context_for(file, opts).map(|(ctx, _)| ctx)
}

/// Reads, parses, validates and compiles one workflow file.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<LoadedFile, LoadError> {
    let (ctx, calendars_found) = context_for(path, opts)?;
    load_file_in(path, &ctx, calendars_found)
}

/// [`load_file`] against a context already known (a server's, whose calendars are read once).
fn load_file_in(
    path: &Path,
    ctx: &ValidateContext,
    calendars_found: bool,
) -> Result<LoadedFile, LoadError> {
    let bytes = fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = source_text(&bytes).map(str::to_owned).map_err(|d| vec![d]);
    // A file that is not UTF-8 is shown as far as it reads, with the located error.
    let source = match &text {
        Ok(t) => t.clone(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let (result, warnings) = match text.and_then(|t| parse_workflow(&t)) {
        Err(diags) => (Err(diags), Vec::new()),
        Ok(workflow) => {
            let mut missing_calendar = Vec::new();
            if !calendars_found {
                missing_calendar.push(UNKNOWN_CALENDAR.at(
                    workflow.calendar.pos,
                    format!(
                        "calendar `{}` cannot be checked: no `calendars/` directory with \
                         `<id>.yaml` files next to {} or in its parent",
                        workflow.calendar.value,
                        path.display()
                    ),
                ));
            }
            match compile(workflow, ctx) {
                Ok(def) if missing_calendar.is_empty() => {
                    // Warnings do not stop compilation; recompute them for display.
                    let warnings = shenpi_engine::validate::validate(&def.workflow, ctx);
                    (Ok(def), warnings)
                }
                Ok(def) => {
                    let mut diags = shenpi_engine::validate::validate(&def.workflow, ctx);
                    diags.extend(missing_calendar);
                    (Err(diags), Vec::new())
                }
                Err(mut diags) => {
                    diags.extend(missing_calendar);
                    (Err(diags), Vec::new())
                }
            }
        }
    };
    Ok(LoadedFile {
        path: path.to_path_buf(),
        source,
        result,
        warnings,
    })
}

/// Loads every workflow file under `paths` (files or directories), then fails any file whose
/// workflow id an earlier file already declared.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Vec<LoadedFile>, LoadError> {
    let mut files = Vec::new();
    for p in paths {
        for f in workflow_files(p)? {
            files.push(load_file(&f, opts)?);
        }
    }
    reject_duplicate_ids(&mut files);
    Ok(files)
}

/// [`load`] against one context for every file: what a server knows of its calendars and
/// templates (`EngineMachine::validate_context`), read once at its start.
pub fn load_in(paths: &[PathBuf], ctx: &ValidateContext) -> Result<Vec<LoadedFile>, LoadError> {
    let mut files = Vec::new();
    for p in paths {
        for f in workflow_files(p)? {
            files.push(load_file_in(&f, ctx, !ctx.calendars.is_empty())?);
        }
    }
    reject_duplicate_ids(&mut files);
    Ok(files)
}

/// Fails every file whose workflow id an earlier file (in slice order) already declared.
pub fn reject_duplicate_ids(files: &mut [LoadedFile]) {
    let mut first: HashMap<String, PathBuf> = HashMap::new();
    for file in files.iter_mut() {
        let Ok(def) = &file.result else { continue };
        let id = def.workflow.id.value.clone();
        let pos: Pos = def.workflow.id.pos;
        match first.get(&id) {
            Some(earlier) => {
                let d = DUPLICATE_WORKFLOW.at(
                    pos,
                    format!(
                        "workflow id `{id}` is already declared by {}",
                        earlier.display()
                    ),
                );
                file.result = Err(vec![d]);
            }
            None => {
                first.insert(id, file.path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WF: &str = "id: ID\nname: W\ncalendar: cn-mainland\nstart: a\nroles:\n  - {id: clerk}\nnodes:\n  - id: a\n    type: task\n    assignee: {role: clerk}\n    actions: [approve]\n    next: done\n  - {id: done, type: end, outcome: approved}\n";

    /// A scratch directory under the target dir, unique per test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shenpi-loader-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("calendars")).expect("mkdir");
        fs::create_dir_all(dir.join("templates")).expect("mkdir");
        fs::create_dir_all(dir.join("scenarios")).expect("mkdir");
        fs::write(dir.join("calendars/cn-mainland.yaml"), "years: []\n").expect("write");
        fs::write(dir.join("templates/task_assigned.hbs"), "hi").expect("write");
        fs::write(dir.join("scenarios/happy.yaml"), "not: a workflow\n").expect("write");
        dir
    }

    #[test]
    fn loads_a_directory_and_skips_subfolders() {
        let dir = scratch("dir");
        fs::write(dir.join("one.yaml"), WF.replace("ID", "one")).expect("write");
        fs::write(dir.join("two.yaml"), WF.replace("ID", "two")).expect("write");
        let files = load(std::slice::from_ref(&dir), &LoadOptions::default()).expect("loads");
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.result.is_ok()), "{files:?}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_calendar_and_duplicate_ids() {
        let dir = scratch("dups");
        fs::write(dir.join("a.yaml"), WF.replace("ID", "same")).expect("write");
        fs::write(dir.join("b.yaml"), WF.replace("ID", "same")).expect("write");
        fs::write(
            dir.join("c.yaml"),
            WF.replace("ID", "c").replace("cn-mainland", "mars"),
        )
        .expect("write");
        let files = load(std::slice::from_ref(&dir), &LoadOptions::default()).expect("loads");
        assert!(files[0].result.is_ok());
        let b = files[1].result.as_ref().expect_err("duplicate id");
        assert_eq!(b[0].code, "E042");
        assert_eq!(b[0].line, 1);
        let c = files[2].result.as_ref().expect_err("unknown calendar");
        assert_eq!(c[0].code, "E010");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn finds_calendars_in_the_parent_or_by_override() {
        let dir = scratch("parent");
        fs::create_dir_all(dir.join("drafts")).expect("mkdir");
        let f = dir.join("drafts/x.yaml");
        fs::write(&f, WF.replace("ID", "x")).expect("write");
        assert!(
            load_file(&f, &LoadOptions::default())
                .expect("reads")
                .result
                .is_ok()
        );
        let opts = LoadOptions {
            calendars_dir: Some(dir.join("templates")), // no .yaml in it: no calendars
            templates_dir: None,
        };
        let r = load_file(&f, &opts).expect("reads").result;
        assert_eq!(r.expect_err("no calendars")[0].code, "E010");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unreadable_paths_are_errors() {
        let missing = std::env::temp_dir().join("shenpi-loader-does-not-exist");
        assert!(matches!(
            workflow_files(&missing),
            Err(LoadError::Read { .. })
        ));
    }
}
