-- shenpi durable schema, PostgreSQL flavour. Times are BIGINT milliseconds since the Unix epoch (UTC);
-- JSON is JSONB. The SQLite file beside this one has the same tables, columns and keys.

-- Published workflow versions. A running instance keeps the version it started on.
CREATE TABLE definitions (
    workflow_id  TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    yaml         TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

-- One row per instance; `version` is the number of events recorded (the optimistic-concurrency guard).
CREATE TABLE instances (
    id          TEXT    PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    def_version BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    project     JSONB   NOT NULL,
    status      TEXT    NOT NULL,
    stage       TEXT,
    channel     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX instances_status ON instances (workflow_id, status);

-- Append-only event log; (instance, seq) unique is what makes a stale writer fail.
CREATE TABLE events (
    instance    TEXT    NOT NULL,
    seq         BIGINT NOT NULL,
    type        TEXT    NOT NULL,
    body        JSONB   NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (instance, seq)
);

-- Timers armed by events. state: pending | claimed | fired | cancelled.
CREATE TABLE timers (
    instance    TEXT    NOT NULL,
    timer_id    TEXT    NOT NULL,
    due         BIGINT NOT NULL,
    kind        TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',
    claimed_by  TEXT,
    lease_until BIGINT,
    fired_at    BIGINT,
    PRIMARY KEY (instance, timer_id)
);
-- Only open timers are indexed, so the scheduler's scan stays small however many have fired.
CREATE INDEX timers_open_due ON timers (due) WHERE state IN ('pending', 'claimed');

-- Notifications to deliver. state: pending | sending | delivered | dead (dead-lettered).
CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,
    instance        TEXT,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    template        TEXT    NOT NULL,
    payload         JSONB   NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    tries           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX outbox_open ON outbox (next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_dead ON outbox (created_at) WHERE state = 'dead';

-- Idempotency keys: the result a command got, returned again for the same key.
CREATE TABLE idempotency (
    key        TEXT    PRIMARY KEY,
    instance   TEXT    NOT NULL,
    result     JSONB   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Projection: open tasks, for inboxes and the dashboard.
CREATE TABLE inbox (
    instance    TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    workflow_id TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    stage       TEXT,
    assignee    TEXT,
    department  TEXT,
    colour      TEXT    NOT NULL,
    due         BIGINT,
    priority    BIGINT NOT NULL,
    supervised  BOOLEAN NOT NULL DEFAULT false,
    opened_at   BIGINT NOT NULL,
    PRIMARY KEY (instance, task_id)
);
CREATE INDEX inbox_assignee ON inbox (assignee, priority DESC, due);
CREATE INDEX inbox_department ON inbox (department, priority DESC, due);
CREATE INDEX inbox_due ON inbox (due);

-- Projection: 容缺 commitments.
CREATE TABLE promises (
    instance   TEXT    NOT NULL,
    promise_id TEXT    NOT NULL,
    material   TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    colour     TEXT    NOT NULL,
    due        BIGINT,
    PRIMARY KEY (instance, promise_id)
);
CREATE INDEX promises_due ON promises (due);

-- Projection: elements attached (or owed) per stage.
CREATE TABLE elements (
    instance   TEXT NOT NULL,
    stage      TEXT NOT NULL,
    element    TEXT NOT NULL,
    department TEXT,
    state      TEXT NOT NULL,
    due        BIGINT,
    PRIMARY KEY (instance, stage, element)
);

-- One row per report run: the primary key makes a scheduled report run once across nodes.
CREATE TABLE report_runs (
    report       TEXT    NOT NULL,
    scheduled_at BIGINT NOT NULL,
    node         TEXT    NOT NULL,
    ran_at       BIGINT NOT NULL,
    PRIMARY KEY (report, scheduled_at)
);
