-- Secrets, encrypted by the server before they reach this table; and the
-- fork flag of builds, which never receive secrets.

-- secrets: one row per repo, name and environment ('' is unscoped).
-- ciphertext is a 12-byte nonce followed by the AES-256-GCM sealed value,
-- under the key key_id names; see package secret.
CREATE TABLE secrets (
	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	repo_id     bigint      NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
	name        text        NOT NULL,
	environment text        NOT NULL,
	key_id      text        NOT NULL,
	ciphertext  bytea       NOT NULL,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL,
	UNIQUE (repo_id, name, environment)
);

-- builds.from_fork: true for a pull request whose head lives in another
-- repository.
ALTER TABLE builds ADD COLUMN from_fork boolean NOT NULL DEFAULT false;
