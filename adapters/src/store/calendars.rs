//! Calendar revisions as data: every published revision of each working-day calendar, with where
//! it came from, who published it and whether the open instances were re-timed on it.
//!
//! One SQL text serves both backends: it is written with PostgreSQL's `$n` placeholders, which
//! become SQLite's `?n`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sqlx::Row;

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

fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    Cow::Owned(sql.replace('$', "?"))
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$q` to the SQL text in its dialect.
macro_rules! on_pool {
    ($db:expr, $sql:expr, |$pool:ident, $q:ident| $body:expr) => {
        match $db {
            Db::Sqlite(s) => {
                let $pool = s.pool();
                let $q = sqlite_sql($sql);
                $body
            }
            Db::Postgres(s) => {
                let $pool = s.pool();
                let $q: Cow<'_, str> = Cow::Borrowed($sql);
                $body
            }
        }
    };
}

fn revision_of<R: Row>(r: &R) -> std::result::Result<CalendarRevision, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'d> sqlx::Decode<'d, R::Database>,
    Option<i64>: for<'d> sqlx::Decode<'d, R::Database>,
{
    Ok(CalendarRevision {
        calendar: r.try_get("calendar")?,
        revision: r.try_get("revision")?,
        yaml: r.try_get("yaml")?,
        hash: r.try_get("hash")?,
        origin: r.try_get("origin")?,
        origin_detail: r.try_get("origin_detail")?,
        published_by: r.try_get("published_by")?,
        published_at: r.try_get("published_at")?,
        retimed_at: r.try_get("retimed_at")?,
        summary: r.try_get("summary")?,
    })
}

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
        Ok(self.calendar_revisions(calendar).await?.into_iter().next())
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
        let next = "SELECT COALESCE(MAX(revision), 0) + 1 AS next FROM calendar_revisions \
                    WHERE calendar = $1";
        let insert = format!(
            "INSERT INTO calendar_revisions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             NULL, NULL)"
        );
        let revision: i64 = on_pool!(self, next, |pool, q| {
            let mut tx = pool.begin().await?;
            let revision: i64 = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(calendar)
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
            let ins = on_pool!(self, &insert, |_p, i| i.into_owned());
            sqlx::query(sqlx::AssertSqlSafe(ins))
                .bind(calendar)
                .bind(revision)
                .bind(yaml)
                .bind(hash)
                .bind(origin)
                .bind(detail)
                .bind(by)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            revision
        });
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
