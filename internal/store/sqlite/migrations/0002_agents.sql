-- Agent tokens and the agents that use them; locks (resource pools).

ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
-- labels: a JSON array of the labels an agent token's agents may claim.
ALTER TABLE tokens ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;

-- agents: what each agent said of itself when it last asked for work.
CREATE TABLE agents (
	name       TEXT    PRIMARY KEY,
	token_id   INTEGER NOT NULL,
	labels     TEXT    NOT NULL,
	capacity   INTEGER NOT NULL,
	version    TEXT    NOT NULL,
	draining   INTEGER NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL
) WITHOUT ROWID;

-- locks are resource pools: a job that names a lock runs only while one of
-- its capacity units is free; jobs holding it are the running ones that
-- name it.
CREATE TABLE locks (
	name       TEXT    PRIMARY KEY,
	capacity   INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- jobs.locks: a JSON array of the lock names a job holds while it runs.
ALTER TABLE jobs ADD COLUMN locks TEXT NOT NULL DEFAULT '[]';

-- Lease looks at queued jobs without locks first, in queue order.
CREATE INDEX jobs_queue_unlocked ON jobs (coalesce(queued_at, created_at), id)
	WHERE status = 'queued' AND locks = '[]';
