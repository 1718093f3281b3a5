//! Official documents' numbers (migration 17) on both backends: issued concurrently they are
//! 1, 2, 3 … per workflow and year with no gap and no repeat; an occasion issued twice at once
//! gives one document; a document that fails to seal takes no number; a new year starts at 1.

mod durable_support;

use std::collections::BTreeSet;

use durable_support::{TempDir, both};
use shenpi_adapters::store::DocumentStore;
use shenpi_adapters::store::documents::{NewDocument, Sealed, canonical, sha256_hex};

fn doc(instance: &str, occasion: &str, workflow: &str, year: i64) -> NewDocument {
    NewDocument {
        id: format!("doc-{instance}-{occasion}"),
        instance: instance.into(),
        occasion: occasion.into(),
        kind: "approval".into(),
        title: "批复".into(),
        workflow_id: workflow.into(),
        year,
        issuer: "省发展改革委".into(),
        project: format!("项目{instance}"),
        outcome: "批准".into(),
        issued_at: 1_772_416_800_000,
        verify_code: format!("CODE{instance}{occasion}{workflow}{year}"),
        chain_head: Some(format!("head-of-{instance}")),
    }
}

fn seal(year: i64) -> impl Fn(i64) -> Result<Sealed, String> + Send + Sync {
    move |seq| {
        Ok(Sealed {
            number: format!("皖发改投资〔{year}〕{seq}号"),
            body: format!("正文，文号 {seq}"),
        })
    }
}

#[tokio::test]
async fn numbers_are_gap_free_and_unique_when_issued_concurrently() {
    const N: i64 = 24;
    let dir = TempDir::new("documents");
    for db in both("documents", &dir).await {
        let mut tasks = Vec::new();
        for i in 0..N {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.issue_document(&doc(&format!("i{i}"), "end", "wf", 2026), &seal(2026))
                    .await
            }));
        }
        // The same occasion asked for twice at once: one document.
        for _ in 0..2 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.issue_document(&doc("twice", "end", "wf", 2026), &seal(2026))
                    .await
            }));
        }
        let mut seqs = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        let mut twice = Vec::new();
        for t in tasks {
            let (d, new) = t.await.expect("joined").expect("issued");
            if d.instance == "twice" {
                twice.push((d.seq, new));
                continue;
            }
            assert!(new, "{d:?}");
            assert_eq!(d.number, format!("皖发改投资〔2026〕{}号", d.seq));
            assert_eq!(d.sha256, sha256_hex(&canonical(&d)));
            assert!(seqs.insert(d.seq), "number {} twice", d.seq);
            numbers.insert(d.number);
        }
        assert_eq!(twice.len(), 2);
        assert_eq!(twice[0].0, twice[1].0, "one document for the occasion");
        assert_eq!(twice.iter().filter(|(_, new)| *new).count(), 1);
        seqs.insert(twice[0].0);
        let expected: BTreeSet<i64> = (1..=N + 1).collect();
        assert_eq!(seqs, expected, "{}: gap-free 1..={}", db.backend(), N + 1);
        assert_eq!(numbers.len(), N as usize);

        // A document that cannot be sealed takes no number.
        let failed = db
            .issue_document(&doc("bad", "end", "wf", 2026), &|_| {
                Err("template failed".to_string())
            })
            .await;
        assert!(failed.is_err());
        assert!(db.documents_of("bad").await.expect("read").is_empty());
        let (next, _) = db
            .issue_document(&doc("next", "end", "wf", 2026), &seal(2026))
            .await
            .expect("issued");
        assert_eq!(next.seq, N + 2, "{}", db.backend());

        // Another workflow counts on its own; a new year starts again at 1.
        let (other, _) = db
            .issue_document(&doc("o", "end", "other", 2026), &seal(2026))
            .await
            .expect("issued");
        assert_eq!(other.seq, 1);
        let (y, _) = db
            .issue_document(&doc("y", "end", "wf", 2027), &seal(2027))
            .await
            .expect("issued");
        assert_eq!((y.seq, y.number.as_str()), (1, "皖发改投资〔2027〕1号"));

        // Found by code; revoked once, by the 撤销决定 named.
        let by_code = db
            .document_by_code(&y.verify_code)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(by_code, y);
        assert_eq!(db.document_by_code("NOPE").await.expect("read"), None);
        assert_eq!(
            db.revoke_documents("y", "approval", 5, Some("doc-r"))
                .await
                .expect("revoke"),
            1
        );
        assert_eq!(
            db.revoke_documents("y", "approval", 6, None)
                .await
                .expect("again"),
            0
        );
        let revoked = db.documents_of("y").await.expect("read");
        assert_eq!(revoked[0].revoked_at, Some(5));
        assert_eq!(revoked[0].revoked_by.as_deref(), Some("doc-r"));
        assert_eq!(revoked[0].chain_head.as_deref(), Some("head-of-y"));
    }
}
