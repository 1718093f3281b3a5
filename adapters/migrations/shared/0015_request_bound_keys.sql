-- An idempotency key is bound to the request it was first used with: a digest of the
-- instance and the command (the key itself is already in its user's space). A key stored
-- before this change has none and is matched by the key alone, as it was.
ALTER TABLE idempotency ADD COLUMN request TEXT;
