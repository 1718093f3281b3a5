-- Timers are claimed by instance (see `claim_due` in adapters/src/store/sqlite.rs): a node skips
-- instances another node holds a live claim on. This partial index answers "the claims on this
-- instance" without reading every timer the instance ever had; it holds claimed rows only, a
-- handful at any time.
CREATE INDEX timers_claimed_instance ON timers (instance) WHERE state = 'claimed';
