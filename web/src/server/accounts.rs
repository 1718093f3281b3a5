//! The server's own tables: users, API tokens, UI sessions, projects, the HTTP audit trail,
//! report runs and colour snapshots for the dashboard chart.
//!
//! They live in the same database as the durable runtime's tables (prefixed `web_`) and are
//! created by its migrations (`adapters/migrations/shared/0006_server_tables.sql`), under the
//! migration lock, so that nodes starting together on an empty database do not race to create
//! them. Every statement is written once and runs on both backends (`$1` placeholders, `BIGINT`
//! times in milliseconds, JSON as text) through [`on_pool!`].
//!
//! Secrets are never stored: passwords as argon2id PHC strings (made and checked in
//! `passwords`), tokens and session ids as their SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shenpi_adapters::store::Db;
use sqlx::Row;
use utoipa::ToSchema;

/// The two pools, borrowed from the runtime's store.
#[derive(Clone, Debug)]
pub enum Pools {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

/// Runs the same code on whichever pool is in use; the body is compiled once per backend.
macro_rules! on_pool {
    ($pools:expr, |$p:ident| $body:expr) => {
        match $pools {
            Pools::Sqlite($p) => $body,
            Pools::Pg($p) => $body,
        }
    };
}

/// Runs one statement, its parameters bound in order, on whichever pool is in use.
macro_rules! execute {
    ($pools:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        on_pool!($pools, |p| sqlx::query($sql)$(.bind($arg))*.execute(p).await.map(|_| ()))
    };
}

/// The roles the server itself knows; workflow roles (`fgw_intake` ...) are free-form beside them.
pub const SYSTEM_ROLES: &[&str] = &[
    "applicant",
    "service_officer",
    "approver",
    "supervisor",
    "policy_staff",
    "admin",
];

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("user `{0}` does not exist")]
    NoSuchUser(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = AccountError> = std::result::Result<T, E>;

/// A user as the server sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub name: String,
    pub department: Option<String>,
    /// System roles (`applicant`, `approver`, `supervisor`, `policy_staff`, `admin`,
    /// `service_officer`) and workflow roles (`fgw_intake` ...).
    pub roles: Vec<String>,
}

impl User {
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the user works for the administration (anyone but a pure applicant).
    pub fn is_staff(&self) -> bool {
        self.roles.iter().any(|r| r != "applicant")
    }

    pub fn actor(&self) -> shenpi_engine::runtime::Actor {
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        shenpi_engine::runtime::Actor::new(&self.name, self.department.as_deref(), &roles)
    }
}

/// A project record (项目): what an applicant registers before an instance runs on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub workflow_id: String,
    /// The applicant (项目单位) who registered it.
    pub owner: String,
    /// The project's field values (`tier`, `investment` ...), as the workflow declares them.
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
    pub created_at: i64,
    /// Instances started on it, newest last.
    pub instances: Vec<String>,
}

impl Project {
    /// Whom the project is for, as documents address it and lists show it: its `enterprise`
    /// field (项目单位), else the account that registered it.
    pub fn applicant(&self) -> &str {
        self.fields
            .get("enterprise")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.owner)
    }
}

/// A session looked up from its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub at: i64,
    pub user: String,
    pub remote: Option<String>,
    pub action: String,
    pub instance: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportRun {
    pub id: String,
    pub kind: String,
    pub created_at: i64,
    pub created_by: String,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// Random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| AccountError::Random(e.to_string()))?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The stored form of a token or session id.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn parse_roles(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| AccountError::Corrupt(format!("roles: {e}")))
}

#[derive(Clone, Debug)]
pub struct Accounts {
    pools: Pools,
}

impl Accounts {
    pub fn new(db: &Db) -> Accounts {
        let pools = match db {
            Db::Sqlite(s) => Pools::Sqlite(s.pool().clone()),
            Db::Postgres(p) => Pools::Pg(p.pool().clone()),
        };
        Accounts { pools }
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Creates or replaces a user (department, roles, password).
    pub async fn upsert_user(&self, user: &User, password: Option<&str>, now: i64) -> Result<()> {
        let hash = match password {
            Some(p) => {
                Some(super::passwords::hash(p).map_err(|e| AccountError::Hash(e.to_string()))?)
            }
            None => None,
        };
        let roles = serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".into());
        let sql = "INSERT INTO web_users (name, department, roles, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (name) DO UPDATE SET department = excluded.department, roles = excluded.roles, \
                   password_hash = COALESCE(excluded.password_hash, web_users.password_hash)";
        execute!(
            &self.pools,
            sql,
            &user.name,
            &user.department,
            &roles,
            &hash,
            now
        )?;
        Ok(())
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self.user_with_hash(name).await?.map(|(u, _)| u))
    }

    /// The user and their stored password hash (`None` for a token-only user), for a login
    /// to check on `passwords::Hasher`.
    pub async fn user_with_hash(&self, name: &str) -> Result<Option<(User, Option<String>)>> {
        let sql = "SELECT name, department, roles, password_hash FROM web_users WHERE name = $1";
        let row = on_pool!(&self.pools, |p| {
            match sqlx::query(sql).bind(name).fetch_optional(p).await? {
                Some(r) => Some((
                    r.try_get::<String, _>(0)?,
                    r.try_get::<Option<String>, _>(1)?,
                    r.try_get::<String, _>(2)?,
                    r.try_get::<Option<String>, _>(3)?,
                )),
                None => None,
            }
        });
        match row {
            Some((name, department, roles, hash)) => Ok(Some((
                User {
                    name,
                    department,
                    roles: parse_roles(&roles)?,
                },
                hash,
            ))),
            None => Ok(None),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let sql = "SELECT name, department, roles FROM web_users ORDER BY name";
        let rows: Vec<(String, Option<String>, String)> = on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).fetch_all(p).await? {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
            out
        });
        rows.into_iter()
            .map(|(name, department, roles)| {
                Ok(User {
                    name,
                    department,
                    roles: parse_roles(&roles)?,
                })
            })
            .collect()
    }

    /// The message-centre messages (outbox row ids) among `ids` that `user` has read.
    pub async fn read_messages(&self, user: &str, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT message_id FROM web_message_reads WHERE user_name = $1";
        let read: Vec<String> = on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(user).fetch_all(p).await? {
                out.push(r.try_get::<String, _>(0)?);
            }
            out
        });
        Ok(read.into_iter().filter(|id| ids.contains(id)).collect())
    }

    /// Marks messages read by `user` (already read ones keep their first time).
    pub async fn mark_read(&self, user: &str, ids: &[String], now: i64) -> Result<()> {
        let sql = "INSERT INTO web_message_reads (user_name, message_id, read_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (user_name, message_id) DO NOTHING";
        for id in ids {
            execute!(&self.pools, sql, user, id, now)?;
        }
        Ok(())
    }

    /// Moves every session's end `by` ms later: the demo's clock went forward by as much, and
    /// a session is counted on that clock, so nobody is logged out by a move of the clock.
    pub async fn shift_sessions(&self, by: i64) -> Result<()> {
        let sql = "UPDATE web_sessions SET expires_at = expires_at + $1";
        execute!(&self.pools, sql, by)?;
        Ok(())
    }

    /// The demo clock's stored offset from the wall clock (ms), if a demo ran on this database.
    pub async fn demo_clock_offset(&self) -> Result<Option<i64>> {
        let sql = "SELECT offset_ms FROM web_demo_clock WHERE id = 1";
        Ok(on_pool!(&self.pools, |p| {
            match sqlx::query(sql).fetch_optional(p).await? {
                Some(r) => Some(r.try_get::<i64, _>(0)?),
                None => None,
            }
        }))
    }

    /// Stores the demo clock's offset; a smaller one than stored is ignored (the clock never
    /// goes back).
    pub async fn save_demo_clock_offset(&self, offset: i64, now: i64) -> Result<()> {
        let sql = "INSERT INTO web_demo_clock (id, offset_ms, updated_at) VALUES (1, $1, $2) \
                   ON CONFLICT (id) DO UPDATE SET offset_ms = excluded.offset_ms, updated_at = excluded.updated_at \
                   WHERE excluded.offset_ms > web_demo_clock.offset_ms";
        execute!(&self.pools, sql, offset, now)?;
        Ok(())
    }

    /// Creates an API token for a user; returns the secret (shown once).
    pub async fn create_token(&self, name: &str, label: Option<&str>, now: i64) -> Result<String> {
        if self.user(name).await?.is_none() {
            return Err(AccountError::NoSuchUser(name.to_string()));
        }
        let secret = format!("sp_{}", random_hex(24)?);
        let sql =
            "INSERT INTO web_tokens (hash, user_name, label, created_at) VALUES ($1, $2, $3, $4)";
        execute!(&self.pools, sql, secret_hash(&secret), name, label, now)?;
        Ok(secret)
    }

    pub async fn token_user(&self, secret: &str) -> Result<Option<User>> {
        let sql = "SELECT user_name FROM web_tokens WHERE hash = $1";
        let name: Option<String> = on_pool!(&self.pools, |p| {
            match sqlx::query(sql)
                .bind(secret_hash(secret))
                .fetch_optional(p)
                .await?
            {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            }
        });
        match name {
            Some(n) => self.user(&n).await,
            None => Ok(None),
        }
    }

    /// Opens a UI session; returns (session secret for the cookie, CSRF token).
    pub async fn create_session(
        &self,
        name: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(String, String)> {
        let secret = random_hex(32)?;
        let csrf = random_hex(16)?;
        let sql =
            "INSERT INTO web_sessions (hash, user_name, csrf, expires_at) VALUES ($1, $2, $3, $4)";
        execute!(
            &self.pools,
            sql,
            secret_hash(&secret),
            name,
            &csrf,
            now + ttl_ms
        )?;
        Ok((secret, csrf))
    }

    pub async fn session(&self, secret: &str, now: i64) -> Result<Option<Session>> {
        let sql = "SELECT user_name, csrf FROM web_sessions WHERE hash = $1 AND expires_at > $2";
        let row: Option<(String, String)> = on_pool!(&self.pools, |p| {
            match sqlx::query(sql)
                .bind(secret_hash(secret))
                .bind(now)
                .fetch_optional(p)
                .await?
            {
                Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
                None => None,
            }
        });
        let Some((name, csrf)) = row else {
            return Ok(None);
        };
        Ok(self.user(&name).await?.map(|user| Session { user, csrf }))
    }

    pub async fn end_session(&self, secret: &str) -> Result<()> {
        let sql = "DELETE FROM web_sessions WHERE hash = $1";
        execute!(&self.pools, sql, secret_hash(secret))?;
        Ok(())
    }

    pub async fn create_project(&self, p: &Project) -> Result<()> {
        let sql = "INSERT INTO web_projects (id, name, workflow_id, owner, fields, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        let fields = p.fields.to_string();
        on_pool!(&self.pools, |pool| sqlx::query(sql)
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.workflow_id)
            .bind(&p.owner)
            .bind(&fields)
            .bind(p.created_at)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    pub async fn link_instance(
        &self,
        instance: &str,
        project: &str,
        workflow: &str,
        version: i64,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO web_project_instances (instance, project_id, workflow_id, def_version, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance) DO NOTHING";
        execute!(&self.pools, sql, instance, project, workflow, version, now)?;
        Ok(())
    }

    /// Projects, newest first; `owner` limits to one applicant's, `q` searches name and id.
    pub async fn projects(
        &self,
        owner: Option<&str>,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Project>> {
        let like = q.map(|q| format!("%{}%", q.replace(['%', '_'], "")));
        let sql = "SELECT id, name, workflow_id, owner, fields, created_at FROM web_projects \
                   WHERE ($1 IS NULL OR owner = $1) AND ($2 IS NULL OR name LIKE $2 OR id LIKE $2) \
                   ORDER BY created_at DESC, id DESC LIMIT $3";
        let sql_pg = "SELECT id, name, workflow_id, owner, fields, created_at FROM web_projects \
                   WHERE ($1::TEXT IS NULL OR owner = $1) AND ($2::TEXT IS NULL OR name LIKE $2 OR id LIKE $2) \
                   ORDER BY created_at DESC, id DESC LIMIT $3";
        type Row = (String, String, String, String, String, i64);
        let rows: Vec<Row> = match &self.pools {
            Pools::Sqlite(p) => {
                sqlx::query_as::<_, Row>(sql)
                    .bind(owner)
                    .bind(&like)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            Pools::Pg(p) => {
                sqlx::query_as::<_, Row>(sql_pg)
                    .bind(owner)
                    .bind(&like)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, name, workflow_id, owner, fields, created_at) in rows {
            let instances = self.instances_of(&id).await?;
            out.push(Project {
                id,
                name,
                workflow_id,
                owner,
                fields: serde_json::from_str(&fields).unwrap_or(serde_json::Value::Null),
                created_at,
                instances,
            });
        }
        Ok(out)
    }

    pub async fn project(&self, id: &str) -> Result<Option<Project>> {
        let sql = "SELECT id, name, workflow_id, owner, fields, created_at FROM web_projects WHERE id = $1";
        let row: Option<(String, String, String, String, String, i64)> =
            on_pool!(&self.pools, |p| {
                match sqlx::query(sql).bind(id).fetch_optional(p).await? {
                    Some(r) => Some((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    )),
                    None => None,
                }
            });
        let Some((id, name, workflow_id, owner, fields, created_at)) = row else {
            return Ok(None);
        };
        let instances = self.instances_of(&id).await?;
        Ok(Some(Project {
            id,
            name,
            workflow_id,
            owner,
            fields: serde_json::from_str(&fields).unwrap_or(serde_json::Value::Null),
            created_at,
            instances,
        }))
    }

    async fn instances_of(&self, project: &str) -> Result<Vec<String>> {
        let sql = "SELECT instance FROM web_project_instances WHERE project_id = $1 ORDER BY created_at, instance";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(project).fetch_all(p).await? {
                out.push(r.try_get::<String, _>(0)?);
            }
            out
        }))
    }

    /// The project an instance runs for.
    pub async fn project_of(&self, instance: &str) -> Result<Option<Project>> {
        let sql = "SELECT project_id FROM web_project_instances WHERE instance = $1";
        let id: Option<String> = on_pool!(&self.pools, |p| {
            match sqlx::query(sql).bind(instance).fetch_optional(p).await? {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            }
        });
        match id {
            Some(id) => self.project(&id).await,
            None => Ok(None),
        }
    }

    /// Writes a batch of audit entries (the audit writer calls this every few hundred ms).
    pub async fn write_audit(&self, entries: &[(String, AuditEntry)]) -> Result<()> {
        let sql = "INSERT INTO web_audit (id, at, user_name, remote, action, instance, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
        on_pool!(&self.pools, |p| {
            let mut tx = p.begin().await?;
            for (id, e) in entries {
                sqlx::query(sql)
                    .bind(id)
                    .bind(e.at)
                    .bind(&e.user)
                    .bind(&e.remote)
                    .bind(&e.action)
                    .bind(&e.instance)
                    .bind(&e.outcome)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn audit_of(&self, instance: &str) -> Result<Vec<AuditEntry>> {
        let sql = "SELECT at, user_name, remote, action, instance, outcome FROM web_audit WHERE instance = $1 ORDER BY at, id";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(instance).fetch_all(p).await? {
                out.push(AuditEntry {
                    at: r.try_get(0)?,
                    user: r.try_get(1)?,
                    remote: r.try_get(2)?,
                    action: r.try_get(3)?,
                    instance: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                });
            }
            out
        }))
    }

    /// What `user` decided on tasks (the audit trail's successful task actions), newest first,
    /// one entry per instance: the 已办 tab of the inbox.
    pub async fn done_by(&self, user: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        let sql = "SELECT at, user_name, remote, action, instance, outcome FROM web_audit \
                   WHERE user_name = $1 AND outcome = 'ok' AND instance IS NOT NULL \
                   AND action IN ('approve', 'reject', 'return', 'approve_conditional', 'verify_material', 'delegate', 'add_cosigner') \
                   ORDER BY at DESC LIMIT $2";
        let rows: Vec<AuditEntry> = on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(user).bind(limit).fetch_all(p).await? {
                out.push(AuditEntry {
                    at: r.try_get(0)?,
                    user: r.try_get(1)?,
                    remote: r.try_get(2)?,
                    action: r.try_get(3)?,
                    instance: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                });
            }
            out
        });
        let mut seen: Vec<String> = Vec::new();
        Ok(rows
            .into_iter()
            .filter(|e| match &e.instance {
                Some(i) if !seen.contains(i) => {
                    seen.push(i.clone());
                    true
                }
                _ => false,
            })
            .collect())
    }

    pub async fn save_report(&self, r: &ReportRun) -> Result<()> {
        let sql = "INSERT INTO web_reports (id, kind, created_at, created_by, body) VALUES ($1, $2, $3, $4, $5)";
        let body = r.body.to_string();
        execute!(
            &self.pools,
            sql,
            &r.id,
            &r.kind,
            r.created_at,
            &r.created_by,
            &body
        )?;
        Ok(())
    }

    pub async fn reports(&self, limit: i64) -> Result<Vec<ReportRun>> {
        let sql = "SELECT id, kind, created_at, created_by, body FROM web_reports ORDER BY created_at DESC, id DESC LIMIT $1";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(limit).fetch_all(p).await? {
                let body: String = r.try_get(4)?;
                out.push(ReportRun {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    created_by: r.try_get(3)?,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                });
            }
            out
        }))
    }

    pub async fn snapshot_colours(&self, at: i64, g: i64, y: i64, r: i64) -> Result<()> {
        let sql = "INSERT INTO web_colour_snapshots (at, green, yellow, red) VALUES ($1, $2, $3, $4) ON CONFLICT (at) DO NOTHING";
        execute!(&self.pools, sql, at, g, y, r)?;
        Ok(())
    }

    /// Colour snapshots since `from`, oldest first: (at, green, yellow, red).
    pub async fn colour_history(&self, from: i64) -> Result<Vec<(i64, i64, i64, i64)>> {
        let sql =
            "SELECT at, green, yellow, red FROM web_colour_snapshots WHERE at >= $1 ORDER BY at";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(from).fetch_all(p).await? {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
            out
        }))
    }

    /// Count of rows in an outbox state, and of due open timers (for `/metrics`).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).fetch_all(p).await? {
                out.push((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?));
            }
            out
        }))
    }

    pub async fn timers_due(&self, now: i64) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM timers WHERE state IN ('pending', 'claimed') AND due <= $1";
        Ok(on_pool!(&self.pools, |p| {
            sqlx::query(sql)
                .bind(now)
                .fetch_one(p)
                .await?
                .try_get::<i64, _>(0)?
        }))
    }

    /// Instances with their project, newest first (for lists and the dashboard).
    pub async fn instance_ids(&self, limit: i64) -> Result<Vec<(String, String, String)>> {
        let sql = "SELECT instance, project_id, workflow_id FROM web_project_instances ORDER BY created_at DESC, instance DESC LIMIT $1";
        Ok(on_pool!(&self.pools, |p| {
            let mut out = Vec::new();
            for r in sqlx::query(sql).bind(limit).fetch_all(p).await? {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
            out
        }))
    }
}
