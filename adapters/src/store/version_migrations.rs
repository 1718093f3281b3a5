//! Migrations (迁移) as data: each run of a migration of running instances from one version of
//! a workflow to another, who asked for it and what became of each instance; and the running
//! instances a migration looks at.
//!
//! One SQL text serves both backends (PostgreSQL's `$n` placeholders become SQLite's `?n`), as
//! in [`super::calendars`].

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::dialect::{on_pool, row_reader};
use super::{Db, Millis, Result};

/// One run of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRow {
    pub id: String,
    pub workflow_id: String,
    pub from_version: i64,
    pub to_version: i64,
    /// The mapping asked (JSON `{nodes, stages}`).
    pub mapping: String,
    pub requested_by: String,
    pub started_at: Millis,
    /// `None` while the run is under way (or was interrupted: running it again with the same id
    /// finishes it, each instance's move being keyed).
    pub finished_at: Option<Millis>,
    pub moved: i64,
    pub blocked: i64,
    pub failed: i64,
    /// What became of each instance (JSON), once finished.
    pub result: Option<String>,
}

const COLUMNS: &str = "id, workflow_id, from_version, to_version, mapping, requested_by, \
                       started_at, finished_at, moved, blocked, failed, result";

row_reader!(fn row_of -> MigrationRow { id, workflow_id, from_version, to_version, mapping, requested_by, started_at, finished_at, moved, blocked, failed, result });

impl Db {
    /// The running instances of a workflow version, by id.
    pub async fn running_instances_on(&self, workflow: &str, version: i64) -> Result<Vec<String>> {
        let sql = "SELECT id FROM instances WHERE workflow_id = $1 AND def_version = $2 \
                   AND status = 'running' ORDER BY id";
        on_pool!(self, sql, |pool, q| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(workflow)
                .bind(version)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }

    /// Records that a migration run starts (or, for an id already recorded, nothing: a run
    /// asked again goes on under its first record). Returns whether the row is new.
    pub async fn start_migration(&self, m: &MigrationRow) -> Result<bool> {
        let sql = format!(
            "INSERT INTO version_migrations ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, 0, 0, NULL) ON CONFLICT DO NOTHING"
        );
        on_pool!(self, &sql, |pool, q| {
            let done = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(&m.id)
                .bind(&m.workflow_id)
                .bind(m.from_version)
                .bind(m.to_version)
                .bind(&m.mapping)
                .bind(&m.requested_by)
                .bind(m.started_at)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records how a migration run ended.
    pub async fn finish_migration(
        &self,
        id: &str,
        finished_at: Millis,
        (moved, blocked, failed): (i64, i64, i64),
        result: &str,
    ) -> Result<()> {
        let sql = "UPDATE version_migrations SET finished_at = $2, moved = $3, blocked = $4, \
                   failed = $5, result = $6 WHERE id = $1";
        on_pool!(self, sql, |pool, q| {
            sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(id)
                .bind(finished_at)
                .bind(moved)
                .bind(blocked)
                .bind(failed)
                .bind(result)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// One migration run.
    pub async fn migration(&self, id: &str) -> Result<Option<MigrationRow>> {
        let sql = format!("SELECT {COLUMNS} FROM version_migrations WHERE id = $1");
        on_pool!(self, &sql, |pool, q| {
            let row = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(row_of).transpose()?)
        })
    }

    /// The migration runs of a workflow, the newest first.
    pub async fn migrations_of(&self, workflow: &str, limit: i64) -> Result<Vec<MigrationRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM version_migrations WHERE workflow_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        on_pool!(self, &sql, |pool, q| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(q.into_owned()))
                .bind(workflow)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(row_of)
                .collect::<std::result::Result<Vec<_>, _>>()?)
        })
    }
}
