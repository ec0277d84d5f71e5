-- 0001: the first schema, the PostgreSQL twin of sqlite's 0001_init.sql.
-- Released migrations are never edited; change the schema with a new
-- numbered file.
--
-- Times are timestamptz (microseconds); NULL is the zero time.Time. IDs are
-- identity columns, whose sequences never hand a value out twice, so an ID
-- is never reused after a delete: a URL or a log line that names build 42
-- names the same build for ever.

CREATE TABLE repos (
	id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name           text        NOT NULL UNIQUE,
	clone_url      text        NOT NULL,
	forge          text        NOT NULL,
	webhook_secret text        NOT NULL,
	default_branch text        NOT NULL,
	-- last_build is the number of the repo's newest build: CreateBuild
	-- increments it in its transaction, which locks the repo's row until
	-- the build is stored, so numbers have no gaps and no duplicates.
	last_build     bigint      NOT NULL DEFAULT 0,
	created_at     timestamptz NOT NULL
);

CREATE TABLE builds (
	id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	repo_id      bigint      NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	number       bigint      NOT NULL,
	status       text        NOT NULL,
	reason       text        NOT NULL,
	event        text        NOT NULL,
	branch       text        NOT NULL,
	tag          text        NOT NULL,
	commit_sha   text        NOT NULL,
	base_branch  text        NOT NULL,
	pull_request integer     NOT NULL,
	title        text        NOT NULL,
	author       text        NOT NULL,
	message      text        NOT NULL,
	-- delivery_id is NULL when the build has none, so that any number of
	-- builds without one coexist under the unique constraint below.
	delivery_id  text,
	pipeline     bytea,
	retry_of     bigint      NOT NULL,
	created_at   timestamptz NOT NULL,
	started_at   timestamptz,
	finished_at  timestamptz,
	CONSTRAINT builds_repo_number UNIQUE (repo_id, number),
	CONSTRAINT builds_repo_delivery UNIQUE (repo_id, delivery_id)
);

-- For Builds (newest first, by repo, branch, status) and BuildIDs. The
-- unique constraint on (repo_id, number) serves the repo's builds.
CREATE INDEX builds_status ON builds (status, id);
CREATE INDEX builds_repo_branch ON builds (repo_id, branch, id);

CREATE TABLE jobs (
	id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	build_id      bigint      NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	name          text        NOT NULL,
	position      integer     NOT NULL,
	status        text        NOT NULL,
	reason        text        NOT NULL,
	exit_code     integer     NOT NULL,
	-- runs_on holds the labels an agent needs, all of them: Lease asks
	-- runs_on <@ the agent's labels.
	runs_on       text[]      NOT NULL,
	agent         text        NOT NULL,
	lease_token   bigint      NOT NULL,
	lease_expires timestamptz,
	attempt       integer     NOT NULL,
	-- log_seq is the Seq of the job's last log chunk. AppendLogs advances
	-- it in the statement that checks the lease, so the check and the
	-- numbering hold the job's row lock until the chunks are stored.
	log_seq       bigint      NOT NULL DEFAULT 0,
	created_at    timestamptz NOT NULL,
	queued_at     timestamptz,
	started_at    timestamptz,
	finished_at   timestamptz,
	CONSTRAINT jobs_build_position UNIQUE (build_id, position)
);

-- The queue: Lease walks it in this order. The expression and the WHERE
-- clause match the Lease query, so the planner reads the oldest first.
CREATE INDEX jobs_queue ON jobs ((coalesce(queued_at, created_at)), id) WHERE status = 'queued';
-- For ExpiredLeases: only running jobs hold a lease.
CREATE INDEX jobs_running ON jobs (lease_expires) WHERE status = 'running';

CREATE TABLE steps (
	job_id      bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	idx         integer     NOT NULL,
	name        text        NOT NULL,
	status      text        NOT NULL,
	reason      text        NOT NULL,
	exit_code   integer     NOT NULL,
	attempts    integer     NOT NULL,
	started_at  timestamptz,
	finished_at timestamptz,
	PRIMARY KEY (job_id, idx)
);

CREATE TABLE logs (
	job_id     bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq        bigint      NOT NULL,
	step       integer     NOT NULL,
	data       bytea       NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (job_id, seq)
);

CREATE TABLE tokens (
	id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       text        NOT NULL,
	hash       bytea       NOT NULL UNIQUE,
	admin      boolean     NOT NULL,
	created_at timestamptz NOT NULL
);

-- lease_token hands out fencing tokens. nextval never returns a value
-- twice and, with no cache, returns increasing values across every
-- session, so a token names one lease for ever whichever server made it.
CREATE SEQUENCE lease_token AS bigint NO CYCLE CACHE 1;
