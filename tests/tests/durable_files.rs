//! Material files by content on both backends, in the database (migration 16) and in a files
//! directory (migration 19): stored in chunks or as one file, read back byte for byte, kept once,
//! and content cut short or failing halfway never recorded as stored.

mod durable_support;

use durable_support::{TempDir, both};
use shenpi_adapters::store::Db;
use shenpi_adapters::store::files::{CHUNK, FileStore, Place, StoredFile};

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
    FileStore::in_directory(db, &root).await.expect("open");
    assert!(!stale.exists());
    assert!(fresh.exists());
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
