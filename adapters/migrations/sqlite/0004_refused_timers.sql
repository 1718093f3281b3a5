-- A timer whose firing the engine refuses is not marked fired: it stays open (`pending`) with the
-- refusal recorded, held back from the scheduler until `retry_at` (see docs/durable.md, "Refused
-- timers"). There is no 0003 here: 0003 was PostgreSQL's write-path change; this one carries the
-- same number on both backends.
--
-- refused_code, refused_message, refused_at: the last refusal (kept until the timer is re-armed;
-- a timer later fired keeps it as history). retry_at: when the scheduler may try it again; NULL
-- means claimable when due. Claims read only rows with `retry_at IS NULL`, so held timers cost the
-- scheduler's scan nothing however many there are.
ALTER TABLE timers ADD COLUMN refused_code TEXT;
ALTER TABLE timers ADD COLUMN refused_message TEXT;
ALTER TABLE timers ADD COLUMN refused_at INTEGER;
ALTER TABLE timers ADD COLUMN retry_at INTEGER;

DROP INDEX timers_open_due;
CREATE INDEX timers_open_due ON timers (due)
    WHERE state IN ('pending', 'claimed') AND retry_at IS NULL;
-- The held timers, for the sweep that lets them be tried again.
CREATE INDEX timers_held ON timers (retry_at) WHERE retry_at IS NOT NULL;
