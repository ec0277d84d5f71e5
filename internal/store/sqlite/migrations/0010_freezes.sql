-- freezes: windows an admin set on an environment of a repo, during which
-- nothing is deployed there unless an admin overrides it. The pipeline
-- file's own freeze windows are not stored: they are read from the file.
CREATE TABLE freezes (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	environment TEXT    NOT NULL,
	starts_at   INTEGER NOT NULL,
	ends_at     INTEGER NOT NULL,
	reason      TEXT    NOT NULL,
	created_by  TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
);
CREATE INDEX freezes_repo_until ON freezes (repo_id, ends_at);
