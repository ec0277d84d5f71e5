-- Lease asks, before it takes a job without locks, whether a job with
-- locks is queued ahead of it; and weighs such jobs in queue order. This
-- index answers both from the few jobs with locks, rather than from every
-- queued job.
CREATE INDEX jobs_queue_locked ON jobs ((coalesce(queued_at, created_at)), id)
	WHERE status = 'queued' AND locks <> '{}';
