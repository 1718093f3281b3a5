-- The write path, measured: on every commit PostgreSQL parsed each event body and outbox payload
-- into JSONB, and compared key text through the database's locale collation (C.UTF-8 here, which
-- is not PostgreSQL's byte-wise fast path).

-- `json` keeps the text as it is (still checked to be JSON); bodies and payloads are read back
-- whole, and `->` / `->>` still work for the reports.
ALTER TABLE events ALTER COLUMN body TYPE json USING body::json;
ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json;

-- Identifiers are compared byte by byte: they are keys, not words to sort for a reader.
ALTER TABLE instances ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE events ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE timers ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE timers ALTER COLUMN timer_id TYPE text COLLATE "C";
ALTER TABLE outbox ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE outbox ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE idempotency ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE idempotency ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE inbox ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE inbox ALTER COLUMN task_id TYPE text COLLATE "C";
ALTER TABLE inbox ALTER COLUMN assignee TYPE text COLLATE "C";
ALTER TABLE inbox ALTER COLUMN department TYPE text COLLATE "C";
ALTER TABLE promises ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE promises ALTER COLUMN promise_id TYPE text COLLATE "C";
ALTER TABLE elements ALTER COLUMN instance TYPE text COLLATE "C";
