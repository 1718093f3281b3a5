//! Material files by content (migration 16) on both backends: stored in chunks, read back byte
//! for byte, kept once, and content cut short or failing halfway never recorded as stored.

mod durable_support;

use durable_support::{TempDir, both};
use shenpi_adapters::store::files::{CHUNK, StoredFile};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn a_file_is_stored_once_by_hash_and_read_back_chunk_by_chunk() {
    let dir = TempDir::new("files");
    for db in both("material_files", &dir).await {
        let bytes = content(2 * CHUNK + 123);
        let f = StoredFile {
            sha256: "ab".repeat(32),
            size: bytes.len() as i64,
            kind: "pdf".into(),
            stored_at: 1,
        };
        assert!(
            db.put_file(&f, &mut bytes.as_slice())
                .await
                .expect("stored")
        );
        assert!(!db.put_file(&f, &mut bytes.as_slice()).await.expect("again"));
        assert_eq!(db.file(&f.sha256).await.expect("read"), Some(f.clone()));
        let mut back = Vec::new();
        let mut n = 0;
        while let Some(c) = db.file_chunk(&f.sha256, n).await.expect("chunk") {
            assert!(c.len() <= CHUNK);
            back.extend_from_slice(&c);
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(back, bytes);
        // Content shorter than announced is refused and leaves no record.
        let short = StoredFile {
            sha256: "cd".repeat(32),
            size: 10,
            kind: "png".into(),
            stored_at: 1,
        };
        assert!(db.put_file(&short, &mut &b"abc"[..]).await.is_err());
        assert_eq!(db.file(&short.sha256).await.expect("read"), None);
        assert_eq!(db.file_chunk(&short.sha256, 0).await.expect("chunk"), None);
        // Content that fails after a chunk and a half was written (the temporary file lost,
        // the disk failing) leaves neither the file nor its first chunks.
        let failing = StoredFile {
            sha256: "ef".repeat(32),
            size: (3 * CHUNK) as i64,
            kind: "pdf".into(),
            stored_at: 1,
        };
        let first = content(CHUNK + CHUNK / 2);
        let mut broken = tokio::io::AsyncReadExt::chain(first.as_slice(), Broken);
        assert!(db.put_file(&failing, &mut broken).await.is_err());
        assert_eq!(db.file(&failing.sha256).await.expect("read"), None);
        assert_eq!(
            db.file_chunk(&failing.sha256, 0).await.expect("chunk"),
            None
        );
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
