//! `shenpi files sweep` on a database and files directory a server wrote: the file an upload's
//! event names stays and still downloads; content no event names (stored, its command never
//! committed) is listed by a dry run, removed once older than the cutoff, from the database and,
//! given `--file-dir`, from the directory, each named with its size and place; young content
//! stays; a directory not given leaves its content listed and the exit status 1.

mod api_common;

use api_common::server_with_file_dir;
use axum::http::StatusCode;
use sha2::Digest as _;
use shenpi_adapters::store::files::{FileStore, StoredFile};

fn sweep(args: &[&str]) -> (Option<i32>, String, String) {
    api_common::shenpi(&[["files", "sweep"].as_slice(), args].concat())
}

fn pdf(tag: &str, len: usize) -> Vec<u8> {
    let mut b = format!("%PDF-1.7\n% {tag}\n").into_bytes();
    b.resize(len, b'x');
    b
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Stores `bytes` as an upload would, with no command after it.
async fn stored_unnamed(store: &FileStore, bytes: &[u8], days_ago: i64) -> String {
    let f = StoredFile {
        sha256: sha(bytes),
        size: bytes.len() as i64,
        kind: "pdf".into(),
        stored_at: jiff::Timestamp::now().as_millisecond() - days_ago * 24 * 3600 * 1000,
    };
    assert!(store.put(&f, &mut &bytes[..]).await.expect("stored"));
    f.sha256
}

#[tokio::test]
async fn files_sweep_lists_then_removes_old_content_no_event_names() {
    let s = server_with_file_dir("cli-files", Default::default()).await;
    let (inst, _) = s.returned_for_eia().await;
    let supplied = pdf("环评批复", 3000);
    let up = s
        .upload("chen", &inst, "eia", &[("file", "环评批复.pdf", &supplied)])
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let named = sha(&supplied);
    assert_eq!(up.json["files"][0]["sha256"], named.as_str());

    // Content no event names: one left in the files directory, one in the database (stored
    // before the cluster moved to a directory), both a month old; one a day old.
    let in_db = FileStore::in_database(s.app.db.clone());
    let dir_orphan = stored_unnamed(&s.app.files, &pdf("目录中的孤立文件", 2 << 20), 30).await;
    let db_orphan = stored_unnamed(&in_db, &pdf("数据库中的孤立文件", 5000), 30).await;
    let young = stored_unnamed(&s.app.files, &pdf("昨天上传", 100), 1).await;
    let url = format!("sqlite://{}", s.dir.join("t.db").display());
    let root = s.dir.join("files");
    let dir_arg = root.to_string_lossy().into_owned();
    let dir_file = root.join(&dir_orphan[..2]).join(&dir_orphan);

    let (code, out, err) = sweep(&["--db", &url, "--file-dir", &dir_arg, "--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("（7 天前）"), "{out}");
    assert!(
        out.contains(&format!(
            "将删除 {dir_orphan}  2.0 MB（2097152 字节）  文件 {}",
            dir_file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("将删除 {db_orphan}  4.9 KB（5000 字节）  数据库")),
        "{out}"
    );
    assert!(
        out.contains("试运行：共 2 个文件可删除，合计 2.0 MB（2102152 字节）；未删除任何文件。"),
        "{out}"
    );
    assert!(out.contains("被事件引用的文件 1 个，均保留。"), "{out}");
    assert!(!out.contains(&named) && !out.contains(&young), "{out}");
    assert!(dir_file.exists(), "the dry run removed nothing");
    assert!(in_db.file(&db_orphan).await.expect("read").is_some());

    // Without the directory, what is kept there is listed and left; the exit status says so.
    let (code, out, err) = sweep(&["--db", &url]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(&format!("已删除 {db_orphan}  4.9 KB（5000 字节）  数据库")),
        "{out}"
    );
    assert!(
        out.contains(&format!("跳过（未指明文件目录） {dir_orphan}")),
        "{out}"
    );
    assert!(
        out.contains("共删除 1 个文件，合计 4.9 KB（5000 字节）。"),
        "{out}"
    );
    assert!(
        out.contains(
            "1 个文件存放在文件目录中，未处理：请用 --file-dir 指明服务器的文件目录后再运行。"
        ),
        "{out}"
    );
    assert!(in_db.file(&db_orphan).await.expect("read").is_none());
    assert!(dir_file.exists());

    let (code, out, err) = sweep(&["--db", &url, "--file-dir", &dir_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "已删除 {dir_orphan}  2.0 MB（2097152 字节）  文件 {}",
            dir_file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("共删除 1 个文件，合计 2.0 MB（2097152 字节）。"),
        "{out}"
    );
    assert!(!dir_file.exists(), "the file is gone");
    assert!(s.app.files.file(&dir_orphan).await.expect("read").is_none());

    // What the event names, and the young content, are still there.
    let dl = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/files/{named}?download=true"),
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert_eq!(dl.status, StatusCode::OK, "{}", dl.text);
    assert_eq!(
        sha(dl.text.as_bytes()),
        named,
        "the supplied file downloads whole"
    );
    assert!(s.app.files.file(&young).await.expect("read").is_some());
    let (code, out, _) = sweep(&["--db", &url, "--file-dir", &dir_arg]);
    assert_eq!(code, Some(0));
    assert!(out.contains("共删除 0 个文件，合计 0 字节。"), "{out}");

    // A mistyped directory, and a cutoff of less than a day, are refused with nothing done.
    let typo = s.dir.join("flies").to_string_lossy().into_owned();
    let (code, _, err) = sweep(&["--db", &url, "--file-dir", &typo]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{typo} 不是服务器存放材料文件的目录")),
        "{err}"
    );
    assert!(!s.dir.join("flies").exists());
    let (code, _, err) = sweep(&["--db", &url, "--older-than-days", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--older-than-days"), "{err}");
}
