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
//! Content no event names (the command was refused after its files were stored, or the server
//! died in between) is removed by [`FileStore::sweep`] (`shenpi files sweep`) once it is older
//! than a cutoff. The two cannot cross: an upload of content already stored moves its row's
//! `stored_at` forward in one `UPDATE` before the command, and the sweep deletes a row only
//! while it is still older than the cutoff; an upload that finds the row gone stores it again.
//!
//! One SQL text serves both backends, as in [`super::version_migrations`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shenpi_engine::runtime::Event;
use shenpi_engine::runtime::event::decode_event;
use sqlx::Row;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::dialect::{on_pool, sql_for};
use super::{Db, Millis, Result, StoreError};

/// The size of a stored chunk: 1 MiB.
pub const CHUNK: usize = 1 << 20;

/// Rows a sweep reads per query (events, then stored files).
const PAGE: i64 = 500;

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
    /// Stores `file`'s content in the database, read from `content` (exactly `file.size` bytes
    /// whose SHA-256 is `file.sha256`: the caller hashed them on the way in). Returns whether
    /// this call stored it (`false`: another upload of the same content committed first).
    async fn put_file(
        &self,
        file: &StoredFile,
        content: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<bool> {
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

    /// Marks content already stored as stored again at `file.stored_at` (moved forward, never
    /// back), in one statement, so that a sweep deciding meanwhile keeps it: the sweep removes a
    /// row only while it is still older than its cutoff. Returns where the content is and its
    /// size, or `None` when it is not stored (never was, or a sweep has just removed it).
    async fn restamp(&self, file: &StoredFile) -> Result<Option<(Place, i64)>> {
        let sql = "UPDATE material_files \
                   SET stored_at = CASE WHEN stored_at < $2 THEN $2 ELSE stored_at END \
                   WHERE sha256 = $1 RETURNING place, size";
        on_pool!(self, sql, |pool, q| {
            let row: Option<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(&file.sha256)
                .bind(file.stored_at)
                .fetch_optional(pool)
                .await?;
            row.map(|(place, size)| Ok((Place::parse(&place)?, size)))
                .transpose()
        })
    }

    /// Every hash a `material_supplied` event of any instance names. The events are read
    /// [`PAGE`] at a time in key order (no snapshot held across pages, none of them in memory
    /// at once) and decoded as the engine reads them; an event that cannot be decoded stops
    /// the scan, since what it names is unknown. An event committed behind the cursor during
    /// the scan is missed, which is safe: its files were stored or restamped by their upload
    /// just before ([`FileStore::put`]), so they are younger than any cutoff.
    async fn referenced_files(&self) -> Result<BTreeSet<String>> {
        let sql = "SELECT instance, seq, CAST(body AS TEXT), CAST(format AS BIGINT) FROM events \
                   WHERE type = 'material_supplied' AND (instance, seq) > ($1, $2) \
                   ORDER BY instance, seq LIMIT $3";
        let mut named = BTreeSet::new();
        let (mut after, mut after_seq) = (String::new(), -1i64);
        loop {
            let rows: Vec<(String, i64, String, i64)> = on_pool!(self, sql, |pool, q| {
                sqlx::query_as(sqlx::AssertSqlSafe(q.into_owned()))
                    .bind(&after)
                    .bind(after_seq)
                    .bind(PAGE)
                    .fetch_all(pool)
                    .await
            })?;
            let Some((last, last_seq, ..)) = rows.last() else {
                return Ok(named);
            };
            (after, after_seq) = (last.clone(), *last_seq);
            for (instance, seq, body, format) in &rows {
                let event = u32::try_from(*format)
                    .map_err(|_| format!("format {format} out of range"))
                    .and_then(|f| decode_event(f, body).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        StoreError::Corrupt(format!(
                            "event {seq} of instance {instance} (material_supplied) cannot be \
                             read, so the files it names are unknown: {e}"
                        ))
                    })?;
                if let Event::MaterialSupplied { files, .. } = event {
                    named.extend(files.into_iter().map(|f| f.sha256.to_string()));
                }
            }
        }
    }

    /// Up to [`PAGE`] stored files with a hash after `after`, stored before `before`, by hash.
    async fn files_stored_before(
        &self,
        before: Millis,
        after: &str,
    ) -> Result<Vec<(StoredFile, Place)>> {
        let sql = "SELECT sha256, size, kind, stored_at, place FROM material_files \
                   WHERE stored_at < $1 AND sha256 > $2 ORDER BY sha256 LIMIT $3";
        let rows: Vec<(String, i64, String, i64, String)> = on_pool!(self, sql, |pool, q| {
            sqlx::query_as(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(before)
                .bind(after)
                .bind(PAGE)
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter()
            .map(|(sha256, size, kind, stored_at, place)| {
                Ok((
                    StoredFile {
                        sha256,
                        size,
                        kind,
                        stored_at,
                    },
                    Place::parse(&place)?,
                ))
            })
            .collect()
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

/// What a sweep ([`FileStore::sweep`]) did with a file no event names, stored before its cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// Removed, its row and its content (in a dry run: would be removed).
    Removed,
    /// Kept: uploaded again while the sweep ran (its row restamped), so a command may be about
    /// to name it.
    UploadedAgain,
    /// Kept: its content is in a files directory the sweep was not given.
    NoDirectory,
}

/// One file a sweep found: what it is, where its content is and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptFile {
    pub file: StoredFile,
    pub place: Place,
    /// The content's file, when it is in the directory the sweep was given.
    pub path: Option<PathBuf>,
    pub outcome: Swept,
}

/// What a sweep found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// How many distinct hashes the events name (kept whatever their age).
    pub referenced: usize,
    /// The files no event names that were stored before the cutoff, by hash.
    pub files: Vec<SweptFile>,
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

    /// The files directory `dir` a server has used, for tools (`shenpi files sweep`): unlike
    /// [`FileStore::in_directory`] it creates nothing, so a mistyped path is an error rather
    /// than an empty directory in which every file looks missing.
    pub async fn existing_directory(db: Db, dir: &Path) -> Result<FileStore> {
        let incoming = dir.join(INCOMING);
        match tokio::fs::metadata(&incoming).await {
            Ok(m) if m.is_dir() => FileStore::in_directory(db, dir).await,
            Ok(_) => Err(StoreError::Content(format!(
                "{} is not a directory",
                incoming.display()
            ))),
            Err(e) => Err(io(
                "not a files directory a server has used: no",
                &incoming,
                e,
            )),
        }
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
    /// place) is not read again, but its `stored_at` moves to `file.stored_at`, so a sweep
    /// running now keeps it for the command about to name it; content a sweep has just removed
    /// is stored again. Returns whether this call stored it.
    pub async fn put(
        &self,
        file: &StoredFile,
        content: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<bool> {
        match (self.db.restamp(file).await?, &self.dir) {
            (None, None) => self.db.put_file(file, content).await,
            (None, Some(dir)) => {
                write_into_place(dir, file, content).await?;
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
            (Some((Place::Directory, size)), Some(dir)) => {
                // A sweep that died after removing the file and before its commit leaves the
                // row without it (and so does a file deleted by hand): the content at hand
                // puts it back before a command names it.
                let path = content_path(dir, &file.sha256)?;
                let whole = tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|m| m.len() == size as u64);
                if whole {
                    return Ok(false);
                }
                write_into_place(dir, file, content).await?;
                Ok(true)
            }
            (Some(_), _) => Ok(false),
        }
    }

    /// Removes the material files no `material_supplied` event names and that were stored (or
    /// last uploaded again) before `before`, each in a transaction of its own
    /// ([`FileStore::remove_if_stored_before`]); with `dry_run`, only lists them. Content in a
    /// files directory is removed only by a store given that directory ([`Swept::NoDirectory`]
    /// otherwise). Files stored after `before` stay whatever names them: an upload stores its
    /// files before the command that names them, and that command may not be committed yet.
    /// `seen` is told of each file as soon as it is done, so what was removed is known even
    /// when a later one fails.
    pub async fn sweep(
        &self,
        before: Millis,
        dry_run: bool,
        mut seen: impl FnMut(&SweptFile),
    ) -> Result<Sweep> {
        let named = self.db.referenced_files().await?;
        let mut sweep = Sweep {
            referenced: named.len(),
            files: Vec::new(),
        };
        let mut after = String::new();
        loop {
            let page = self.db.files_stored_before(before, &after).await?;
            let Some((last, _)) = page.last() else {
                return Ok(sweep);
            };
            after = last.sha256.clone();
            for (file, place) in page {
                if named.contains(&file.sha256) {
                    continue;
                }
                let path = match (place, &self.dir) {
                    (Place::Directory, Some(dir)) => Some(content_path(dir, &file.sha256)?),
                    _ => None,
                };
                let outcome = if place == Place::Directory && self.dir.is_none() {
                    Swept::NoDirectory
                } else if dry_run || self.remove_if_stored_before(&file.sha256, before).await? {
                    Swept::Removed
                } else {
                    Swept::UploadedAgain
                };
                let swept = SweptFile {
                    file,
                    place,
                    path,
                    outcome,
                };
                seen(&swept);
                sweep.files.push(swept);
            }
        }
    }

    /// Removes one stored file, row and content in one transaction, if its row is still older
    /// than `before`: an upload of the same content meanwhile has restamped it (and then this
    /// removes nothing), or waits for this transaction and then stores it again. The caller
    /// has checked that no event names it. A file in a directory is unlinked inside the
    /// transaction, so a concurrent upload cannot put it back in between; should the commit not
    /// follow (a crash), the row outlives its file and the next upload of that content restores
    /// it ([`FileStore::put`]). Returns whether it removed the file.
    pub async fn remove_if_stored_before(&self, sha256: &str, before: Millis) -> Result<bool> {
        let row_sql = "DELETE FROM material_files WHERE sha256 = $1 AND stored_at < $2 \
                       RETURNING place";
        let chunks_sql = "DELETE FROM material_file_chunks WHERE sha256 = $1";
        // SQLite: the write lock from the start, so a concurrent upload's restamp waits.
        let begin = match &self.db {
            Db::Sqlite(_) => "BEGIN IMMEDIATE",
            Db::Postgres(_) => "BEGIN",
        };
        on_pool!(&self.db, row_sql, |pool, q| {
            let chunks_q = sql_for(&self.db, chunks_sql).into_owned();
            let mut tx = pool.begin_with(begin).await?;
            let place: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(sha256)
                .bind(before)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(place) = place else {
                tx.rollback().await?;
                return Ok(false);
            };
            sqlx::query(sqlx::AssertSqlSafe(chunks_q))
                .bind(sha256)
                .execute(&mut *tx)
                .await?;
            if Place::parse(&place)? == Place::Directory {
                let Some(dir) = &self.dir else {
                    return Err(StoreError::Content(format!(
                        "file {sha256} is kept in a files directory, and this store was not \
                         given one (--file-dir)"
                    )));
                };
                let path = content_path(dir, sha256)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("cannot remove stored file", &path, e)),
                }
            }
            tx.commit().await?;
            Ok(true)
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

/// Writes `file`'s content under [`INCOMING`], syncs it and renames it to its place; what is
/// left half-written on failure is removed.
async fn write_into_place(
    dir: &Path,
    file: &StoredFile,
    content: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<()> {
    let path = content_path(dir, &file.sha256)?;
    let temp = dir.join(INCOMING).join(format!(
        "{}.{}.{}.part",
        file.sha256,
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let placed = match write_whole(&temp, file, content).await {
        Ok(()) => place_file(&temp, &path).await,
        Err(e) => Err(e),
    };
    if placed.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    placed
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
