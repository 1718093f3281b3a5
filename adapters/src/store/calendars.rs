//! Calendar revisions as data: every published revision of each working-day calendar, with where
//! it came from, who published it and whether the open instances were re-timed on it.
//!
//! One SQL text serves both backends: it is written with PostgreSQL's `$n` placeholders, which
//! become SQLite's `?n`.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::dialect::{on_pool, row_reader, sqlite_sql};
use super::{Db, Millis, Result};

/// One published revision of a calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarRevision {
    pub calendar: String,
    /// 1, 2, ... per calendar.
    pub revision: i64,
    pub yaml: String,
    /// SHA-256 of `yaml`, hex.
    pub hash: String,
    /// `file` or `import`.
    pub origin: String,
    /// The file's path (origin `file`) or how it was imported (`cli`, `editor`, `api`).
    pub origin_detail: String,
    pub published_by: String,
    pub published_at: Millis,
    /// When every open instance had been re-timed on this revision; `None` while pending.
    pub retimed_at: Option<Millis>,
    /// What the re-timing did (JSON), once done.
    pub summary: Option<String>,
}

/// Where a revision comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A file under `workflows/calendars/`, by path.
    File(&'a str),
    /// Imported by a person: `cli`, `editor` or `api`.
    Import(&'a str),
}

const COLUMNS: &str = "calendar, revision, yaml, hash, origin, origin_detail, published_by, \
                       published_at, retimed_at, summary";

row_reader!(fn revision_of -> CalendarRevision { calendar, revision, yaml, hash, origin, origin_detail, published_by, published_at, retimed_at, summary });

impl Db {
    /// Every revision of `calendar`, the newest first.
    pub async fn calendar_revisions(&self, calendar: &str) -> Result<Vec<CalendarRevision>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calendar_revisions WHERE calendar = $1 ORDER BY revision DESC"
        );
        on_pool!(self, &sql, |pool, q| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(calendar)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(revision_of)
                .collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }

    /// The revision in force: the newest.
    pub async fn latest_calendar(&self, calendar: &str) -> Result<Option<CalendarRevision>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calendar_revisions WHERE calendar = $1 \
             ORDER BY revision DESC LIMIT 1"
        );
        on_pool!(self, &sql, |pool, q| {
            let row = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(calendar)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(revision_of).transpose()?)
        })
    }

    /// Marks every revision older than `revision` still waiting for its re-timing as superseded:
    /// re-timing on `revision` starts from whatever the timers say now.
    pub async fn mark_superseded(&self, calendar: &str, revision: i64, now: Millis) -> Result<()> {
        let sql = "UPDATE calendar_revisions SET retimed_at = $1, summary = '{\"superseded\":true}' \
                   WHERE calendar = $2 AND revision < $3 AND retimed_at IS NULL";
        on_pool!(self, sql, |pool, q| {
            sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(now)
                .bind(calendar)
                .bind(revision)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Publishes `yaml` as the next revision of `calendar`, to be re-timed.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish_calendar(
        &self,
        calendar: &str,
        yaml: &str,
        hash: &str,
        origin: Origin<'_>,
        by: &str,
        now: Millis,
    ) -> Result<CalendarRevision> {
        let (origin, detail) = match origin {
            Origin::File(p) => ("file", p),
            Origin::Import(how) => ("import", how),
        };
        // One statement takes the next number and writes the row; two writers taking the same
        // number get a conflict on the primary key. On SQLite it runs in a `BEGIN IMMEDIATE`
        // transaction, which waits for the write lock, so a commit by another connection in
        // between (the audit writer, a server beside the CLI) cannot make it fail as stale.
        let sql = format!(
            "INSERT INTO calendar_revisions ({COLUMNS}) \
             SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4, $5, $6, $7, NULL, NULL \
             FROM calendar_revisions WHERE calendar = $1 RETURNING revision"
        );
        macro_rules! insert {
            ($q:expr) => {
                sqlx::query(sqlx::AssertSqlSafe($q))
                    .bind(calendar)
                    .bind(yaml)
                    .bind(hash)
                    .bind(origin)
                    .bind(detail)
                    .bind(by)
                    .bind(now)
            };
        }
        let revision: i64 = match self {
            Db::Sqlite(st) => {
                // A server's connections beside the CLI's can still answer SQLITE_BUSY at once
                // (not through the busy timeout) while a checkpoint or commit of theirs is in
                // flight; the publish is tried again for up to about ten seconds.
                let mut tries = 0;
                loop {
                    let attempt = async {
                        let mut tx = st.pool().begin_with("BEGIN IMMEDIATE").await?;
                        let r: i64 = insert!(sqlite_sql(&sql).into_owned())
                            .fetch_one(&mut *tx)
                            .await?
                            .try_get("revision")?;
                        tx.commit().await?;
                        Ok::<i64, sqlx::Error>(r)
                    };
                    match attempt.await {
                        Ok(r) => break r,
                        Err(sqlx::Error::Database(d))
                            if d.code().as_deref() == Some("5") && tries < 100 =>
                        {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Db::Postgres(st) => insert!(sql.clone())
                .fetch_one(st.pool())
                .await?
                .try_get("revision")?,
        };
        Ok(CalendarRevision {
            calendar: calendar.to_string(),
            revision,
            yaml: yaml.to_string(),
            hash: hash.to_string(),
            origin: origin.to_string(),
            origin_detail: detail.to_string(),
            published_by: by.to_string(),
            published_at: now,
            retimed_at: None,
            summary: None,
        })
    }

    /// Records that every open instance was re-timed on a revision, with what it did.
    pub async fn mark_retimed(
        &self,
        calendar: &str,
        revision: i64,
        summary: &str,
        now: Millis,
    ) -> Result<()> {
        let sql = "UPDATE calendar_revisions SET retimed_at = $1, summary = $2 \
                   WHERE calendar = $3 AND revision = $4 AND retimed_at IS NULL";
        on_pool!(self, sql, |pool, q| {
            sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(now)
                .bind(summary)
                .bind(calendar)
                .bind(revision)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Every instance of a workflow, on any version (what-if runs the projects a database holds).
    pub async fn instances_of_workflow(&self, workflow: &str) -> Result<Vec<String>> {
        let sql = "SELECT id FROM instances WHERE workflow_id = $1 ORDER BY id";
        on_pool!(self, sql, |pool, q| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(workflow)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(r.try_get("id")?);
            }
            Ok(out)
        })
    }

    /// The instances with an open (pending or claimed) timer, with their workflow: the only
    /// ones a calendar revision can move, since every other deadline is computed when read.
    pub async fn instances_with_open_timers(&self) -> Result<Vec<(String, String)>> {
        let sql = "SELECT DISTINCT i.id AS id, i.workflow_id AS workflow_id FROM timers t \
                   JOIN instances i ON i.id = t.instance \
                   WHERE t.state IN ('pending', 'claimed') ORDER BY i.id";
        on_pool!(self, sql, |pool, q| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get("id")?, r.try_get("workflow_id")?));
            }
            Ok(out)
        })
    }
}
