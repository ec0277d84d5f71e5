-- sessions: browsers signed in to the web UI. hash is a SHA-256 of the
-- cookie's secret. A session goes with the API token it was opened with.

CREATE TABLE sessions (
	hash       BLOB    PRIMARY KEY,
	token_id   INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
