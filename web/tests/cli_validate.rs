//! `shenpi validate` on files a person could really hand it: a tab in the indentation and a file
//! saved in GBK are located errors (exit 1, `file:line:col`), never an unlocated failure.

use std::path::PathBuf;
use std::process::Command;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shenpi-cli-validate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn validate(file: &PathBuf) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .arg("validate")
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tab_is_reported_on_its_own_line() {
    let d = dir("tab");
    let f = d.join("tab.yaml");
    // The tab opens line 8, inside the mapping of the first node.
    let yaml = "id: w\nname: W\ncalendar: cn-mainland\nstart: a\nnodes:\n  - id: a\n    type: task\n\tname: 受理\n";
    std::fs::write(&f, yaml).unwrap();
    let (code, err) = validate(&f);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tab.yaml:8:1: error[E001]"), "{err}");
    assert!(err.contains("tab"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_file_that_is_not_utf8_is_located() {
    let d = dir("gbk");
    let f = d.join("gbk.yaml");
    // 「审批」 saved as GBK (C9 F3 C5 FA): not UTF-8, from line 2 column 7.
    let mut bytes = b"id: w\nname: ".to_vec();
    bytes.extend_from_slice(&[0xC9, 0xF3, 0xC5, 0xFA]);
    bytes.extend_from_slice(b"\ncalendar: cn-mainland\n");
    std::fs::write(&f, bytes).unwrap();
    let (code, err) = validate(&f);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gbk.yaml:2:7: error[E001]"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
