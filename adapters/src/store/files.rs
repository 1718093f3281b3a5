//! Material files (材料文件) by content: each stored once under the SHA-256 of its bytes, either
//! in the database every node shares (SQLite or PostgreSQL, in chunks of [`CHUNK`] bytes,
//! migration 16: the default) or as one file per hash in a directory ([`FileStore::in_directory`],
//! `serve --file-dir`: a disk or a share every node mounts). Storing reads the content from a
//! reader chunk by chunk and reading gives it back chunk by chunk, so no file is ever held whole
//! in memory.
//!
//! What a file is *for* (the instance, the material, who supplied it, when, under which name)
//! is not here: it is the instance's `material_supplied` event, which names the hash. Either
//! way the `material_files` row is written last, once the content is whole (in the transaction
//! that writes the chunks, or after the directory's file is synced and renamed into place), so
//! an event never names content that is missing or cut short. The row says where the content
//! is (migration 19), and a file is read from there whatever the server stores new files in.
//!
//! One SQL text serves both backends, as in [`super::version_migrations`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Row;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::dialect::{on_pool, sql_for};
use super::{Db, Millis, Result, StoreError};

/// The size of a stored chunk: 1 MiB.
pub const CHUNK: usize = 1 << 20;

/// A stored file's content: its hash (lower-case hex), size in bytes and kind (what its bytes
/// are, e.g. `pdf`, `png`, as the server recognised them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub sha256: String,
    pub size: i64,
    pub kind: String,
    pub stored_at: Millis,
}

/// Where a file's content is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In `material_file_chunks`.
    Database,
    /// In the files directory, at `<dir>/<first two hex digits>/<sha256>`.
    Directory,
}

impl Place {
    pub fn code(self) -> &'static str {
        match self {
            Place::Database => "database",
            Place::Directory => "directory",
        }
    }

    fn parse(code: &str) -> Result<Place> {
        match code {
            "database" => Ok(Place::Database),
            "directory" => Ok(Place::Directory),
            other => Err(StoreError::Corrupt(format!(
                "material_files.place is `{other}`, not database or directory"
            ))),
        }
    }
}

/// Reads up to [`CHUNK`] bytes (fewer only at the end).
async fn read_chunk(r: &mut (dyn AsyncRead + Unpin + Send), buf: &mut Vec<u8>) -> Result<usize> {
    buf.clear();
    let mut limited = r.take(CHUNK as u64);
    limited
        .read_to_end(buf)
        .await
        .map_err(|e| StoreError::Content(format!("reading the file to store: {e}")))
}

impl Db {
    /// Stores `file`'s content in the database, read from `content` (exactly `file.size` bytes whose SHA-256 is
    /// `file.sha256`: the caller hashed them on the way in). Content already stored is not read
    /// again. Returns whether this call stored it.
    async fn put_file(
        &self,
        file: &StoredFile,
        content: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<bool> {
        if self.file(&file.sha256).await?.is_some() {
            return Ok(false);
        }
        let chunk_sql = "INSERT INTO material_file_chunks (sha256, n, data) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING";
        let file_sql = "INSERT INTO material_files (sha256, size, kind, stored_at) \
                        VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let mut buf = Vec::with_capacity(CHUNK);
        // A file's chunks are written once and rarely read: on SQLite they go through a small
        // page cache (the transaction spills to the WAL), not the connection's 64 MiB one,
        // which would otherwise hold the whole file in memory until it commits.
        let sqlite = matches!(self, Db::Sqlite(_));
        on_pool!(self, file_sql, |pool, q| {
            let chunk_q = sql_for(self, chunk_sql);
            let mut conn = pool.acquire().await?;
            if sqlite {
                sqlx::query("PRAGMA cache_size = -2048")
                    .execute(&mut *conn)
                    .await?;
            }
            let stored = async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let mut n: i64 = 0;
                let mut total: i64 = 0;
                loop {
                    let got = read_chunk(content, &mut buf).await?;
                    if got == 0 && n > 0 {
                        break;
                    }
                    sqlx::query(sqlx::AssertSqlSafe(chunk_q.clone().into_owned()))
                        .bind(&file.sha256)
                        .bind(n)
                        .bind(&buf[..])
                        .execute(&mut *tx)
                        .await?;
                    n += 1;
                    total += got as i64;
                    if got < CHUNK {
                        break;
                    }
                }
                if total != file.size {
                    return Err(StoreError::Content(format!(
                        "file {}: read {total} bytes, expected {}",
                        file.sha256, file.size
                    )));
                }
                let done = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                    .bind(&file.sha256)
                    .bind(file.size)
                    .bind(&file.kind)
                    .bind(file.stored_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }
            .await;
            if sqlite {
                let normal = format!("PRAGMA cache_size = {}", super::sqlite::PAGE_CACHE);
                sqlx::query(sqlx::AssertSqlSafe(normal))
                    .execute(&mut *conn)
                    .await?;
            }
            stored
        })
    }

    /// A stored file's hash, size and kind, and where its content is, if it is stored.
    async fn file(&self, sha256: &str) -> Result<Option<(StoredFile, Place)>> {
        let sql =
            "SELECT sha256, size, kind, stored_at, place FROM material_files WHERE sha256 = $1";
        on_pool!(self, sql, |pool, q| {
            let row = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(sha256)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some((
                    StoredFile {
                        sha256: r.try_get("sha256")?,
                        size: r.try_get("size")?,
                        kind: r.try_get("kind")?,
                        stored_at: r.try_get("stored_at")?,
                    },
                    Place::parse(r.try_get("place")?)?,
                ))),
            }
        })
    }

    /// The `n`th chunk (from 0) of a file's content stored in the database; `None` past its end.
    async fn file_chunk(&self, sha256: &str, n: i64) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT data FROM material_file_chunks WHERE sha256 = $1 AND n = $2";
        on_pool!(self, sql, |pool, q| {
            let row = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(sha256)
                .bind(n)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
        })
    }
}

/// Where new material files go, and how any stored file is read back.
#[derive(Debug, Clone)]
pub struct FileStore {
    db: Db,
    /// The files directory, when new content goes there.
    dir: Option<Arc<PathBuf>>,
}

/// The subdirectory of a files directory where content is written before it is renamed into
/// place; what a crash leaves there is never named by a row.
const INCOMING: &str = ".incoming";

/// Leftovers in [`INCOMING`] older than this are removed when a store opens (younger ones may be
/// another node's upload in progress).
const STALE_INCOMING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Content(format!("{what} {}: {e}", path.display()))
}

impl FileStore {
    /// Files in the database: the default, nothing else to set up.
    pub fn in_database(db: Db) -> FileStore {
        FileStore { db, dir: None }
    }

    /// New files in `dir` (created if missing), rows in `db`. Fails when the directory cannot
    /// be created or written, so a server does not start with a store it cannot write; removes
    /// what earlier crashes left half-written.
    pub async fn in_directory(db: Db, dir: &Path) -> Result<FileStore> {
        let incoming = dir.join(INCOMING);
        tokio::fs::create_dir_all(&incoming)
            .await
            .map_err(|e| io("cannot create the files directory", &incoming, e))?;
        let probe = incoming.join(format!("probe-{}", std::process::id()));
        tokio::fs::write(&probe, b"shenpi")
            .await
            .map_err(|e| io("cannot write in the files directory", dir, e))?;
        let _ = tokio::fs::remove_file(&probe).await;
        if let Ok(mut entries) = tokio::fs::read_dir(&incoming).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                let stale = e
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_INCOMING);
                if stale {
                    let _ = tokio::fs::remove_file(e.path()).await;
                }
            }
        }
        Ok(FileStore {
            db,
            dir: Some(Arc::new(dir.to_path_buf())),
        })
    }

    /// Where this store puts new content.
    pub fn place(&self) -> Place {
        if self.dir.is_some() {
            Place::Directory
        } else {
            Place::Database
        }
    }

    /// Stores `file`'s content, read from `content` (exactly `file.size` bytes whose SHA-256 is
    /// `file.sha256`: the caller hashed them on the way in). Content already stored (in either
    /// place) is not read again. Returns whether this call stored it.
    pub async fn put(
        &self,
        file: &StoredFile,
        content: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<bool> {
        let Some(dir) = &self.dir else {
            return self.db.put_file(file, content).await;
        };
        if self.db.file(&file.sha256).await?.is_some() {
            return Ok(false);
        }
        let path = content_path(dir, &file.sha256)?;
        let temp = dir.join(INCOMING).join(format!(
            "{}.{}.{}.part",
            file.sha256,
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_whole(&temp, file, content).await;
        let placed = match written {
            Ok(()) => place_file(&temp, &path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = placed {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        let sql = "INSERT INTO material_files (sha256, size, kind, stored_at, place) \
                   VALUES ($1, $2, $3, $4, 'directory') ON CONFLICT DO NOTHING";
        on_pool!(&self.db, sql, |pool, q| {
            let done = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(&file.sha256)
                .bind(file.size)
                .bind(&file.kind)
                .bind(file.stored_at)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A stored file's hash, size and kind, and where its content is, if it is stored.
    pub async fn file(&self, sha256: &str) -> Result<Option<(StoredFile, Place)>> {
        self.db.file(sha256).await
    }

    /// The `n`th chunk (from 0) of a stored file's content, at most [`CHUNK`] bytes; `None` past
    /// its end. Content in a directory this server was not given is an error that says so.
    pub async fn chunk(&self, file: &StoredFile, place: Place, n: i64) -> Result<Option<Vec<u8>>> {
        match place {
            Place::Database => self.db.file_chunk(&file.sha256, n).await,
            Place::Directory => {
                let Some(dir) = &self.dir else {
                    return Err(StoreError::Content(format!(
                        "file {} is kept in a files directory, and this server was started \
                         without one (serve --file-dir)",
                        file.sha256
                    )));
                };
                let offset = (n as u64).saturating_mul(CHUNK as u64);
                if n < 0 || offset >= file.size as u64 {
                    return Ok(None);
                }
                let path = content_path(dir, &file.sha256)?;
                let mut f = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| io("cannot open stored file", &path, e))?;
                f.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| io("cannot read stored file", &path, e))?;
                let mut buf = Vec::with_capacity(CHUNK);
                f.take(CHUNK as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| io("cannot read stored file", &path, e))?;
                let expected = (file.size as u64 - offset).min(CHUNK as u64);
                if buf.len() as u64 != expected {
                    return Err(StoreError::Content(format!(
                        "stored file {} is {} bytes at chunk {n}, expected {expected}: it was \
                         changed or cut short on disk",
                        path.display(),
                        buf.len()
                    )));
                }
                Ok(Some(buf))
            }
        }
    }
}

/// Distinguishes the temporary files of one process's concurrent uploads.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// `<dir>/<first two hex digits>/<sha256>`; a hash that is not 64 hex digits never names a path.
fn content_path(dir: &Path, sha256: &str) -> Result<PathBuf> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Content(format!(
            "`{sha256}` is not a SHA-256 in hex"
        )));
    }
    Ok(dir.join(&sha256[..2]).join(sha256))
}

/// Copies exactly `file.size` bytes of `content` to `temp` and syncs it to disk.
async fn write_whole(
    temp: &Path,
    file: &StoredFile,
    content: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<()> {
    let mut out = tokio::fs::File::create(temp)
        .await
        .map_err(|e| io("cannot create", temp, e))?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut total: i64 = 0;
    loop {
        let got = read_chunk(content, &mut buf).await?;
        if got == 0 {
            break;
        }
        out.write_all(&buf)
            .await
            .map_err(|e| io("cannot write", temp, e))?;
        total += got as i64;
    }
    if total != file.size {
        return Err(StoreError::Content(format!(
            "file {}: read {total} bytes, expected {}",
            file.sha256, file.size
        )));
    }
    out.sync_all()
        .await
        .map_err(|e| io("cannot sync", temp, e))?;
    Ok(())
}

/// Renames the synced `temp` to `path` and syncs the directory that holds it, so the name
/// survives a power cut before the row naming it is written.
async fn place_file(temp: &Path, path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(path);
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| io("cannot create", parent, e))?;
    tokio::fs::rename(temp, path)
        .await
        .map_err(|e| io("cannot move the stored file to", path, e))?;
    let parent = parent.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&parent)?.sync_all())
        .await
        .map_err(|e| StoreError::Content(e.to_string()))?
        .map_err(|e| io("cannot sync", path, e))?;
    Ok(())
}
