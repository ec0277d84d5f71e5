-- release_issues: the issue keys (ABC-123, #123) named by the commits a
-- release ships: those since the previous release of its branch.
CREATE TABLE release_issues (
	issue      TEXT    NOT NULL,
	release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	PRIMARY KEY (issue, release_id)
) WITHOUT ROWID;
CREATE INDEX release_issues_release ON release_issues (release_id);

-- forge_deployments: the forge's own record of a deployment (GitHub's
-- deployment ID), made when its first deployment status is sent, and
-- named by every later one.
CREATE TABLE forge_deployments (
	deployment_id INTEGER PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
	forge_id      INTEGER NOT NULL,
	created_at    INTEGER NOT NULL
);

-- hooks.environment: when not empty, a glob the environment of a
-- deployment (or of a deployment's build) must match; such a hook gets no
-- events of other builds.
ALTER TABLE hooks ADD COLUMN environment TEXT NOT NULL DEFAULT '';
