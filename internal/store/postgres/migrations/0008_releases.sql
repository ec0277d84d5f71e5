-- Continuous delivery, the PostgreSQL twin of sqlite's 0008_releases.sql:
-- artifacts of builds, releases made of them, environments, and
-- deployments of releases to environments.

-- A build of event "deploy" names the environment and the release version
-- it deploys; other builds leave both empty.
ALTER TABLE builds ADD COLUMN environment text NOT NULL DEFAULT '';
ALTER TABLE builds ADD COLUMN release_version text NOT NULL DEFAULT '';

-- artifacts: files jobs uploaded when they passed. The bytes live under
-- the server's data dir by sha256 (lowercase hex); one path per build.
-- mode holds the file's permission bits.
CREATE TABLE artifacts (
	id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	build_id   bigint      NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	job_id     bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	path       text        NOT NULL,
	size       bigint      NOT NULL,
	mode       integer     NOT NULL,
	sha256     text        NOT NULL,
	created_at timestamptz NOT NULL,
	CONSTRAINT artifacts_build_path UNIQUE (build_id, path)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);
CREATE INDEX artifacts_created ON artifacts (created_at);

-- releases: what a green build produced, under a version unique per repo.
CREATE TABLE releases (
	id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	repo_id    bigint      NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	version    text        NOT NULL,
	build_id   bigint      NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	commit_sha text        NOT NULL,
	branch     text        NOT NULL,
	tag        text        NOT NULL,
	authors    text[]      NOT NULL,
	created_at timestamptz NOT NULL,
	CONSTRAINT releases_build UNIQUE (build_id),
	CONSTRAINT releases_repo_version UNIQUE (repo_id, version)
);

-- release_artifacts: the artifacts a release is made of. An artifact named
-- here is never expired: its reference has no ON DELETE action, so even a
-- delete that missed it fails rather than take it from the release (a
-- repo's removal takes the references with the releases).
CREATE TABLE release_artifacts (
	release_id  bigint NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	artifact_id bigint NOT NULL REFERENCES artifacts (id),
	PRIMARY KEY (release_id, artifact_id)
);
CREATE INDEX release_artifacts_artifact ON release_artifacts (artifact_id);

-- environments: where a repo's releases go. Starting a deployment locks
-- the row (FOR UPDATE), so that one runs at a time per environment.
CREATE TABLE environments (
	id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	repo_id    bigint      NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	name       text        NOT NULL,
	created_at timestamptz NOT NULL,
	CONSTRAINT environments_repo_name UNIQUE (repo_id, name)
);

-- deployments: a release going to an environment. build_id is the build
-- that runs it, NULL while it waits; rollback_of the release a rollback
-- replaced.
CREATE TABLE deployments (
	id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	environment_id bigint      NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
	release_id     bigint      NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	kind           text        NOT NULL,
	requested_by   text        NOT NULL,
	rollback_of    bigint,
	state          text        NOT NULL,
	reason         text        NOT NULL,
	build_id       bigint      REFERENCES builds (id) ON DELETE CASCADE,
	created_at     timestamptz NOT NULL,
	started_at     timestamptz,
	finished_at    timestamptz,
	CONSTRAINT deployments_build UNIQUE (build_id)
);
CREATE INDEX deployments_environment ON deployments (environment_id, id);
CREATE INDEX deployments_release ON deployments (release_id, id);
CREATE INDEX deployments_state ON deployments (state, id);
