-- The audit log: one row per act, hash-chained (store.AuditHash). seq runs
-- from 1 without gaps; AppendAudit reads the newest row and inserts the next
-- inside one write transaction, and SQLite has one writer at a time.

CREATE TABLE audit_log (
	seq       INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL, -- nanoseconds since 1970, whole microseconds
	actor     TEXT    NOT NULL,
	address   TEXT    NOT NULL,
	action    TEXT    NOT NULL,
	object    TEXT    NOT NULL,
	reason    TEXT    NOT NULL,
	detail    TEXT    NOT NULL, -- a JSON object of strings
	prev_hash BLOB    NOT NULL,
	hash      BLOB    NOT NULL
);

CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_object ON audit_log (object, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Append-only for whoever uses the database through Gantry's schema: a
-- change or removal is refused. Someone who drops these triggers can
-- still edit the file; `gantry audit verify` then finds the break.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
