-- Secrets, encrypted by the server before they reach this table; and the
-- fork flag of builds, which never receive secrets.

-- secrets: one row per repo, name and environment ('' is unscoped).
-- ciphertext is a 12-byte nonce followed by the AES-256-GCM sealed value,
-- under the key key_id names; see package secret.
CREATE TABLE secrets (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	environment TEXT    NOT NULL,
	key_id      TEXT    NOT NULL,
	ciphertext  BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	UNIQUE (repo_id, name, environment)
);

-- builds.from_fork: 1 for a pull request whose head lives in another
-- repository.
ALTER TABLE builds ADD COLUMN from_fork INTEGER NOT NULL DEFAULT 0;
