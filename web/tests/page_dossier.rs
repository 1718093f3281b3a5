//! The dossier (办件档案): one page with the decisions and their opinions under the workflow's
//! names, the material files with their hashes, and whether the event chain is intact; after an
//! SQL `UPDATE` of a decision it names the broken event; someone without read rights gets 403.

mod api_common;

use api_common::{Browser, server};
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use shenpi_adapters::store::Db;

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";

#[tokio::test]
async fn the_dossier_shows_decisions_files_and_whether_the_record_was_changed() {
    let mut s = server("dossier").await;
    // An approver of a department the provincial workflow does not involve (市气象局).
    s.add_user("qian", Some("qx"), &["approver"]).await;
    let (inst, intake) = s.at_intake("重中之重", "符合入库条件，同意入库").await;
    s.send_return(&inst, intake).await;
    let up = s
        .upload("chen", &inst, "eia", &[("file", "环评批复.pdf", PDF)])
        .await;
    assert!(up.status.is_success(), "{}", up.text);

    // The instance page links to it.
    let chen = Browser::login(&s, "chen").await;
    let page = chen.get(&format!("/instances/{inst}")).await;
    assert!(
        page.text
            .contains(&format!("href=\"/instances/{inst}/dossier\"")),
        "{}",
        page.text
    );
    assert!(page.text.contains("打印办件档案"));

    let d = chen.get(&format!("/instances/{inst}/dossier")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let t = &d.text;
    assert!(t.contains("办件档案：测试项目"), "{t}");
    // The decision with its opinion, who made it and their department, by the workflow's names.
    assert!(t.contains("li 审批通过"), "{t}");
    assert!(t.contains("符合入库条件，同意入库"), "{t}");
    assert!(t.contains("省发展改革委"), "{t}");
    assert!(t.contains("中长期重大项目库入库审核"), "{t}");
    assert!(t.contains("zhang 退回补正：环评批复不清晰"), "{t}");
    assert!(!t.contains("「library」") && !t.contains("「eia」"), "{t}");
    // The material file by the material's name, with its full hash, who uploaded it.
    assert!(t.contains("环境影响评价审批意见"), "{t}");
    assert!(t.contains("环评批复.pdf"), "{t}");
    let sha: String = Sha256::digest(PDF)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(t.contains(&sha), "{t}");
    // Project facts by their labels, and the record intact.
    assert!(t.contains("data-chain=\"intact\""), "{t}");
    assert!(t.contains("记录完整"), "{t}");
    // The print header carries the title and the print date.
    assert!(t.contains("print-head") && t.contains("打印日期："), "{t}");

    // Someone of a department the workflow does not involve may not read it.
    let qian = Browser::login(&s, "qian").await;
    let refused = qian.get(&format!("/instances/{inst}/dossier")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(!refused.text.contains("符合入库条件"));

    // Someone with database access rewrites the opinion: the dossier names the event.
    let Db::Sqlite(db) = &s.app.db else {
        panic!("the test server runs on SQLite")
    };
    let seq: i64 = sqlx::query_scalar(
        "SELECT seq FROM events WHERE instance = ?1 AND type = 'task_decided' ORDER BY seq LIMIT 1",
    )
    .bind(&inst)
    .fetch_one(db.pool())
    .await
    .expect("the decision");
    let n = sqlx::query(
        "UPDATE events SET body = replace(body, '符合入库条件，同意入库', '不符合条件')
         WHERE instance = ?1 AND seq = ?2",
    )
    .bind(&inst)
    .bind(seq)
    .execute(db.pool())
    .await
    .expect("update")
    .rows_affected();
    assert_eq!(n, 1);
    let d = chen.get(&format!("/instances/{inst}/dossier")).await;
    let t = &d.text;
    assert!(t.contains("data-chain=\"broken\""), "{t}");
    assert!(t.contains("记录被改动"), "{t}");
    assert!(
        t.contains(&format!("第 {seq} 号事件（task_decided，")),
        "{t}"
    );
    assert!(t.contains("内容与记录的哈希不符"), "{t}");
    assert!(
        t.contains(&format!("id=\"e{seq}\" class=\"broken\"")),
        "{t}"
    );
}
