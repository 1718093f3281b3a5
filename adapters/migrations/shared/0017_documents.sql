-- Official documents (公文: 预批复, 批复, 备案证明, 不予许可决定书, 撤销决定), numbered per workflow
-- and year without gaps. A document's row and its counter's increment are written in one
-- transaction (`store::documents`): a number is taken only by a document that is stored, and two
-- issuers never take the same one. The same text on both backends: `BIGINT` times in
-- milliseconds since the epoch.
CREATE TABLE document_counters (
    workflow_id TEXT   NOT NULL,
    year        BIGINT NOT NULL,
    last        BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, year)
);
-- `occasion` says why the document was issued (`end`, `pre_approval/0`, `revocation/0`): one
-- document per instance and occasion, so an issuing pass run twice (after a commit, and by a
-- sweep) issues it once. `sha256` is the digest of the document's canonical content (see
-- `store::documents::canonical`); `chain_head` is the instance's event-chain head at issue,
-- filled once events are chained (NULL until then). A revoked document keeps its row:
-- `revoked_at` and the 撤销决定 that revoked it (`revoked_by`, a document id, NULL when the
-- workflow declares none).
CREATE TABLE documents (
    id          TEXT   PRIMARY KEY,
    instance    TEXT   NOT NULL,
    occasion    TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    title       TEXT   NOT NULL,
    workflow_id TEXT   NOT NULL,
    year        BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    number      TEXT   NOT NULL,
    issuer      TEXT   NOT NULL,
    project     TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    issued_at   BIGINT NOT NULL,
    verify_code TEXT   NOT NULL UNIQUE,
    sha256      TEXT   NOT NULL,
    chain_head  TEXT,
    revoked_at  BIGINT,
    revoked_by  TEXT,
    UNIQUE (instance, occasion),
    UNIQUE (workflow_id, year, seq)
);
-- How far the issuing pass has looked at each instance: the last event (seq) that may call for
-- a document and has been handled. The sweep reads the events past it.
CREATE TABLE document_checks (
    instance TEXT   PRIMARY KEY,
    seq      BIGINT NOT NULL
);
-- The events that may call for a document, for the sweep (small: two kinds of event).
CREATE INDEX events_document_triggers ON events (instance, seq)
    WHERE type IN ('pre_approved', 'instance_ended');
