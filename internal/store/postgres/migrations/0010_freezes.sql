-- freezes: windows an admin set on an environment of a repo, during which
-- nothing is deployed there unless an admin overrides it. The pipeline
-- file's own freeze windows are not stored: they are read from the file.
CREATE TABLE freezes (
	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	repo_id     bigint      NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	environment text        NOT NULL,
	starts_at   timestamptz NOT NULL,
	ends_at     timestamptz NOT NULL,
	reason      text        NOT NULL,
	created_by  text        NOT NULL,
	created_at  timestamptz NOT NULL
);
CREATE INDEX freezes_repo_until ON freezes (repo_id, ends_at);
