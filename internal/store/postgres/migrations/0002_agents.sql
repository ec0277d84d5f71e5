-- Agent tokens and the agents that use them; locks (resource pools).

ALTER TABLE tokens ADD COLUMN kind text NOT NULL DEFAULT 'api';
-- labels: the only labels an agent token's agents may claim; empty: any.
ALTER TABLE tokens ADD COLUMN labels text[] NOT NULL DEFAULT '{}';
ALTER TABLE tokens ADD COLUMN revoked_at timestamptz;

-- agents: what each agent said of itself when it last asked for work.
CREATE TABLE agents (
	name       text        PRIMARY KEY,
	token_id   bigint      NOT NULL,
	labels     text[]      NOT NULL,
	capacity   integer     NOT NULL,
	version    text        NOT NULL,
	draining   boolean     NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL
);

-- locks are resource pools: a job that names a lock runs only while one of
-- its capacity units is free; jobs holding it are the running ones that
-- name it. Lease takes the rows of a job's locks FOR UPDATE while it
-- counts their holders, so two servers never hand out the last unit twice.
CREATE TABLE locks (
	name       text        PRIMARY KEY,
	capacity   integer     NOT NULL,
	created_at timestamptz NOT NULL
);

-- jobs.locks: the lock names a job holds while it runs.
ALTER TABLE jobs ADD COLUMN locks text[] NOT NULL DEFAULT '{}';

-- Lease looks at queued jobs without locks in queue order.
CREATE INDEX jobs_queue_unlocked ON jobs ((coalesce(queued_at, created_at)), id)
	WHERE status = 'queued' AND locks = '{}';
