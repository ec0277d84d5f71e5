-- Agent tokens and the agents that use them.

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
