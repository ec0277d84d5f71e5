-- A new build looks for the unfinished builds of its branch that it may
-- have to wait for or cancel. This index answers from those few, newest
-- first, rather than from the branch's whole history.
CREATE INDEX builds_unfinished ON builds (repo_id, branch, id)
	WHERE status IN ('pending', 'queued', 'running');
