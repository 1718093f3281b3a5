-- The message centre's read marks (a notification is an outbox row; a person reads it once),
-- and the demo clock's offset from the wall clock, kept so that a restarted demo never turns
-- its clock back and an admin's moves forward persist.
CREATE TABLE IF NOT EXISTS web_message_reads (
    user_name  TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    read_at    BIGINT  NOT NULL,
    PRIMARY KEY (user_name, message_id)
);
CREATE TABLE IF NOT EXISTS web_demo_clock (
    id         INTEGER PRIMARY KEY,
    offset_ms  BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
