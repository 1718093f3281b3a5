//! Data-driven validation tests: every `tests/fixtures/valid/*.yaml` validates clean, and every
//! `tests/fixtures/invalid/<name>.yaml` reports exactly the `line:col CODE` lines of its sibling
//! `<name>.expect`. Adding a case is adding two files.
//!
//! `SHENPI_BLESS=1 cargo test -p shenpi-engine --test validate_fixtures` rewrites the `.expect`
//! files from the current output; review the diff before keeping it.

use std::fs;
use std::path::{Path, PathBuf};

use shenpi_engine::diag::Diagnostic;
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::validate::{RULES, ValidateContext, validate};

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ctx() -> ValidateContext {
    ValidateContext {
        calendars: vec!["cn-mainland".into()],
        templates: vec!["task_assigned".into(), "report".into(), "overdue".into()],
        documents: common::documents(&fixtures().join("documents")),
    }
}

/// Parse errors and validation diagnostics alike.
fn diagnose(source: &str) -> Vec<Diagnostic> {
    match parse_workflow(source) {
        Ok(w) => validate(&w, &ctx()),
        Err(d) => d,
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn render_all(file: &Path, source: &str, diags: &[Diagnostic]) -> String {
    let name = file.display().to_string();
    diags.iter().map(|d| d.render(&name, source)).collect()
}

#[test]
fn valid_fixtures_are_clean() {
    let files = yaml_files(&fixtures().join("valid"));
    assert!(files.len() >= 2, "expected valid fixtures");
    for file in files {
        let source = fs::read_to_string(&file).expect("readable fixture");
        let diags = diagnose(&source);
        assert!(diags.is_empty(), "{}", render_all(&file, &source, &diags));
    }
}

#[test]
fn invalid_fixtures_report_what_they_expect() {
    let bless = std::env::var_os("SHENPI_BLESS").is_some();
    let files = yaml_files(&fixtures().join("invalid"));
    let mut failures = Vec::new();
    for file in &files {
        let source = fs::read_to_string(file).expect("readable fixture");
        let diags = diagnose(&source);
        let got: Vec<String> = diags
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.code))
            .collect();
        let expect_path = file.with_extension("expect");
        if bless {
            eprint!("{}", render_all(file, &source, &diags));
            fs::write(&expect_path, got.join("\n") + "\n").expect("write .expect");
            continue;
        }
        let expected: Vec<String> = fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if got != expected {
            failures.push(format!(
                "{}\n  expected: {expected:?}\n  got:      {got:?}\n{}",
                file.display(),
                render_all(file, &source, &diags)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every rule has a fixture that triggers it (E001 included, through the parser). E042 (two
/// files, one workflow id) is the loader's and is tested there.
#[test]
fn every_code_has_a_fixture() {
    let dir = fixtures().join("invalid");
    let mut all = String::new();
    for file in yaml_files(&dir) {
        all += &fs::read_to_string(file.with_extension("expect")).unwrap_or_default();
    }
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.code)
        .filter(|c| *c != "E042" && !all.contains(c))
        .collect();
    assert!(missing.is_empty(), "codes without a fixture: {missing:?}");
}

/// One file with many different mistakes reports all of them, not the first.
#[test]
fn reports_every_mistake_at_once() {
    let source = r#"id: Bad Id
name: many mistakes
calendar: mars
start: a
fields:
  - {id: tier, type: enum}
  - {id: tier, type: string}
roles:
  - {id: clerk}
materials:
  - {id: licence, red_line: true}
warnings:
  yellow_at: 120%
nodes:
  - id: a
    type: task
    assignee: {role: nobody}
    actions: [approve, conditional]
    materials: [licence]
    limit: 0wd
    next: b
  - id: b
    type: gateway
    routes:
      - {when: 'project.tier > 3', to: c}
  - id: c
    type: end
    outcome: approved
    next: a
  - id: orphan
    type: end
    outcome: rejected
"#;
    let diags = diagnose(source);
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    for code in [
        "E041", "E010", "E034", "E002", "E023", "E004", "E030", "E022", "E025", "E038", "E014",
        "W002",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    assert!(
        diags
            .windows(2)
            .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col))
    );
    let text = render_all(Path::new("many.yaml"), source, &diags);
    assert!(
        text.contains("many.yaml:3:11: error[E010]: unknown calendar `mars`"),
        "{text}"
    );
    assert!(text.contains("  = help: "), "{text}");
}

#[test]
fn diagnostics_doc_lists_every_code() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnostics.md");
    let text = fs::read_to_string(&doc).expect("docs/diagnostics.md");
    for r in RULES {
        assert!(
            text.contains(&format!("| {} |", r.code)),
            "{} is not in docs/diagnostics.md",
            r.code
        );
    }
}

/// The committed `workflows/schema.json` is what the model generates, so it never goes stale.
/// Regenerate with `shenpi schema --out workflows/schema.json` (or `SHENPI_BLESS=1` on this test).
#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/schema.json");
    if std::env::var_os("SHENPI_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&shenpi_engine::model::json_schema())
            .expect("schema serialises");
        fs::write(&path, text + "\n").expect("write workflows/schema.json");
    }
    let committed = fs::read_to_string(&path).expect("workflows/schema.json exists");
    let committed: serde_json::Value = serde_json::from_str(&committed).expect("valid JSON");
    assert_eq!(
        committed,
        shenpi_engine::model::json_schema(),
        "workflows/schema.json is stale: run `shenpi schema --out workflows/schema.json`"
    );
}
