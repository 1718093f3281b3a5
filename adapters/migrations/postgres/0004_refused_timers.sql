-- A timer whose firing the engine refuses is not marked fired: it stays open (`pending`) with the
-- refusal recorded, held back from the scheduler until `retry_at` (see docs/durable.md, "Refused
-- timers"). The SQLite file of the same number makes the same change.
--
-- refused_code, refused_message, refused_at: the last refusal (kept until the timer is re-armed;
-- a timer later fired keeps it as history). retry_at: when the scheduler may try it again; NULL
-- means claimable when due. The claim's indexes hold only rows with `retry_at IS NULL`, so held
-- timers cost the scheduler's scan nothing however many there are.
ALTER TABLE timers
    ADD COLUMN refused_code TEXT,
    ADD COLUMN refused_message TEXT,
    ADD COLUMN refused_at BIGINT,
    ADD COLUMN retry_at BIGINT;

DROP INDEX timers_open_due;
CREATE INDEX timers_open_due ON timers (due)
    WHERE state IN ('pending', 'claimed') AND retry_at IS NULL;
DROP INDEX timers_open_instance;
CREATE INDEX timers_open_instance ON timers (instance, due)
    WHERE state IN ('pending', 'claimed') AND retry_at IS NULL;
-- The held timers, for the sweep that lets them be tried again.
CREATE INDEX timers_held ON timers (retry_at) WHERE retry_at IS NOT NULL;
