-- Where each published version came from: a file of the workflows folder (its path inside the
-- folder; its SHA-256 is `hash`), or the editor or the API (the user). Versions published before
-- this column existed have no source recorded (NULL).
ALTER TABLE definitions ADD COLUMN source TEXT;
ALTER TABLE definitions ADD COLUMN source_path TEXT;
ALTER TABLE definitions ADD COLUMN published_by TEXT;

-- Migrations (迁移) of running instances from one version of a workflow to another: what was
-- asked, by whom, and what became of each instance (JSON), written when the run ends.
CREATE TABLE version_migrations (
    id           TEXT    PRIMARY KEY,
    workflow_id  TEXT    NOT NULL,
    from_version INTEGER NOT NULL,
    to_version   INTEGER NOT NULL,
    mapping      TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    moved        INTEGER NOT NULL DEFAULT 0,
    blocked      INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    result       TEXT
);
CREATE INDEX version_migrations_by_workflow ON version_migrations (workflow_id, started_at);
