-- 0001: the first schema. Released migrations are never edited; change the
-- schema with a new numbered file.
--
-- Times are INTEGER nanoseconds since the Unix epoch, UTC; NULL is the zero
-- time.Time. IDs use AUTOINCREMENT so an ID is never reused after a delete:
-- a URL or a log line that names build 42 names the same build for ever.

CREATE TABLE repos (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	name           TEXT    NOT NULL UNIQUE,
	clone_url      TEXT    NOT NULL,
	forge          TEXT    NOT NULL,
	webhook_secret TEXT    NOT NULL,
	default_branch TEXT    NOT NULL,
	-- last_build is the number of the repo's newest build: CreateBuild
	-- increments it in its transaction, so numbers have no gaps.
	last_build     INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL
);

CREATE TABLE builds (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	repo_id      INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	number       INTEGER NOT NULL,
	status       TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	event        TEXT    NOT NULL,
	branch       TEXT    NOT NULL,
	tag          TEXT    NOT NULL,
	commit_sha   TEXT    NOT NULL,
	base_branch  TEXT    NOT NULL,
	pull_request INTEGER NOT NULL,
	title        TEXT    NOT NULL,
	author       TEXT    NOT NULL,
	message      TEXT    NOT NULL,
	-- delivery_id is NULL when the build has none, so that any number of
	-- builds without one coexist under the unique constraint below.
	delivery_id  TEXT,
	pipeline     BLOB,
	retry_of     INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	started_at   INTEGER,
	finished_at  INTEGER,
	UNIQUE (repo_id, number),
	UNIQUE (repo_id, delivery_id)
);

-- For Builds (newest first, by repo, branch, status) and BuildIDs.
CREATE INDEX builds_status ON builds (status, id);
CREATE INDEX builds_repo ON builds (repo_id, id);
CREATE INDEX builds_repo_branch ON builds (repo_id, branch, id);

CREATE TABLE jobs (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	build_id      INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	name          TEXT    NOT NULL,
	position      INTEGER NOT NULL,
	status        TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	exit_code     INTEGER NOT NULL,
	-- runs_on is a JSON array of label strings.
	runs_on       TEXT    NOT NULL,
	agent         TEXT    NOT NULL,
	lease_token   INTEGER NOT NULL,
	lease_expires INTEGER,
	attempt       INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	queued_at     INTEGER,
	started_at    INTEGER,
	finished_at   INTEGER,
	UNIQUE (build_id, position)
);

-- The queue: Lease walks it in this order. The expression and the WHERE
-- clause must match the Lease query exactly for SQLite to use it.
CREATE INDEX jobs_queue ON jobs (coalesce(queued_at, created_at), id) WHERE status = 'queued';
-- For ExpiredLeases: only running jobs hold a lease.
CREATE INDEX jobs_running ON jobs (lease_expires) WHERE status = 'running';

CREATE TABLE steps (
	job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	idx         INTEGER NOT NULL,
	name        TEXT    NOT NULL,
	status      TEXT    NOT NULL,
	reason      TEXT    NOT NULL,
	exit_code   INTEGER NOT NULL,
	attempts    INTEGER NOT NULL,
	started_at  INTEGER,
	finished_at INTEGER,
	PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

CREATE TABLE logs (
	job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq        INTEGER NOT NULL,
	step       INTEGER NOT NULL,
	data       BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (job_id, seq)
);

CREATE TABLE tokens (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL,
	hash       BLOB    NOT NULL UNIQUE,
	admin      INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);

-- counters holds store-wide sequences. lease_token is the last fencing
-- token handed out; it only ever grows.
CREATE TABLE counters (
	name  TEXT    PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES ('lease_token', 0);
