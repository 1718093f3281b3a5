-- Timers are claimed by instance (see `claim_due` in adapters/src/store/postgres.rs): a node takes
-- all due timers of the instances it picks and skips instances another node holds a live claim
-- on. These two partial indexes answer "the due open timers of this instance" and "the claims on
-- this instance" without reading every timer the instance ever had: they hold open (resp.
-- claimed) rows only, so fired and cancelled timers cost them nothing.
CREATE INDEX timers_open_instance ON timers (instance, due) WHERE state IN ('pending', 'claimed');
CREATE INDEX timers_claimed_instance ON timers (instance) WHERE state = 'claimed';
