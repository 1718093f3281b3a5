//! `shenpi audit verify`: on a database the server wrote, every chain intact (exit 0); after an
//! SQL `UPDATE` of a decision, the instance and the first broken event named in Chinese (exit 1).

mod api_common;

use std::process::Command;

use api_common::server;
use axum::http::StatusCode;
use serde_json::json;
use shenpi_adapters::store::Db;

fn verify(args: &[&str]) -> (Option<i32>, String, String) {
    api_common::shenpi(&[["audit", "verify"].as_slice(), args].concat())
}

#[tokio::test]
async fn audit_verify_says_intact_then_names_the_edited_decision() {
    let s = server("cli-audit").await;
    let (_, a) = s.start_project("重中之重").await;
    let (_, b) = s.start_project("省级重大").await;
    s.attach_required(&a, "mouhua").await;
    let lib = s.task_at(&a, "library").await.expect("library task");
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{a}/tasks/{lib}/actions"),
            Some("li"),
            Some(json!({"type": "approve", "comment": "同意入库"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let url = format!("sqlite://{}", s.dir.join("t.db").display());

    let (code, out, err) = verify(&["--db", &url]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{a}：事件链完整")), "{out}");
    assert!(out.contains(&format!("{b}：事件链完整")), "{out}");
    assert!(
        out.contains("共检查 2 个办理实例：2 个完整，0 个事件链断裂。"),
        "{out}"
    );

    let Db::Sqlite(db) = &s.app.db else {
        panic!("the test server runs on SQLite")
    };
    let seq: i64 = sqlx::query_scalar(
        "SELECT seq FROM events WHERE instance = ?1 AND type = 'task_decided' ORDER BY seq LIMIT 1",
    )
    .bind(&a)
    .fetch_one(db.pool())
    .await
    .expect("the decision");
    sqlx::query("UPDATE events SET body = replace(body, '\"li\"', '\"zhou\"') WHERE instance = ?1 AND seq = ?2")
        .bind(&a)
        .bind(seq)
        .execute(db.pool())
        .await
        .expect("update");

    let (code, out, err) = verify(&["--db", &url]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(&format!("{a}：事件链断裂：第 {seq} 号事件（task_decided，")),
        "{out}"
    );
    assert!(out.contains("内容与记录的哈希不符"), "{out}");
    assert!(out.contains(&format!("{b}：事件链完整")), "{out}");
    assert!(out.contains("1 个事件链断裂"), "{out}");

    // One instance only; an unknown one is an error.
    let (code, out, _) = verify(&["--db", &url, "--instance", &b]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(&a), "{out}");
    let (code, _, err) = verify(&["--db", &url, "--instance", "nobody"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("没有编号为 nobody 的办理实例"), "{err}");
}

/// The tools that read or repair a database refuse one that is not there, rather than create an
/// empty one and report nothing wrong; they create no file.
#[test]
fn tools_refuse_a_database_that_does_not_exist_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere.db");
    let url = format!("sqlite://{}", missing.display());
    for args in [
        vec!["audit", "verify", "--db", &url],
        vec!["files", "sweep", "--db", &url, "--dry-run"],
        vec!["workflows", "export", "out", "--db", &url],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shenpi"))
            .current_dir(dir.path())
            .args(&args)
            .output()
            .expect("run shenpi");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("no database at"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the database");
    }
}
