-- A new build looks for the unfinished builds of its branch that it may
-- have to wait for or cancel. This index answers from those few, newest
-- first, rather than from the branch's whole history. SQLite uses it only
-- for a query whose condition is this WHERE word for word: Builds'
-- Unfinished filter (build.go; TestUnfinishedBuildsUseTheirIndex).
CREATE INDEX builds_unfinished ON builds (repo_id, branch, id)
	WHERE status IN ('pending', 'queued', 'running');
