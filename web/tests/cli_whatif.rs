//! `shenpi whatif`: the shipped population through a draft that halves the parallel review's
//! limit, side by side with the version in force; a population that does not fit is refused
//! with every error located and nothing run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A folder holding a draft of provincial-major with `from` replaced by `to`, beside the
/// shipped calendars, message and document templates.
fn draft(name: &str, from: &str, to: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shenpi-whatif-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let src = std::fs::read_to_string(root().join("workflows/provincial-major.yaml")).unwrap();
    assert!(
        src.contains(from),
        "the shipped workflow no longer has `{from}`"
    );
    std::fs::write(d.join("provincial-major.yaml"), src.replacen(from, to, 1)).unwrap();
    for sub in ["calendars", "templates", "documents"] {
        let to = d.join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(root().join("workflows").join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    d.join("provincial-major.yaml")
}

fn whatif(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .current_dir(root())
        .arg("whatif")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_shorter_limit_shows_more_red_and_the_table_is_in_chinese() {
    // 受理's limit cut from 5 to 2 working days: the same projects, answered by the same
    // draws (1-5 days), run out of time more often.
    let f = draft(
        "shorter",
        "    limit: 5wd\n    channel_limits:",
        "    limit: 2wd\n    channel_limits:",
    );
    let f = f.to_str().unwrap();
    let pop = "workflows/populations/provincial-major.yaml";
    let (code, out, err) = whatif(&["--draft", f, "--population", pop, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = |side: &str, k: &str| v[side][k].as_u64().unwrap();
    assert_eq!(n("base", "projects"), 480);
    assert_eq!(n("draft", "projects"), 480);
    assert_eq!(n("base", "refused_actions"), 0);
    assert_eq!(n("base", "tasks"), n("draft", "tasks"));
    assert!(n("draft", "red") > n("base", "red"), "{out}");
    assert!(
        n("draft", "escalations") > n("base", "escalations"),
        "{out}"
    );

    let (code, table, err) = whatif(&["--draft", f, "--population", pop]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "政策模拟：省级重大项目审批",
        "办理周期 p50 / p90（工作日）",
        "阶段「审批」",
        "「省自然资源厅」办理",
        "挂牌督办",
        "「重大项目审批绿色通道」占比",
    ] {
        assert!(table.contains(want), "missing {want} in\n{table}");
    }
    // No internal ids in the rows' names.
    for id in ["shenpi", "zrzy", "joint_review"] {
        assert!(
            !table.lines().skip(4).any(|l| l.contains(id)),
            "{id} in\n{table}"
        );
    }
}

#[test]
fn a_population_that_does_not_fit_is_refused_with_located_errors() {
    let d = std::env::temp_dir().join(format!("shenpi-whatif-bad-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let pop = d.join("bad.yaml");
    std::fs::write(
        &pop,
        "start: 2027-01-04\nper_month: 5\nfields:\n  investment: { between: [9, 1] }\nreject: 120%\n",
    )
    .unwrap();
    let (code, out, err) = whatif(&[
        "--draft",
        "workflows/provincial-major.yaml",
        "--population",
        pop.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "nothing runs: {out}");
    assert!(
        err.contains("第 4 行 fields.investment：下限 9 大于上限 1"),
        "{err}"
    );
    assert!(err.contains("第 5 行 reject"), "{err}");
    assert!(err.contains("有 2 处错误，未运行模拟"), "{err}");
}
