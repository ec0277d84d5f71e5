-- Lease weighs the queued jobs with locks in queue order. This index
-- answers that from the few jobs with locks, rather than from every queued
-- job.
CREATE INDEX jobs_queue_locked ON jobs (coalesce(queued_at, created_at), id)
	WHERE status = 'queued' AND locks != '[]';
