//! Material files by content on both backends, in the database (migration 16) and in a files
//! directory (migration 19): stored in chunks or as one file, read back byte for byte, kept once,
//! and content cut short or failing halfway never recorded as stored; the sweep removes what no
//! `material_supplied` event names once it is old, and never what an upload has just restamped.

mod durable_support;

use durable_support::{TempDir, both};
use shenpi_adapters::store::Db;
use shenpi_adapters::store::files::{CHUNK, FileStore, Place, StoredFile, Swept};
use shenpi_engine::runtime::event::EVENT_FORMAT;
use shenpi_engine::runtime::{Event, MaterialFile};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn described(sha: &str, size: usize, kind: &str) -> StoredFile {
    StoredFile {
        sha256: sha.repeat(32),
        size: size as i64,
        kind: kind.into(),
        stored_at: 1,
    }
}

async fn read_back(store: &FileStore, sha256: &str) -> (usize, Vec<u8>) {
    let (f, place) = store.file(sha256).await.expect("read").expect("stored");
    let mut back = Vec::new();
    let mut n = 0;
    while let Some(c) = store.chunk(&f, place, n as i64).await.expect("chunk") {
        assert!(c.len() <= CHUNK);
        back.extend_from_slice(&c);
        n += 1;
    }
    (n, back)
}

/// What every store does, whichever place it keeps content in.
async fn stores_and_refuses(store: &FileStore) {
    let bytes = content(2 * CHUNK + 123);
    let f = described("ab", bytes.len(), "pdf");
    assert!(store.put(&f, &mut bytes.as_slice()).await.expect("stored"));
    assert!(!store.put(&f, &mut bytes.as_slice()).await.expect("again"));
    assert_eq!(
        store.file(&f.sha256).await.expect("read"),
        Some((f.clone(), store.place()))
    );
    let (n, back) = read_back(store, &f.sha256).await;
    assert_eq!(n, 3);
    assert_eq!(back, bytes);
    // Content shorter than announced is refused and leaves no record.
    let short = described("cd", 10, "png");
    assert!(store.put(&short, &mut &b"abc"[..]).await.is_err());
    assert_eq!(store.file(&short.sha256).await.expect("read"), None);
    // Content that fails after a chunk and a half was written (the temporary file lost, the
    // disk failing) leaves no record either.
    let failing = described("ef", 3 * CHUNK, "pdf");
    let first = content(CHUNK + CHUNK / 2);
    let mut broken = tokio::io::AsyncReadExt::chain(first.as_slice(), Broken);
    assert!(store.put(&failing, &mut broken).await.is_err());
    assert_eq!(store.file(&failing.sha256).await.expect("read"), None);
    // And a later, whole upload of the same content is taken.
    let whole = content(3 * CHUNK);
    assert!(
        store
            .put(&failing, &mut whole.as_slice())
            .await
            .expect("whole")
    );
    assert_eq!(read_back(store, &failing.sha256).await.1, whole);
}

#[tokio::test]
async fn a_file_is_stored_once_by_hash_and_read_back_chunk_by_chunk_in_the_database() {
    let dir = TempDir::new("files");
    for db in both("material_files", &dir).await {
        let store = FileStore::in_database(db);
        assert_eq!(store.place(), Place::Database);
        stores_and_refuses(&store).await;
    }
}

/// The files of a directory store, outside its incoming folder.
fn stored_names(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).expect("dir").flatten() {
        if e.file_name() == ".incoming" {
            continue;
        }
        for f in std::fs::read_dir(e.path()).expect("subdir").flatten() {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_file_directory_holds_one_file_per_hash_and_nothing_half_written() {
    let dir = TempDir::new("files-dir");
    for db in both("material_files_dir", &dir).await {
        let root = dir.0.join(format!("files-{}", db.backend()));
        let store = FileStore::in_directory(db.clone(), &root)
            .await
            .expect("open");
        assert_eq!(store.place(), Place::Directory);
        stores_and_refuses(&store).await;
        // The content is a plain file named by its hash; the refused ones left nothing, not
        // even in the incoming folder.
        assert_eq!(stored_names(&root), vec!["ab".repeat(32), "ef".repeat(32)]);
        assert_eq!(
            std::fs::metadata(root.join("ab").join("ab".repeat(32)))
                .expect("file")
                .len(),
            (2 * CHUNK + 123) as u64
        );
        assert_eq!(
            std::fs::read_dir(root.join(".incoming"))
                .expect("incoming")
                .count(),
            0
        );
        // A file changed on disk behind the server's back is an error when read, not a short
        // download.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("ef").join("ef".repeat(32)))
            .expect("open");
        f.set_len(CHUNK as u64 + 5).expect("cut");
        let (stored, place) = store
            .file(&"ef".repeat(32))
            .await
            .expect("read")
            .expect("row");
        assert_eq!(
            store
                .chunk(&stored, place, 0)
                .await
                .expect("first")
                .map(|c| c.len()),
            Some(CHUNK)
        );
        let err = store.chunk(&stored, place, 1).await.expect_err("cut short");
        assert!(err.to_string().contains("cut short"), "{err}");
    }
}

#[tokio::test]
async fn switching_between_database_and_directory_keeps_every_file_readable_where_it_is() {
    let dir = TempDir::new("files-switch");
    for db in both("material_files_switch", &dir).await {
        let root = dir.0.join(format!("files-{}", db.backend()));
        let in_db = FileStore::in_database(db.clone());
        let old = content(CHUNK + 1);
        let f_old = described("01", old.len(), "pdf");
        assert!(in_db.put(&f_old, &mut old.as_slice()).await.expect("db"));
        // The cluster moves to a directory: the file stored before is still read from the
        // database, the new one goes to the directory.
        let in_dir = FileStore::in_directory(db.clone(), &root)
            .await
            .expect("open");
        assert_eq!(read_back(&in_dir, &f_old.sha256).await.1, old);
        let new = content(10);
        let f_new = described("02", new.len(), "png");
        assert!(in_dir.put(&f_new, &mut new.as_slice()).await.expect("dir"));
        assert_eq!(stored_names(&root), vec!["02".repeat(32)]);
        // A server started without the directory says where the content is, rather than
        // answering with nothing.
        let (stored, place) = in_db.file(&f_new.sha256).await.expect("read").expect("row");
        assert_eq!(place, Place::Directory);
        let err = in_db.chunk(&stored, place, 0).await.expect_err("no dir");
        assert!(err.to_string().contains("--file-dir"), "{err}");
        same_backend(&db, &in_dir).await;
    }
}

/// Content stored by another store on the same database (another node) is found, not stored
/// again.
async fn same_backend(db: &Db, store: &FileStore) {
    let other = FileStore::in_database(db.clone());
    let bytes = content(10);
    assert!(
        !other
            .put(&described("02", bytes.len(), "png"), &mut bytes.as_slice())
            .await
            .expect("found")
    );
    assert_eq!(read_back(store, &"02".repeat(32)).await.1, bytes);
}

#[tokio::test]
async fn a_directory_store_that_cannot_be_written_is_refused_at_open_and_stale_leftovers_go() {
    let dir = TempDir::new("files-open");
    let db = Db::Sqlite(durable_support::sqlite(&dir).await);
    // A path under a plain file cannot be a directory.
    let blocker = dir.0.join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let err = FileStore::in_directory(db.clone(), &blocker.join("files"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("files directory"), "{err}");
    // What a crash left half-written a day ago is removed; a fresh one (another node's upload
    // in progress) stays.
    let root = dir.0.join("files");
    std::fs::create_dir_all(root.join(".incoming")).expect("mkdir");
    let stale = root.join(".incoming").join("old.part");
    let fresh = root.join(".incoming").join("new.part");
    std::fs::write(&stale, b"half").expect("write");
    std::fs::write(&fresh, b"half").expect("write");
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_modified(std::time::SystemTime::now() - two_days)
        .expect("age");
    FileStore::in_directory(db.clone(), &root)
        .await
        .expect("open");
    assert!(!stale.exists());
    assert!(fresh.exists());
    // A tool given a directory no server has used (a mistyped path) creates nothing.
    let typo = dir.0.join("flies");
    let err = FileStore::existing_directory(db.clone(), &typo)
        .await
        .expect_err("not a files directory");
    assert!(err.to_string().contains("flies"), "{err}");
    assert!(!typo.exists());
    FileStore::existing_directory(db, &root)
        .await
        .expect("used");
}

const DAY: i64 = 24 * 3600 * 1000;
/// The sweeps' "now", and their cutoff: seven days before.
const NOW: i64 = 400 * DAY;
const CUTOFF: i64 = NOW - 7 * DAY;

fn stored_at(sha: &str, size: usize, at: i64) -> StoredFile {
    StoredFile {
        stored_at: at,
        ..described(sha, size, "pdf")
    }
}

/// Writes an event row as a commit does: the engine's JSON, today's format.
async fn record(db: &Db, instance: &str, seq: i64, kind: &str, body: &str) {
    let sql = "INSERT INTO events (instance, seq, type, body, recorded_at, format) \
               VALUES ($1, $2, $3, BODY, 0, $4)";
    let format = i64::from(EVENT_FORMAT);
    match db {
        Db::Sqlite(s) => sqlx::query(sqlx::AssertSqlSafe(sql.replace("BODY", "$5")))
            .bind(instance)
            .bind(seq)
            .bind(kind)
            .bind(format)
            .bind(body)
            .execute(s.pool())
            .await
            .map(drop),
        Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(
            sql.replace("BODY", "CAST($5 AS JSONB)"),
        ))
        .bind(instance)
        .bind(seq)
        .bind(kind)
        .bind(format)
        .bind(body)
        .execute(p.pool())
        .await
        .map(drop),
    }
    .expect("event recorded");
}

/// A `material_supplied` event of `instance` naming `files`.
async fn supplied(db: &Db, instance: &str, seq: i64, files: &[&StoredFile]) {
    let event = Event::MaterialSupplied {
        material: "eia".into(),
        promise: None,
        by: "chen".into(),
        files: files
            .iter()
            .map(|f| MaterialFile {
                sha256: f.sha256.as_str().into(),
                name: "环评批复.pdf".into(),
                size: f.size as u64,
            })
            .collect(),
    };
    let body = serde_json::to_string(&event).expect("json");
    record(db, instance, seq, event.kind(), &body).await;
}

async fn chunk_rows(db: &Db, sha: &str) -> i64 {
    let sql = "SELECT CAST(COUNT(*) AS BIGINT) FROM material_file_chunks WHERE sha256 = $1";
    match db {
        Db::Sqlite(s) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.replace('$', "?")))
                .bind(sha)
                .fetch_one(s.pool())
                .await
        }
        Db::Postgres(p) => sqlx::query_scalar(sql).bind(sha).fetch_one(p.pool()).await,
    }
    .expect("chunks")
}

/// The sweep, whichever place the store keeps content in: content an event names stays however
/// old; unreferenced content stays while young and goes once older than the cutoff (its row and
/// every chunk, or its file); a dry run lists and removes nothing; an upload of old content
/// restamps it, and the sweep then keeps it; content swept is stored again by a later upload.
async fn sweeps_what_no_event_names(store: &FileStore, db: &Db, root: Option<&std::path::Path>) {
    let month_ago = NOW - 30 * DAY;
    let named = stored_at("a1", CHUNK + 3, month_ago);
    let orphan = stored_at("a2", 2 * CHUNK + 1, month_ago);
    let young = stored_at("a3", 10, NOW - DAY);
    let again = stored_at("a4", 20, month_ago);
    for f in [&named, &orphan, &young, &again] {
        let bytes = content(f.size as usize);
        assert!(store.put(f, &mut bytes.as_slice()).await.expect("stored"));
    }
    // Events that name nothing, and one that names `named`, in two instances.
    record(db, "i-1", 1, "instance_started_by_hand", "{}").await;
    supplied(db, "i-1", 2, &[]).await;
    supplied(db, "i-2", 1, &[&named]).await;
    let found = |s: &shenpi_adapters::store::files::Sweep| -> Vec<(String, Swept)> {
        s.files
            .iter()
            .map(|f| (f.file.sha256.clone(), f.outcome))
            .collect()
    };

    let dry = store.sweep(CUTOFF, true, |_| {}).await.expect("dry run");
    assert_eq!(dry.referenced, 1);
    assert_eq!(
        found(&dry),
        vec![
            (orphan.sha256.clone(), Swept::Removed),
            (again.sha256.clone(), Swept::Removed)
        ],
        "the dry run lists the old content no event names"
    );
    assert_eq!(dry.files[0].file.size, orphan.size);
    assert_eq!(dry.files[0].place, store.place());
    for f in [&named, &orphan, &young, &again] {
        assert_eq!(
            read_back(store, &f.sha256).await.1,
            content(f.size as usize)
        );
    }

    // `again` is uploaded now: not stored a second time, but its row is restamped.
    let now = stored_at("a4", 20, NOW);
    assert!(!store.put(&now, &mut &content(20)[..]).await.expect("again"));
    let (row, _) = store.file(&again.sha256).await.expect("read").expect("row");
    assert_eq!(row.stored_at, NOW);
    // An upload whose clock is behind never moves the time back.
    let behind = stored_at("a4", 20, month_ago);
    assert!(
        !store
            .put(&behind, &mut &content(20)[..])
            .await
            .expect("behind")
    );
    let (row, _) = store.file(&again.sha256).await.expect("read").expect("row");
    assert_eq!(row.stored_at, NOW);

    let swept = store.sweep(CUTOFF, false, |_| {}).await.expect("sweep");
    assert_eq!(found(&swept), vec![(orphan.sha256.clone(), Swept::Removed)]);
    assert_eq!(store.file(&orphan.sha256).await.expect("read"), None);
    assert_eq!(
        chunk_rows(db, &orphan.sha256).await,
        0,
        "its chunks went too"
    );
    if let Some(root) = root {
        let path = root.join("a2").join(&orphan.sha256);
        assert_eq!(swept.files[0].path.as_deref(), Some(path.as_path()));
        assert!(!path.exists(), "its file went too");
    }
    for f in [&named, &young, &again] {
        assert_eq!(
            read_back(store, &f.sha256).await.1,
            content(f.size as usize)
        );
    }
    // Nothing is left to sweep.
    assert!(
        store
            .sweep(CUTOFF, false, |_| {})
            .await
            .expect("again")
            .files
            .is_empty()
    );

    // The content swept is uploaded again: the restamp finds no row, so it is stored anew.
    let back = stored_at("a2", orphan.size as usize, NOW);
    let bytes = content(orphan.size as usize);
    assert!(
        store
            .put(&back, &mut bytes.as_slice())
            .await
            .expect("stored again")
    );
    assert_eq!(read_back(store, &back.sha256).await.1, bytes);

    // The race: old content listed by a sweep, then uploaded again before the sweep removes
    // it. The removal goes by the row's time, so it removes nothing.
    let raced = stored_at("a5", 30, month_ago);
    assert!(
        store
            .put(&raced, &mut &content(30)[..])
            .await
            .expect("stored")
    );
    assert!(
        !store
            .put(&stored_at("a5", 30, NOW), &mut &content(30)[..])
            .await
            .expect("uploaded again")
    );
    assert!(
        !store
            .remove_if_stored_before(&raced.sha256, CUTOFF)
            .await
            .expect("removal")
    );
    assert_eq!(read_back(store, &raced.sha256).await.1, content(30));
    assert!(
        store
            .remove_if_stored_before(&raced.sha256, NOW + 1)
            .await
            .expect("removal"),
        "a row older than the cutoff is removed"
    );
    assert_eq!(store.file(&raced.sha256).await.expect("read"), None);

    // An event the sweep cannot read might name anything: the sweep stops, removing nothing.
    let stale = stored_at("a6", 5, month_ago);
    assert!(
        store
            .put(&stale, &mut &content(5)[..])
            .await
            .expect("stored")
    );
    record(
        db,
        "i-3",
        1,
        "material_supplied",
        r#"{"type":"material_supplied"}"#,
    )
    .await;
    let err = store
        .sweep(CUTOFF, false, |_| {})
        .await
        .expect_err("unreadable event");
    assert!(
        err.to_string().contains("event 1 of instance i-3"),
        "the error names the event: {err}"
    );
    assert!(store.file(&stale.sha256).await.expect("read").is_some());
}

#[tokio::test]
async fn the_sweep_removes_old_content_no_event_names_from_the_database() {
    let dir = TempDir::new("files-sweep");
    for db in both("material_files_sweep", &dir).await {
        let store = FileStore::in_database(db.clone());
        sweeps_what_no_event_names(&store, &db, None).await;
    }
}

#[tokio::test]
async fn the_sweep_removes_old_content_no_event_names_from_a_directory() {
    let dir = TempDir::new("files-sweep-dir");
    for db in both("material_files_sweep_dir", &dir).await {
        let root = dir.0.join(format!("files-{}", db.backend()));
        let store = FileStore::in_directory(db.clone(), &root)
            .await
            .expect("open");
        sweeps_what_no_event_names(&store, &db, Some(&root)).await;
    }
}

#[tokio::test]
async fn content_in_a_directory_the_sweep_was_not_given_is_listed_and_kept() {
    let dir = TempDir::new("files-sweep-nodir");
    for db in both("material_files_sweep_nodir", &dir).await {
        let root = dir.0.join(format!("files-{}", db.backend()));
        let in_dir = FileStore::in_directory(db.clone(), &root)
            .await
            .expect("open");
        let old = stored_at("b1", 10, NOW - 30 * DAY);
        assert!(
            in_dir
                .put(&old, &mut &content(10)[..])
                .await
                .expect("stored")
        );
        let sweep = FileStore::in_database(db.clone())
            .sweep(CUTOFF, false, |_| {})
            .await
            .expect("sweep");
        assert_eq!(sweep.files.len(), 1);
        assert_eq!(sweep.files[0].outcome, Swept::NoDirectory);
        assert_eq!(sweep.files[0].place, Place::Directory);
        assert_eq!(read_back(&in_dir, &old.sha256).await.1, content(10));
        // A sweep that died between unlinking the file and its commit left the row without
        // it: the next upload of that content puts the file back.
        let path = root.join("b1").join(&old.sha256);
        std::fs::remove_file(&path).expect("unlinked");
        let now = stored_at("b1", 10, NOW);
        assert!(
            in_dir
                .put(&now, &mut &content(10)[..])
                .await
                .expect("restored")
        );
        assert_eq!(read_back(&in_dir, &old.sha256).await.1, content(10));
    }
}

/// A reader whose every read fails.
struct Broken;

impl tokio::io::AsyncRead for Broken {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("disk read failed")))
    }
}
