-- Every party an open task is addressed to (`engine::runtime::policy::addressees`: the assignee,
-- then each delegate), as a JSON array of `user:NAME`, `role:ID`, `dept:ID`: an inbox shows a
-- row to whoever is one of them (`addressees ?| $1`, which the GIN index answers). Rows written
-- before this column get their assignee; a task delegated before it reaches its delegates once
-- its instance next changes (the projection is written again then).
ALTER TABLE inbox ADD COLUMN addressees JSONB NOT NULL DEFAULT '[]';
UPDATE inbox SET addressees = jsonb_build_array(assignee) WHERE assignee IS NOT NULL;
CREATE INDEX inbox_addressees ON inbox USING gin (addressees);
