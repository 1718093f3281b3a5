-- The event hash chain (docs/adr/0009-event-hash-chain.md, `store/chain.rs`): every event stores
-- the hash of the one before it and its own, the instance row the last one (its head). Written
-- by each group commit in the events' own transaction.
ALTER TABLE events ADD COLUMN prev_hash TEXT;
ALTER TABLE events ADD COLUMN hash TEXT;
ALTER TABLE instances ADD COLUMN head_hash TEXT;
-- The events not chained yet: those written before this migration, until the chaining step that
-- runs after it (`chain::backfill`) has chained them. Empty afterwards, so it costs a commit
-- nothing.
CREATE INDEX events_unchained ON events (instance) WHERE hash IS NULL;
-- Whether that step has chained every history written before this migration (done = 1); after
-- that an event without a hash is a broken chain, not one to chain.
CREATE TABLE event_chain_backfill (
    id   BIGINT PRIMARY KEY,
    done BIGINT NOT NULL
);
INSERT INTO event_chain_backfill (id, done) VALUES (1, 0);
