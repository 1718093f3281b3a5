-- The server's own tables (users, API tokens, UI sessions, projects, the HTTP audit trail, report
-- runs, colour snapshots; see web/src/server/accounts.rs), created here under the migration lock
-- like every other table. Until this migration each node created them itself at start, outside
-- the lock, and two nodes starting together on an empty PostgreSQL database could collide in its
-- catalog. A database those nodes already set up has them: `IF NOT EXISTS` leaves them as they are.
-- The same text on both backends: `BIGINT` times in milliseconds, JSON as `TEXT`.
CREATE TABLE IF NOT EXISTS web_users (
    name          TEXT   PRIMARY KEY,
    department    TEXT,
    roles         TEXT   NOT NULL,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_tokens (
    hash       TEXT   PRIMARY KEY,
    user_name  TEXT   NOT NULL,
    label      TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_sessions (
    hash       TEXT   PRIMARY KEY,
    user_name  TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_projects (
    id          TEXT   PRIMARY KEY,
    name        TEXT   NOT NULL,
    workflow_id TEXT   NOT NULL,
    owner       TEXT   NOT NULL,
    fields      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_project_instances (
    instance    TEXT   PRIMARY KEY,
    project_id  TEXT   NOT NULL,
    workflow_id TEXT   NOT NULL,
    def_version BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS web_project_instances_project ON web_project_instances (project_id);
CREATE TABLE IF NOT EXISTS web_audit (
    id        TEXT   PRIMARY KEY,
    at        BIGINT NOT NULL,
    user_name TEXT   NOT NULL,
    remote    TEXT,
    action    TEXT   NOT NULL,
    instance  TEXT,
    outcome   TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS web_audit_instance ON web_audit (instance, at);
CREATE TABLE IF NOT EXISTS web_reports (
    id         TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    body       TEXT   NOT NULL
);
CREATE TABLE IF NOT EXISTS web_colour_snapshots (
    at     BIGINT PRIMARY KEY,
    green  BIGINT NOT NULL,
    yellow BIGINT NOT NULL,
    red    BIGINT NOT NULL
);
