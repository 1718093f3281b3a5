//! Material files (材料文件) by content: each stored once under the SHA-256 of its bytes, in
//! chunks of [`CHUNK`] bytes, in the database every node shares (SQLite or PostgreSQL, migration
//! 16). Storing reads the content from a reader chunk by chunk and reading gives it back chunk
//! by chunk, so no file is ever held whole in memory.
//!
//! What a file is *for* (the instance, the material, who supplied it, when, under which name)
//! is not here: it is the instance's `material_supplied` event, which names the hash. The
//! content is stored first and whole, in one transaction that writes the `material_files` row
//! last, so an event never names content that is missing or cut short.
//!
//! One SQL text serves both backends, as in [`super::version_migrations`].

use sqlx::Row;
use tokio::io::{AsyncRead, AsyncReadExt};

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
    /// Stores `file`'s content, read from `content` (exactly `file.size` bytes whose SHA-256 is
    /// `file.sha256`: the caller hashed them on the way in). Content already stored is not read
    /// again. Returns whether this call stored it.
    pub async fn put_file(
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

    /// A stored file's hash, size and kind, if its content is stored.
    pub async fn file(&self, sha256: &str) -> Result<Option<StoredFile>> {
        let sql = "SELECT sha256, size, kind, stored_at FROM material_files WHERE sha256 = $1";
        on_pool!(self, sql, |pool, q| {
            let row = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(sha256)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(StoredFile {
                    sha256: r.try_get("sha256")?,
                    size: r.try_get("size")?,
                    kind: r.try_get("kind")?,
                    stored_at: r.try_get("stored_at")?,
                })),
            }
        })
    }

    /// The `n`th chunk (from 0) of a stored file's content; `None` past its end.
    pub async fn file_chunk(&self, sha256: &str, n: i64) -> Result<Option<Vec<u8>>> {
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
