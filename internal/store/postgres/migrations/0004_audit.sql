-- The audit log: one row per act, hash-chained (store.AuditHash). seq runs
-- from 1 without gaps: AppendAudit locks the table against other appends
-- (LOCK TABLE ... IN EXCLUSIVE MODE, which lets reads go on), then reads
-- the newest row and inserts the next, in one transaction, so appends from
-- several servers queue and the chain never forks.

CREATE TABLE audit_log (
	seq       bigint      PRIMARY KEY,
	at        timestamptz NOT NULL,
	actor     text        NOT NULL,
	address   text        NOT NULL,
	action    text        NOT NULL,
	object    text        NOT NULL,
	reason    text        NOT NULL,
	detail    text        NOT NULL, -- a JSON object of strings
	prev_hash bytea       NOT NULL,
	hash      bytea       NOT NULL
);

CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_object ON audit_log (object, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Append-only for whoever uses the database through Gantry's schema: a
-- change or removal is refused. The table's owner can still disable the
-- trigger and edit; `gantry audit verify` then finds the break.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
