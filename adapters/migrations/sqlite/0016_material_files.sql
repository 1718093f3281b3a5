-- Material files (材料文件), stored by the SHA-256 of their content so that a file uploaded twice
-- (to two instances, or again after a 补正) is kept once, and every node of a cluster reads the
-- same bytes. `material_files` is written last, in the transaction that writes the chunks: a row
-- there means the content is whole. Which instance and material a file belongs to, who
-- uploaded it and when, is in the instance's `material_supplied` event, not here.
CREATE TABLE material_files (
    sha256    TEXT    PRIMARY KEY,
    size      INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    stored_at INTEGER NOT NULL
);
-- The content in chunks of at most 1 MiB, so that neither writing nor reading holds a whole
-- file in memory.
CREATE TABLE material_file_chunks (
    sha256 TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    data   BLOB    NOT NULL,
    PRIMARY KEY (sha256, n)
);
