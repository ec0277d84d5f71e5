-- 0005: what the server owes forges and hooks (the outbox of deliveries),
-- the hooks, and each repo's forge API URL. The twin of sqlite's
-- 0005_deliveries.sql.

-- api_url: the forge API's base URL; empty means the one the clone URL
-- implies.
ALTER TABLE repos ADD COLUMN api_url text NOT NULL DEFAULT '';

-- hooks are URLs subscribed to events (names or globs); repo_id NULL
-- means every repo; branch '' means every branch.
CREATE TABLE hooks (
	id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	url        text        NOT NULL,
	secret     text        NOT NULL,
	events     text[]      NOT NULL,
	repo_id    bigint      REFERENCES repos (id) ON DELETE CASCADE,
	branch     text        NOT NULL,
	format     text        NOT NULL,
	created_at timestamptz NOT NULL
);

-- deliveries: every POST owed, stored before it is sent. headers holds
-- non-secret headers; dedupe_key is NULL or unique; coalesce_key groups
-- deliveries of which only the newest matters. ClaimDeliveries takes rows
-- FOR UPDATE SKIP LOCKED, so two servers never claim one at once.
CREATE TABLE deliveries (
	id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind            text        NOT NULL,
	repo_id         bigint      REFERENCES repos (id) ON DELETE CASCADE,
	build_id        bigint      NOT NULL,
	hook_id         bigint      NOT NULL,
	forge           text        NOT NULL,
	event           text        NOT NULL,
	url             text        NOT NULL,
	host            text        NOT NULL,
	headers         jsonb       NOT NULL,
	payload         bytea       NOT NULL,
	dedupe_key      text        UNIQUE,
	coalesce_key    text,
	state           text        NOT NULL,
	attempts        integer     NOT NULL,
	next_attempt_at timestamptz NOT NULL,
	claimed_by      text        NOT NULL,
	lease_token     bigint      NOT NULL,
	lease_expires   timestamptz,
	last_status     integer     NOT NULL,
	last_error      text        NOT NULL,
	created_at      timestamptz NOT NULL,
	finished_at     timestamptz
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_sending ON deliveries (lease_expires) WHERE state = 'sending';
CREATE INDEX deliveries_coalesce ON deliveries (coalesce_key, id) WHERE coalesce_key IS NOT NULL;
CREATE INDEX deliveries_repo ON deliveries (repo_id, id);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- delivery_holds: hosts that rate-limited us, until when.
CREATE TABLE delivery_holds (
	host  text        PRIMARY KEY,
	until timestamptz NOT NULL
);

-- For LatestBuild: the newest build of a branch in some statuses.
CREATE INDEX builds_repo_branch_status ON builds (repo_id, branch, status, id);

-- build_issues: the issue keys (ABC-123, #123) a build's branch, title and
-- commit message name.
CREATE TABLE build_issues (
	issue    text   NOT NULL,
	build_id bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
	PRIMARY KEY (issue, build_id)
);
CREATE INDEX build_issues_build ON build_issues (build_id);
