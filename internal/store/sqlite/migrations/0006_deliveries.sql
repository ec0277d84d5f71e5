-- 0005: what the server owes forges and hooks (the outbox of deliveries),
-- the hooks, and each repo's forge API URL.

-- api_url: the forge API's base URL; empty means the one the clone URL
-- implies.
ALTER TABLE repos ADD COLUMN api_url TEXT NOT NULL DEFAULT '';

-- hooks are URLs subscribed to events. events is a JSON array of names or
-- globs; repo_id NULL means every repo; branch '' means every branch.
CREATE TABLE hooks (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	url        TEXT    NOT NULL,
	secret     TEXT    NOT NULL,
	events     TEXT    NOT NULL,
	repo_id    INTEGER REFERENCES repos (id) ON DELETE CASCADE,
	branch     TEXT    NOT NULL,
	format     TEXT    NOT NULL,
	created_at INTEGER NOT NULL
);

-- deliveries: every POST owed, stored before it is sent. headers is a JSON
-- object of non-secret headers; dedupe_key is NULL or unique;
-- coalesce_key groups deliveries of which only the newest matters.
CREATE TABLE deliveries (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	kind            TEXT    NOT NULL,
	repo_id         INTEGER REFERENCES repos (id) ON DELETE CASCADE,
	build_id        INTEGER NOT NULL,
	hook_id         INTEGER NOT NULL,
	forge           TEXT    NOT NULL,
	event           TEXT    NOT NULL,
	url             TEXT    NOT NULL,
	host            TEXT    NOT NULL,
	headers         TEXT    NOT NULL,
	payload         BLOB    NOT NULL,
	dedupe_key      TEXT    UNIQUE,
	coalesce_key    TEXT,
	state           TEXT    NOT NULL,
	attempts        INTEGER NOT NULL,
	next_attempt_at INTEGER NOT NULL,
	claimed_by      TEXT    NOT NULL,
	lease_token     INTEGER NOT NULL,
	lease_expires   INTEGER,
	last_status     INTEGER NOT NULL,
	last_error      TEXT    NOT NULL,
	created_at      INTEGER NOT NULL,
	finished_at     INTEGER
);

-- ClaimDeliveries walks the due ones, and the expired claims.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_sending ON deliveries (lease_expires) WHERE state = 'sending';
CREATE INDEX deliveries_coalesce ON deliveries (coalesce_key, id) WHERE coalesce_key IS NOT NULL;
CREATE INDEX deliveries_repo ON deliveries (repo_id, id);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- delivery_holds: hosts that rate-limited us, until when.
CREATE TABLE delivery_holds (
	host  TEXT    PRIMARY KEY,
	until INTEGER NOT NULL
) WITHOUT ROWID;

-- For LatestBuild: the newest build of a branch in some statuses.
CREATE INDEX builds_repo_branch_status ON builds (repo_id, branch, status, id);

-- build_issues: the issue keys (ABC-123, #123) a build's branch, title and
-- commit message name.
CREATE TABLE build_issues (
	issue    TEXT    NOT NULL,
	build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	PRIMARY KEY (issue, build_id)
) WITHOUT ROWID;
CREATE INDEX build_issues_build ON build_issues (build_id);
