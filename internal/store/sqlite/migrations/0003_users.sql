-- Users, groups and their roles on repositories. API tokens belong to a
-- user; the tokens made before users existed belong to "admin".

CREATE TABLE users (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	admin      INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);

ALTER TABLE tokens ADD COLUMN user_id INTEGER REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
CREATE INDEX tokens_user ON tokens (user_id);

INSERT INTO users (name, admin, created_at)
	SELECT 'admin', 1, (SELECT min(created_at) FROM tokens WHERE kind = 'api')
	WHERE EXISTS (SELECT 1 FROM tokens WHERE kind = 'api');
UPDATE tokens SET user_id = (SELECT id FROM users WHERE name = 'admin') WHERE kind = 'api';

CREATE TABLE user_groups (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
	group_id INTEGER NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
	user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id);

-- grants: a role on a repo (by name, or '*' for every repo) for exactly
-- one user or one group. A repo's grants go when the repo goes.
CREATE TABLE grants (
	repo       TEXT    NOT NULL,
	user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
	group_id   INTEGER REFERENCES user_groups (id) ON DELETE CASCADE,
	role       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX grants_subject ON grants (repo, coalesce(user_id, 0), coalesce(group_id, 0));
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_group ON grants (group_id);
