-- Where a material file's content is kept: `database` (its chunks in `material_file_chunks`, the
-- default) or `directory` (a file named by its hash under the server's `--file-dir`, written whole
-- and renamed into place before this row is). A server reads each file from where it was put, so
-- switching a cluster to a directory keeps the files stored before readable.
ALTER TABLE material_files ADD COLUMN place TEXT NOT NULL DEFAULT 'database';
