-- Every stored event records the format its body was written in (`engine::runtime::EVENT_FORMAT`),
-- so that a later version of the engine reads an old history through its upcasters instead of
-- misreading it (see docs/durable.md, "Stored event format"). Every event stored before this
-- column existed was written in format 1.
ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
