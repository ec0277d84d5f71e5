package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// Lease hands the oldest queued job that fits labels to agent. Oldest is
// by QueuedAt, or by the job's CreatedAt when QueuedAt is zero, then by ID.
// The job becomes running with a new token, Attempt one higher and
// LeaseExpires = now + ttl; nothing else in the job or its build changes
// (the build becomes running when the agent reports that the job started).
// The build is returned with its pipeline and jobs, without steps, and the
// job is the one in b.Jobs. Lease does not wait for a job to be queued; it
// only waits, like every write, for the write connection.
func (s *Store) Lease(ctx context.Context, agent string, labels []string, ttl time.Duration) (*store.Build, *store.Job, error) {
	var b *store.Build
	var job *store.Job
	err := s.write(ctx, func(tx *sql.Tx) error {
		jobID, err := pickJob(ctx, tx, labelsJSON(labels))
		if err != nil {
			return err
		}
		var token int64
		if err := tx.QueryRowContext(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'lease_token' RETURNING value`).
			Scan(&token); err != nil {
			return err
		}
		var buildID int64
		err = tx.QueryRowContext(ctx, `UPDATE jobs SET status = 'running', agent = ?, lease_token = ?, lease_expires = ?,
				attempt = attempt + 1
			WHERE id = ? RETURNING build_id`, agent, token, nanos(now().Add(ttl)), jobID).Scan(&buildID)
		if err != nil {
			return err
		}
		b, err = loadBuild(ctx, tx, buildID, false)
		if err != nil {
			return err
		}
		for _, j := range b.Jobs {
			if j.ID == jobID {
				job = j
			}
		}
		if job == nil {
			return fmt.Errorf("job %d vanished from build %d", jobID, buildID)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("lease a job for %s: %w", agent, translate(err))
	}
	return b, job, nil
}

// Renew extends a lease to now + ttl. store.ErrStaleLease when the job is
// not running under token, or does not exist any more (its repo was
// deleted): either way the agent must stop. A lease that expired but that
// nobody took away yet is renewed.
func (s *Store) Renew(ctx context.Context, jobID, token int64, ttl time.Duration) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET lease_expires = ?
			WHERE id = ? AND status = 'running' AND lease_token = ? AND lease_token > 0`,
			nanos(now().Add(ttl)), jobID, token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrStaleLease
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("renew lease %d of job %d: %w", token, jobID, translate(err))
	}
	return nil
}

// ExpiredLeases returns the IDs of builds that have a running job whose
// lease expired before now, lowest first.
func (s *Store) ExpiredLeases(ctx context.Context, now time.Time) ([]int64, error) {
	// The query is kept to what the jobs_running partial index answers;
	// sorting and de-duplicating the few IDs happens here.
	rows, err := s.r.QueryContext(ctx, `SELECT build_id FROM jobs
		WHERE status = 'running' AND lease_expires < ?`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("expired leases: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// AppendLogs stores chunks of one job under its lease, numbering them from
// the job's last Seq + 1 in the order given, and sets each chunk's JobID
// and Seq, and its CreatedAt when zero, once they are stored.
// store.ErrStaleLease when the job is not running under token or does not
// exist; then nothing is stored.
func (s *Store) AppendLogs(ctx context.Context, jobID, token int64, chunks []*store.LogChunk) error {
	created := now()
	var last int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var ok bool
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE id = ? AND status = 'running' AND lease_token = ? AND lease_token > 0`,
			jobID, token).Scan(&ok)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		if len(chunks) == 0 {
			return nil
		}
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM logs WHERE job_id = ?`, jobID).Scan(&last); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO logs (job_id, seq, step, data, created_at) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, c := range chunks {
			at := c.CreatedAt
			if at.IsZero() {
				at = created
			}
			if _, err := stmt.ExecContext(ctx, jobID, last+1+int64(i), c.Step, blob(c.Data), nanos(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append logs of job %d: %w", jobID, translate(err))
	}
	for i, c := range chunks {
		c.JobID, c.Seq = jobID, last+1+int64(i)
		if c.CreatedAt.IsZero() {
			c.CreatedAt = created
		}
	}
	return nil
}

// Logs returns up to limit chunks of a job with Seq > after, in order; a
// limit of 0 or less returns every one. A job without logs, or that does
// not exist, has none.
func (s *Store) Logs(ctx context.Context, jobID, after int64, limit int) ([]*store.LogChunk, error) {
	if limit <= 0 {
		limit = -1 // no limit, in SQLite
	}
	rows, err := s.r.QueryContext(ctx, `SELECT job_id, seq, step, data, created_at FROM logs
		WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, jobID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("logs of job %d: %w", jobID, err)
	}
	defer rows.Close()
	var out []*store.LogChunk
	for rows.Next() {
		c := &store.LogChunk{}
		if err := rows.Scan(&c.JobID, &c.Seq, &c.Step, &c.Data, ts(&c.CreatedAt)); err != nil {
			return nil, fmt.Errorf("logs of job %d: %w", jobID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("logs of job %d: %w", jobID, err)
	}
	return out, nil
}

// fits is the condition that a queued job's RunsOn labels are all in the
// JSON array bound to the one parameter.
const fits = `NOT EXISTS (SELECT 1 FROM json_each(j.runs_on) AS need
	WHERE need.value NOT IN (SELECT value FROM json_each(?)))`

// pickJob returns the ID of the oldest queued job that fits labels and may
// take its locks, or sql.ErrNoRows.
func pickJob(ctx context.Context, tx *sql.Tx, labels string) (int64, error) {
	// The oldest job without locks; the literal status, locks and ORDER BY
	// expression match the jobs_queue_unlocked partial index.
	var free int64
	var freeAt int64
	err := tx.QueryRowContext(ctx, `SELECT j.id, coalesce(j.queued_at, j.created_at) FROM jobs AS j
		WHERE j.status = 'queued' AND j.locks = '[]' AND `+fits+`
		ORDER BY coalesce(j.queued_at, j.created_at), j.id
		LIMIT 1`, labels).Scan(&free, &freeAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	// Jobs with locks, older than that one, in queue order: the first that
	// may take all its locks wins.
	rows, err := tx.QueryContext(ctx, `SELECT j.id, j.locks, coalesce(j.queued_at, j.created_at) FROM jobs AS j
		WHERE j.status = 'queued' AND j.locks != '[]' AND `+fits+`
		AND (? = 0 OR coalesce(j.queued_at, j.created_at) < ? OR (coalesce(j.queued_at, j.created_at) = ? AND j.id < ?))
		ORDER BY coalesce(j.queued_at, j.created_at), j.id
		LIMIT 1000`, labels, free, freeAt, freeAt, free)
	if err != nil {
		return 0, err
	}
	type cand struct {
		id, at int64
		locks  []string
	}
	var cands []cand
	for rows.Next() {
		var c cand
		var locks string
		if err := rows.Scan(&c.id, &locks, &c.at); err != nil {
			rows.Close()
			return 0, err
		}
		if c.locks, err = parseLabels(locks); err != nil {
			rows.Close()
			return 0, err
		}
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, c := range cands {
		ok, err := mayLock(ctx, tx, c.id, c.at, c.locks)
		if err != nil {
			return 0, err
		}
		if ok {
			return c.id, nil
		}
	}
	if free == 0 {
		return 0, sql.ErrNoRows
	}
	return free, nil
}

// mayLock reports whether the queued job id, queued at, may take each of
// locks now: for each, its holders and the queued jobs ahead of it that
// name it are fewer than its capacity.
func mayLock(ctx context.Context, tx *sql.Tx, id, at int64, locks []string) (bool, error) {
	for _, name := range locks {
		var capacity, taken int
		err := tx.QueryRowContext(ctx, `SELECT capacity FROM locks WHERE name = ?`, name).Scan(&capacity)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM jobs AS j
			WHERE (j.status = 'running' OR (j.status = 'queued' AND (coalesce(j.queued_at, j.created_at) < ?
				OR (coalesce(j.queued_at, j.created_at) = ? AND j.id < ?))))
			AND j.locks != '[]' AND EXISTS (SELECT 1 FROM json_each(j.locks) AS l WHERE l.value = ?)`,
			at, at, id, name).Scan(&taken)
		if err != nil {
			return false, err
		}
		if taken >= capacity {
			return false, nil
		}
	}
	return true, nil
}

// CreateLock stores a lock.
func (s *Store) CreateLock(ctx context.Context, l *store.Lock) error {
	created := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO locks (name, capacity, created_at) VALUES (?, ?, ?)`,
			l.Name, l.Capacity, nanos(created))
		return err
	})
	if err != nil {
		return fmt.Errorf("create lock %q: %w", l.Name, translate(err))
	}
	l.CreatedAt = created
	return nil
}

// SetLock creates a lock or sets its capacity.
func (s *Store) SetLock(ctx context.Context, l *store.Lock) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO locks (name, capacity, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity RETURNING created_at`,
			l.Name, l.Capacity, nanos(now())).Scan(ts(&l.CreatedAt))
	})
	if err != nil {
		return fmt.Errorf("set lock %q: %w", l.Name, translate(err))
	}
	return nil
}

// DeleteLock removes a lock.
func (s *Store) DeleteLock(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete lock %q: %w", name, translate(err))
	}
	return nil
}

// Locks returns every lock, by name.
func (s *Store) Locks(ctx context.Context) ([]*store.Lock, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, capacity, created_at FROM locks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer rows.Close()
	var ls []*store.Lock
	for rows.Next() {
		l := &store.Lock{}
		if err := rows.Scan(&l.Name, &l.Capacity, ts(&l.CreatedAt)); err != nil {
			return nil, fmt.Errorf("list locks: %w", err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return ls, nil
}
