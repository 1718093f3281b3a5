-- Working-day calendars as data: every published revision of every calendar, the files under
-- `workflows/calendars/` seed it (see docs/durable.md, "Calendar revisions").
--
-- origin: `file` (detail = the file's path) or `import` (detail = how: `cli` or `editor`).
-- retimed_at: NULL until every open instance's timers were re-timed on this revision; summary is
-- then the JSON the re-timing kept (instances, clocks moved, by how many days).
CREATE TABLE calendar_revisions (
    calendar      TEXT    NOT NULL,
    revision      BIGINT  NOT NULL,
    yaml          TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    origin        TEXT    NOT NULL,
    origin_detail TEXT    NOT NULL,
    published_by  TEXT    NOT NULL,
    published_at  BIGINT  NOT NULL,
    retimed_at    BIGINT,
    summary       TEXT,
    PRIMARY KEY (calendar, revision)
);
