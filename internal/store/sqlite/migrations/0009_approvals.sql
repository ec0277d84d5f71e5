-- decisions: what people decided about a deployment: approve, reject, or
-- (an admin) override-freeze. One verdict per user per deployment. A
-- decision names a deployment, so it holds for that release only.
CREATE TABLE decisions (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
	user_name     TEXT    NOT NULL,
	verdict       TEXT    NOT NULL,
	comment       TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	UNIQUE (deployment_id, user_name, verdict)
);
