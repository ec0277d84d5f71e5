-- Continuous delivery: artifacts of builds, releases made of them,
-- environments, and deployments of releases to environments.

-- A build of event "deploy" names the environment and the release version
-- it deploys; other builds leave both empty.
ALTER TABLE builds ADD COLUMN environment TEXT NOT NULL DEFAULT '';
ALTER TABLE builds ADD COLUMN release_version TEXT NOT NULL DEFAULT '';

-- artifacts: files jobs uploaded when they passed. The bytes live under
-- the server's data dir by sha256 (lowercase hex); one path per build.
-- mode holds the file's permission bits.
CREATE TABLE artifacts (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	build_id   INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	path       TEXT    NOT NULL,
	size       INTEGER NOT NULL,
	mode       INTEGER NOT NULL,
	sha256     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (build_id, path)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);
CREATE INDEX artifacts_created ON artifacts (created_at);

-- releases: what a green build produced, under a version unique per repo.
-- authors is a JSON array of "Name <email>".
CREATE TABLE releases (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	repo_id    INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	version    TEXT    NOT NULL,
	build_id   INTEGER NOT NULL UNIQUE REFERENCES builds (id) ON DELETE CASCADE,
	commit_sha TEXT    NOT NULL,
	branch     TEXT    NOT NULL,
	tag        TEXT    NOT NULL,
	authors    TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (repo_id, version)
);

-- release_artifacts: the artifacts a release is made of. An artifact named
-- here is never expired: its reference has no ON DELETE action, so even a
-- delete that missed it fails rather than take it from the release (a
-- repo's removal takes the references with the releases).
CREATE TABLE release_artifacts (
	release_id  INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	artifact_id INTEGER NOT NULL REFERENCES artifacts (id),
	PRIMARY KEY (release_id, artifact_id)
) WITHOUT ROWID;
CREATE INDEX release_artifacts_artifact ON release_artifacts (artifact_id);

-- environments: where a repo's releases go. The row is what starting a
-- deployment locks, so that one runs at a time per environment.
CREATE TABLE environments (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	repo_id    INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (repo_id, name)
);

-- deployments: a release going to an environment. build_id is the build
-- that runs it, NULL while it waits; rollback_of the release a rollback
-- replaced.
CREATE TABLE deployments (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	environment_id INTEGER NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
	release_id     INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	kind           TEXT    NOT NULL,
	requested_by   TEXT    NOT NULL,
	rollback_of    INTEGER,
	state          TEXT    NOT NULL,
	reason         TEXT    NOT NULL,
	build_id       INTEGER REFERENCES builds (id) ON DELETE CASCADE,
	created_at     INTEGER NOT NULL,
	started_at     INTEGER,
	finished_at    INTEGER
);
CREATE INDEX deployments_environment ON deployments (environment_id, id);
CREATE INDEX deployments_release ON deployments (release_id, id);
CREATE UNIQUE INDEX deployments_build ON deployments (build_id);
CREATE INDEX deployments_state ON deployments (state, id);
