package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// Lease hands the oldest queued job that fits labels to agent. Oldest is
// by QueuedAt, or by the job's CreatedAt when QueuedAt is zero, then by ID.
// The job becomes running with a new token, Attempt one higher and
// LeaseExpires = now + ttl; nothing else in the job or its build changes
// (the build becomes running when the agent reports that the job started).
// The build is returned with its pipeline and jobs, without steps, and the
// job is the one in b.Jobs.
//
// The job is picked and changed in one statement that locks its row and
// skips rows other transactions hold: another server's Lease of the same
// moment takes the next job, and a job whose build an Update holds is left
// for later rather than waited for. So Lease never waits, and ErrNotFound
// may also mean that every fitting job was locked at that instant.
func (s *Store) Lease(ctx context.Context, agent string, agentLabels []string, ttl time.Duration) (*store.Build, *store.Job, error) {
	b, job, locked, err := s.leaseUnlocked(ctx, agent, agentLabels, ttl)
	if err == nil && b == nil && locked {
		b, job, err = s.leaseAny(ctx, agent, agentLabels, ttl)
	}
	if err == nil && b == nil {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lease a job for %s: %w", agent, translate(err))
	}
	return b, job, nil
}

// leaseUnlocked is the common case of Lease in one round trip: it takes
// the oldest fitting job without locks, unless a fitting job with locks is
// queued ahead of it, and returns its build and the job; nil when it took
// none. locked reports whether any fitting job with locks is queued: then
// only leaseAny, which weighs their locks, may say that nothing can run.
//
// The take is one statement, in its own transaction: the job row is locked
// (SKIP LOCKED, as in leaseAny) and changed, and the build and its jobs
// are read from the same snapshot, with the taken job as it was written.
// A second statement in the same round trip asks whether jobs with locks
// wait; it is read only when nothing was taken.
func (s *Store) leaseUnlocked(ctx context.Context, agent string, agentLabels []string, ttl time.Duration) (b *store.Build, job *store.Job, locked bool, err error) {
	l := labels(agentLabels)
	batch := &pgx.Batch{}
	batch.Queue(leaseUnlockedSQL, l, agent, now().Add(ttl))
	batch.Queue(`SELECT EXISTS (SELECT 1 FROM jobs
		WHERE status = 'queued' AND locks <> '{}' AND runs_on <@ $1::text[])`, l)
	res := s.pool.SendBatch(ctx, batch)
	defer func() {
		if cerr := res.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	rows, err := res.Query()
	if err != nil {
		return nil, nil, false, err
	}
	for rows.Next() {
		var leased bool
		bb := &store.Build{}
		j := &store.Job{}
		if err := rows.Scan(append(append([]any{&leased}, buildDest(bb)...), jobDest(j)...)...); err != nil {
			rows.Close()
			return nil, nil, false, err
		}
		if b == nil {
			b = bb
		}
		b.Jobs = append(b.Jobs, normJob(j))
		if leased {
			job = j
			b.Pipeline = bb.Pipeline
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	if b != nil {
		if job == nil {
			return nil, nil, false, fmt.Errorf("the job leased from build %d is not among its jobs", b.ID)
		}
		slices.SortStableFunc(b.Jobs, func(x, y *store.Job) int { return x.Position - y.Position })
		return b, job, false, nil
	}
	if err := res.QueryRow().Scan(&locked); err != nil {
		return nil, nil, false, err
	}
	return nil, nil, locked, nil
}

// leaseUnlockedSQL takes the oldest queued job without locks that fits $1
// (runs_on <@ labels), for agent $2 until $3, when no fitting job with
// locks is queued ahead of it, and returns the taken job's build with each
// of its jobs, one row per job: leased, then the build's columns (the
// pipeline only on the leased job's row), then the job's. The other jobs
// are read from the statement's snapshot, the taken one from what the
// UPDATE wrote. The literal status, locks and ORDER BY expressions match
// the jobs_queue_unlocked and jobs_queue_locked partial indexes.
var leaseUnlockedSQL = `WITH next AS (
		SELECT id FROM jobs
		WHERE status = 'queued' AND locks = '{}' AND runs_on <@ $1::text[]
		ORDER BY coalesce(queued_at, created_at), id
		LIMIT 1
		FOR NO KEY UPDATE SKIP LOCKED),
	taken AS (
		UPDATE jobs AS j SET status = 'running', agent = $2, lease_token = nextval('lease_token'),
			lease_expires = $3, attempt = j.attempt + 1
		FROM next WHERE j.id = next.id AND NOT EXISTS (
			SELECT 1 FROM jobs AS l
			WHERE l.status = 'queued' AND l.locks <> '{}' AND l.runs_on <@ $1::text[]
			AND (coalesce(l.queued_at, l.created_at), l.id) < (coalesce(j.queued_at, j.created_at), j.id))
		RETURNING j.*),
	mine AS (
		SELECT true AS leased, * FROM taken
		UNION ALL
		SELECT false, * FROM jobs WHERE build_id = (SELECT build_id FROM taken) AND id <> (SELECT id FROM taken))
	SELECT mine.leased, ` + fmt.Sprintf(buildColumns, "CASE WHEN mine.leased THEN b.pipeline END") + `, ` +
	"mine." + strings.ReplaceAll(jobColumns, ", ", ", mine.") + `
	FROM mine JOIN builds AS b ON b.id = mine.build_id JOIN repos AS r ON r.id = b.repo_id`

// leaseAny is Lease when jobs with locks wait: it weighs each candidate's
// locks in a transaction that holds their rows.
func (s *Store) leaseAny(ctx context.Context, agent string, agentLabels []string, ttl time.Duration) (*store.Build, *store.Job, error) {
	var b *store.Build
	var job *store.Job
	err := s.tx(ctx, func(tx pgx.Tx) error {
		jobID, buildID, err := s.pick(ctx, tx, agent, agentLabels, ttl)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err = loadBuild(ctx, tx, buildID, false, false)
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
	return b, job, err
}

// Renew extends a lease to now + ttl. store.ErrStaleLease when the job is
// not running under token, or does not exist any more (its repo was
// deleted): either way the agent must stop. A lease that expired but that
// nobody took away yet is renewed.
func (s *Store) Renew(ctx context.Context, jobID, token int64, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET lease_expires = $1
		WHERE id = $2 AND status = 'running' AND lease_token = $3 AND lease_token > 0`,
		now().Add(ttl), jobID, token)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrStaleLease
	}
	if err != nil {
		return fmt.Errorf("renew lease %d of job %d: %w", token, jobID, translate(err))
	}
	return nil
}

// ExpiredLeases returns the IDs of builds that have a running job whose
// lease expired before now, lowest first.
func (s *Store) ExpiredLeases(ctx context.Context, now time.Time) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT build_id FROM jobs
		WHERE status = 'running' AND lease_expires < $1 ORDER BY build_id`, now)
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	return ids, nil
}

// AppendLogs stores chunks of one job under its lease, numbering them from
// the job's last Seq + 1 in the order given, and sets each chunk's JobID
// and Seq, and its CreatedAt when zero, once they are stored.
// store.ErrStaleLease when the job is not running under token or does not
// exist; then nothing is stored.
//
// One statement checks the lease and advances the job's log_seq: it holds
// the job's row until the chunks are stored, so an Update that ends the
// job waits for the append to commit, or the append, after it, finds the
// lease gone; and two appends to one job number their chunks in turn.
func (s *Store) AppendLogs(ctx context.Context, jobID, token int64, chunks []*store.LogChunk) error {
	created := now()
	var last int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var end int64
		err := tx.QueryRow(ctx, `UPDATE jobs SET log_seq = log_seq + $3
			WHERE id = $1 AND status = 'running' AND lease_token = $2 AND lease_token > 0
			RETURNING log_seq`, jobID, token, len(chunks)).Scan(&end)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		last = end - int64(len(chunks))
		if len(chunks) == 0 {
			return nil
		}
		steps := make([]int32, len(chunks))
		data := make([][]byte, len(chunks))
		times := make([]time.Time, len(chunks))
		for i, c := range chunks {
			steps[i], data[i], times[i] = int32(c.Step), blob(c.Data), c.CreatedAt
			if times[i].IsZero() {
				times[i] = created
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO logs (job_id, seq, step, data, created_at)
			SELECT $1, $2 + c.n, c.step, c.data, c.created_at
			FROM unnest($3::integer[], $4::bytea[], $5::timestamptz[]) WITH ORDINALITY AS c (step, data, created_at, n)`,
			jobID, last, steps, data, times)
		return err
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
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT job_id, seq, step, data, created_at FROM logs
		WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, jobID, after, lim)
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

// pick leases the oldest queued job that fits labels and may take its
// locks, and returns it, or pgx.ErrNoRows.
func (s *Store) pick(ctx context.Context, tx pgx.Tx, agent string, agentLabels []string, ttl time.Duration) (jobID, buildID int64, err error) {
	l := labels(agentLabels)
	// The oldest fitting job without locks, not locked by anyone: a
	// candidate, taken below unless a job with locks ahead of it may run.
	var freeAt time.Time
	var free int64
	err = tx.QueryRow(ctx, `SELECT id, coalesce(queued_at, created_at) FROM jobs
		WHERE status = 'queued' AND locks = '{}' AND runs_on <@ $1::text[]
		ORDER BY coalesce(queued_at, created_at), id LIMIT 1`, l).Scan(&free, &freeAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, err
	}
	type cand struct {
		id    int64
		at    time.Time
		locks []string
	}
	rows, err := tx.Query(ctx, `SELECT id, coalesce(queued_at, created_at), locks FROM jobs
		WHERE status = 'queued' AND locks <> '{}' AND runs_on <@ $1::text[]
		AND ($2::bigint = 0 OR (coalesce(queued_at, created_at), id) < ($3, $2))
		ORDER BY coalesce(queued_at, created_at), id LIMIT 1000`, l, free, freeAt)
	if err != nil {
		return 0, 0, err
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		return c, r.Scan(&c.id, &c.at, &c.locks)
	})
	if err != nil {
		return 0, 0, err
	}
	take := `UPDATE jobs AS j SET status = 'running', agent = $2, lease_token = nextval('lease_token'),
			lease_expires = $3, attempt = j.attempt + 1
		FROM next WHERE j.id = next.id
		RETURNING j.id, j.build_id`
	for _, c := range cands {
		ok, err := mayLock(ctx, tx, c.id, c.at, c.locks)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			continue
		}
		err = tx.QueryRow(ctx, `WITH next AS (
				SELECT id FROM jobs WHERE id = $1 AND status = 'queued' FOR NO KEY UPDATE SKIP LOCKED)
			`+take, c.id, agent, now().Add(ttl)).Scan(&jobID, &buildID)
		if err == nil || !errors.Is(err, pgx.ErrNoRows) {
			return jobID, buildID, err
		}
	}
	// A job fits when its RunsOn labels are all in the agent's: runs_on <@
	// labels. The literal status, locks and the ORDER BY expression match
	// the jobs_queue_unlocked partial index.
	err = tx.QueryRow(ctx, `WITH next AS (
			SELECT id FROM jobs
			WHERE status = 'queued' AND locks = '{}' AND runs_on <@ $1::text[]
			ORDER BY coalesce(queued_at, created_at), id
			LIMIT 1
			FOR NO KEY UPDATE SKIP LOCKED)
		`+take, l, agent, now().Add(ttl)).Scan(&jobID, &buildID)
	return jobID, buildID, err
}

// mayLock reports whether the queued job id, queued at, may take each of
// locks now: for each, its holders and the queued jobs ahead of it that
// name it are fewer than its capacity. It holds the locks' rows until the
// transaction ends, so no other Lease counts them at the same time.
func mayLock(ctx context.Context, tx pgx.Tx, id int64, at time.Time, locks []string) (bool, error) {
	rows, err := tx.Query(ctx, `SELECT name, capacity FROM locks WHERE name = ANY($1) ORDER BY name FOR UPDATE`, locks)
	if err != nil {
		return false, err
	}
	capacity := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			rows.Close()
			return false, err
		}
		capacity[name] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, name := range locks {
		n, ok := capacity[name]
		if !ok {
			return false, nil
		}
		var taken int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM jobs
			WHERE locks @> ARRAY[$1::text]
			AND (status = 'running' OR (status = 'queued' AND (coalesce(queued_at, created_at), id) < ($2, $3)))`,
			name, at, id).Scan(&taken)
		if err != nil {
			return false, err
		}
		if taken >= n {
			return false, nil
		}
	}
	return true, nil
}
