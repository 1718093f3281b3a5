//! `shenpi graph FILE --format mermaid|dot`, run as a user would: exact stdout, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WORKFLOW: &str = r#"id: mini
name: 小流程
calendar: cn-mainland
start: intake
departments:
  - { id: fgw, name: 发改委 }
roles:
  - { id: clerk, department: fgw }
nodes:
  - id: intake
    type: task
    name: 受理
    assignee: { role: clerk }
    actions: [approve, reject]
    limit: 3wd
    next: check
  - id: check
    type: task
    name: 审查 "A"
    assignee: { role: clerk }
    actions: [approve, reject]
    reject_to: [intake]
    next: done
  - id: done
    type: end
    outcome: approved
"#;

const MERMAID: &str = r#"%% 小流程 (mini)
flowchart TD
  start_(("start"))
  n0["受理<br/>[intake]<br/>limit 3wd"]
  n1["审查 #quot;A#quot;<br/>[check]"]
  n2(["done<br/>end: approved"])
  start_ --> n0
  n0 -->|"approve"| n1
  n1 -->|"approve"| n2
  n1 -.->|"驳回"| n0
  linkStyle 3 stroke:#b91c1c,color:#b91c1c
"#;

const DOT: &str = r##"digraph "mini" {
  label="小流程";
  labelloc=t;
  rankdir=TB;
  compound=true;
  node [fontname="sans-serif", fontsize=11];
  edge [fontname="sans-serif", fontsize=10];
  start_ [shape=point, width=0.2, label=""];
  n0 [label="受理\n[intake]\nlimit 3wd", shape=box, style="rounded"];
  n1 [label="审查 \"A\"\n[check]", shape=box, style="rounded"];
  n2 [label="done\nend: approved", shape=doubleoctagon];
  start_ -> n0;
  n0 -> n1 [label="approve"];
  n1 -> n2 [label="approve"];
  n1 -> n0 [label="驳回", style=dashed, color="#b91c1c", fontcolor="#b91c1c", constraint=false];
}
"##;

/// A scratch folder holding the workflow and, next to it, `calendars/cn-mainland.yaml`.
fn setup(name: &str, workflow: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_graph")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let cal_dir = dir.join("calendars");
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/calendars/cn-mainland.yaml");
    let r = std::fs::create_dir_all(&cal_dir)
        .and_then(|()| std::fs::copy(&shipped, cal_dir.join("cn-mainland.yaml")))
        .and_then(|_| std::fs::write(dir.join("wf.yaml"), workflow));
    if let Err(e) = r {
        panic!("cannot set up {}: {e}", dir.display());
    }
    dir.join("wf.yaml")
}

fn shenpi(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run shenpi: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn mermaid_is_the_default() {
    let f = setup("mermaid", WORKFLOW);
    let f = f.to_string_lossy();
    let o = shenpi(&["graph", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), MERMAID);
    let o = shenpi(&["graph", &f, "--format", "mermaid"]);
    assert_eq!(text(&o.stdout), MERMAID);
}

#[test]
fn dot_format() {
    let f = setup("dot", WORKFLOW);
    let o = shenpi(&["graph", &f.to_string_lossy(), "--format", "dot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), DOT);
}

#[test]
fn highlight_marks_nodes() {
    let f = setup("highlight", WORKFLOW);
    let o = shenpi(&[
        "graph",
        &f.to_string_lossy(),
        "--current",
        "check",
        "--done",
        "intake",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with(MERMAID), "{out}");
    assert!(
        out.ends_with("  class n1 current\n  class n0 done\n"),
        "{out}"
    );
}

#[test]
fn an_invalid_workflow_prints_diagnostics_and_exits_1() {
    let bad = WORKFLOW.replace("    limit: 3wd\n", "    limt: 3wd\n");
    let f = setup("invalid", &bad);
    let name = f.to_string_lossy().into_owned();
    let o = shenpi(&["graph", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout), "");
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{name}:15:")), "{err}");
    assert!(err.contains("error[E001]"), "{err}");
    assert!(err.contains("limt"), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    let o = shenpi(&["graph", "/nonexistent/wf.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot read /nonexistent/wf.yaml"));
    let f = setup("format", WORKFLOW);
    let o = shenpi(&["graph", &f.to_string_lossy(), "--format", "svg"]);
    assert_eq!(o.status.code(), Some(2));
}
