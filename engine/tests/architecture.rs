//! Architecture tests: the engine stays a pure core.
//!
//! ARCHITECTURE.md promises that the engine does no I/O, reads no clock, spawns no thread and
//! does not use tokio. Clock reads are refused by clippy (`engine/clippy.toml`); these tests
//! hold the rest: no runtime, database or HTTP crate anywhere in the engine's normal dependency
//! tree, and no use of the standard library's file, network, thread or process modules in
//! `engine/src`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates that would bring an async runtime, a database or the network into the core.
const FORBIDDEN_CRATES: &[&str] = &["tokio", "sqlx", "reqwest", "rusqlite", "hyper"];

/// Paths whose use means I/O, threads or processes (or tokio) in engine code.
const FORBIDDEN_PATHS: &[&str] = &["std::fs", "std::net", "std::thread", "std::process"];

/// The names of every package in the engine's normal (non-dev, non-build) dependency closure,
/// resolved by cargo itself for this workspace's lock file.
fn normal_dependency_closure() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let engine = names
        .iter()
        .find(|(_, name)| **name == "shenpi-engine")
        .map(|(id, _)| *id)
        .expect("the engine is a workspace package");

    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo = vec![engine];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            // `kind` is null for a normal dependency, "dev" or "build" otherwise.
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().expect("pkg"));
            }
        }
    }
    seen.remove(engine);
    seen.into_iter().map(|id| names[id].to_string()).collect()
}

#[test]
fn engine_dependency_tree_holds_no_runtime_database_or_http_crate() {
    let closure = normal_dependency_closure();
    // The closure is really resolved: the engine's own direct dependencies are in it, and a
    // dev-dependency is not.
    for direct in ["jiff", "petgraph", "serde_json", "cel"] {
        assert!(
            closure.contains(direct),
            "{direct} missing from {closure:?}"
        );
    }
    assert!(!closure.contains("proptest"), "dev-dependencies leaked in");
    let found: Vec<&str> = FORBIDDEN_CRATES
        .iter()
        .copied()
        .filter(|c| closure.contains(*c))
        .collect();
    assert!(
        found.is_empty(),
        "the engine must stay pure, but its dependency tree holds {found:?}"
    );
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of one line without its `//` comment (a `//` inside a string literal, as in a URL,
/// is kept: an odd number of quotes before it means it is inside one).
fn code_of(line: &str) -> &str {
    let mut from = 0;
    while let Some(i) = line[from..].find("//") {
        let at = from + i;
        if line[..at].matches('"').count().is_multiple_of(2) {
            return &line[..at];
        }
        from = at + 2;
    }
    line
}

/// The forbidden uses in a source text: `(line number, what)`. Catches the path written out
/// (`std::fs::read`), imported from a group (`use std::{fs, io}`), and any mention of tokio.
fn forbidden_uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // A `use std::{...}` group may span lines; scan it joined.
    let code: Vec<&str> = text.lines().map(code_of).collect();
    for (i, line) in code.iter().enumerate() {
        for p in FORBIDDEN_PATHS {
            if line.contains(p) {
                found.push((i + 1, (*p).to_string()));
            }
        }
        if line.contains("tokio") {
            found.push((i + 1, "tokio".to_string()));
        }
        if let Some(start) = line.find("std::{") {
            let mut group = line[start + "std::{".len()..].to_string();
            let mut j = i;
            while !group.contains('}') && j + 1 < code.len() {
                j += 1;
                group.push_str(code[j]);
            }
            let group = group.split('}').next().unwrap_or_default();
            for item in group.split(',') {
                let head = item.trim().split("::").next().unwrap_or_default().trim();
                let path = format!("std::{head}");
                if FORBIDDEN_PATHS.contains(&path.as_str()) {
                    found.push((i + 1, path));
                }
            }
        }
    }
    found
}

#[test]
fn engine_source_uses_no_files_network_threads_processes_or_tokio() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "the scan found the sources: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source file");
        for (line, what) in forbidden_uses(&text) {
            found.push(format!("{}:{line}: {what}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "the engine must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_source_scan_sees_each_form_of_use() {
    let flagged =
        |text: &str| -> Vec<String> { forbidden_uses(text).into_iter().map(|(_, w)| w).collect() };
    assert_eq!(flagged("let s = std::fs::read_to_string(p);"), ["std::fs"]);
    assert_eq!(
        flagged("use std::{collections::HashMap, net::TcpStream};"),
        ["std::net"]
    );
    assert_eq!(
        flagged("use std::{\n    io,\n    thread,\n};"),
        ["std::thread"]
    );
    assert_eq!(flagged("use std::process::Command;"), ["std::process"]);
    assert_eq!(flagged("tokio::spawn(async {});"), ["tokio"]);
    // Comments and what is not a forbidden module pass.
    assert!(flagged("// no std::fs here, and no tokio").is_empty());
    assert!(flagged("use std::{fmt, collections::BTreeMap};").is_empty());
    assert!(flagged("let url = \"https://example.org\"; // std::net").is_empty());
}
