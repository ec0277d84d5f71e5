package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// CreateBuild stores b, its jobs and their steps (a retry carries over the
// steps of jobs that passed) in one transaction. The repo is b.RepoID;
// store.ErrNotFound when it does not exist. b.Repo is set to its name.
// Nothing in b changes unless the build was stored, except b.ID on a
// delivery conflict, as store.Store documents.
//
// The transaction first increments the repo's build counter, which locks
// the repo's row until it ends: concurrent CreateBuilds of one repo, from
// any number of servers, take turns from there, so each sees the builds
// the ones before stored (READ COMMITTED reads afresh per statement), and
// a refused build gives its number back by rolling back.
func (s *Store) CreateBuild(ctx context.Context, b *store.Build) error {
	if err := checkBuild(b); err != nil {
		return fmt.Errorf("create build of repo %d: %w", b.RepoID, err)
	}
	var ins *inserted
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		ins, err = insertBuild(ctx, tx, b)
		return err
	})
	if errors.Is(err, store.ErrConflict) && ins != nil && ins.existing != 0 {
		b.ID = ins.existing
		return fmt.Errorf("create build: delivery %q of repo %d: %w", b.DeliveryID, b.RepoID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create build of repo %d: %w", b.RepoID, translate(err))
	}
	ins.apply(b)
	return nil
}

// checkBuild refuses a build with a nil job or step before any SQL.
func checkBuild(b *store.Build) error {
	for i, j := range b.Jobs {
		if j == nil {
			return fmt.Errorf("job %d is nil", i)
		}
		for k, st := range j.Steps {
			if st == nil {
				return fmt.Errorf("job %q: step %d is nil", j.Name, k)
			}
		}
	}
	return nil
}

// inserted is what insertBuild stored, to set in the build once the
// transaction has committed.
type inserted struct {
	id, number int64
	repo       string
	created    time.Time
	jobIDs     []int64
	// existing is the build that has b's delivery ID already.
	existing int64
}

func (ins *inserted) apply(b *store.Build) {
	b.ID, b.Number, b.Repo, b.CreatedAt = ins.id, ins.number, ins.repo, ins.created
	for i, j := range b.Jobs {
		j.ID, j.BuildID, j.CreatedAt = ins.jobIDs[i], ins.id, ins.created
	}
}

// insertBuild stores b (checked by checkBuild), its jobs and their steps
// in tx, without changing b: CreateBuild and StartDeployment apply what it
// returns after the commit. It returns store.ErrConflict (and the existing
// build in the answer) when a build of the repo has b's delivery ID.
func insertBuild(ctx context.Context, tx pgx.Tx, b *store.Build) (*inserted, error) {
	ins := &inserted{created: now(), jobIDs: make([]int64, len(b.Jobs))}
	err := tx.QueryRow(ctx, `UPDATE repos SET last_build = last_build + 1 WHERE id = $1 RETURNING name, last_build`,
		b.RepoID).Scan(&ins.repo, &ins.number)
	if err != nil {
		return nil, err
	}
	if b.DeliveryID != "" {
		err := tx.QueryRow(ctx, `SELECT id FROM builds WHERE repo_id = $1 AND delivery_id = $2`,
			b.RepoID, b.DeliveryID).Scan(&ins.existing)
		if err == nil {
			return ins, store.ErrConflict
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
	}
	err = tx.QueryRow(ctx, `INSERT INTO builds (repo_id, number, delivery_id, created_at, from_fork, environment, release_version,
			status, reason, event, branch, tag, commit_sha, base_branch, pull_request, title, author, message,
			pipeline, retry_of, started_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) RETURNING id`,
		append([]any{b.RepoID, ins.number, nullString(b.DeliveryID), ins.created, b.FromFork, b.Environment, b.Release},
			buildRow(b)...)...).Scan(&ins.id)
	if err != nil {
		return nil, err
	}
	if len(b.Jobs) == 0 {
		return ins, nil
	}
	// The jobs go in one round trip, then their steps in another.
	jobs := &pgx.Batch{}
	for _, j := range b.Jobs {
		jobs.Queue(`INSERT INTO jobs (build_id, position, created_at, locks,
				name, status, reason, exit_code, runs_on, agent, lease_token, lease_expires, attempt,
				queued_at, started_at, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id`,
			append([]any{ins.id, j.Position, ins.created, labels(j.Locks)}, jobRow(j)...)...)
	}
	res := tx.SendBatch(ctx, jobs)
	for i, j := range b.Jobs {
		if err := res.QueryRow().Scan(&ins.jobIDs[i]); err != nil {
			res.Close()
			return nil, fmt.Errorf("job %q: %w", j.Name, err)
		}
	}
	if err := res.Close(); err != nil {
		return nil, err
	}
	steps := &w{}
	for i, j := range b.Jobs {
		for k, st := range j.Steps {
			steps.insertStep(ins.jobIDs[i], k, st, fmt.Sprintf("job %q: step %d", j.Name, k))
		}
	}
	if err := steps.send(ctx, tx); err != nil {
		return nil, err
	}
	return ins, nil
}

// w collects writes to send in one round trip, each with what it writes
// for the error message.
type w struct {
	batch pgx.Batch
	what  []string
}

func (w *w) queue(what, sql string, args ...any) {
	w.batch.Queue(sql, args...)
	w.what = append(w.what, what)
}

func (w *w) insertStep(jobID int64, idx int, st *store.Step, what string) {
	w.queue(what, `INSERT INTO steps (job_id, idx, name, status, reason, exit_code, attempts, started_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, append([]any{jobID, idx}, stepRow(st)...)...)
}

// batcher sends a batch: a pgx.Tx, or a connection of the pool.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// send runs the writes in order; the first that fails ends it.
func (w *w) send(ctx context.Context, tx batcher) error {
	if len(w.what) == 0 {
		return nil
	}
	res := tx.SendBatch(ctx, &w.batch)
	for _, what := range w.what {
		if _, err := res.Exec(); err != nil {
			res.Close()
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return res.Close()
}

// buildRow is the build's columns that Update writes back, in the order of
// buildSet. ID, RepoID, Repo, Number, DeliveryID and CreatedAt name the
// build, and FromFork, Environment and Release are part of what it is:
// they are written only by CreateBuild.
func buildRow(b *store.Build) []any {
	var pipeline any
	if b.Pipeline != nil {
		pipeline = bytes.Clone(b.Pipeline) // a copy, so a change fn makes in place shows
	}
	return []any{b.Status, b.Reason, b.Event, b.Branch, b.Tag, b.Commit, b.BaseBranch, b.PullRequest,
		b.Title, b.Author, b.Message, pipeline, b.RetryOf, nullTime(b.StartedAt), nullTime(b.FinishedAt)}
}

// buildSet's parameters start at $2: $1 is the build's ID.
const buildSet = `status = $2, reason = $3, event = $4, branch = $5, tag = $6, commit_sha = $7, base_branch = $8,
	pull_request = $9, title = $10, author = $11, message = $12, pipeline = $13, retry_of = $14, started_at = $15,
	finished_at = $16`

// jobRow is the job's columns that Update writes back, in the order of
// jobSet. ID, BuildID, Position and CreatedAt name the job and are written
// only by CreateBuild.
func jobRow(j *store.Job) []any {
	return []any{j.Name, j.Status, j.Reason, j.ExitCode, labels(j.RunsOn), j.Agent, j.LeaseToken,
		nullTime(j.LeaseExpires), j.Attempt, nullTime(j.QueuedAt), nullTime(j.StartedAt), nullTime(j.FinishedAt)}
}

// jobSet's parameters start at $2: $1 is the job's ID.
const jobSet = `name = $2, status = $3, reason = $4, exit_code = $5, runs_on = $6, agent = $7, lease_token = $8,
	lease_expires = $9, attempt = $10, queued_at = $11, started_at = $12, finished_at = $13`

// stepRow is the step's columns other than its key, in the order of stepSet.
// A step's key is its position in Job.Steps; Step.Index is read back as
// that position.
func stepRow(st *store.Step) []any {
	return []any{st.Name, st.Status, st.Reason, st.ExitCode, st.Attempts, nullTime(st.StartedAt), nullTime(st.FinishedAt)}
}

// stepSet's parameters start at $3: $1 and $2 are the step's job and index.
const stepSet = `name = $3, status = $4, reason = $5, exit_code = $6, attempts = $7, started_at = $8, finished_at = $9`

// buildColumns reads a build with its repo's name; %s is the pipeline
// column or NULL.
const buildColumns = `b.id, b.repo_id, r.name, b.number, b.status, b.reason, b.event, b.branch, b.tag, b.commit_sha,
	b.base_branch, b.pull_request, b.title, b.author, b.message, coalesce(b.delivery_id, ''), %s, b.retry_of,
	b.created_at, b.started_at, b.finished_at, b.from_fork, b.environment, b.release_version`

func buildSelect(withPipeline bool) string {
	p := "NULL::bytea"
	if withPipeline {
		p = "b.pipeline"
	}
	return `SELECT ` + fmt.Sprintf(buildColumns, p) + ` FROM builds AS b JOIN repos AS r ON r.id = b.repo_id`
}

func scanBuild(sc pgx.Row) (*store.Build, error) {
	b := &store.Build{}
	err := sc.Scan(buildDest(b)...)
	return b, err
}

// buildDest is where the columns of buildColumns scan to.
func buildDest(b *store.Build) []any {
	return []any{&b.ID, &b.RepoID, &b.Repo, &b.Number, &b.Status, &b.Reason, &b.Event, &b.Branch, &b.Tag, &b.Commit,
		&b.BaseBranch, &b.PullRequest, &b.Title, &b.Author, &b.Message, &b.DeliveryID, &b.Pipeline, &b.RetryOf,
		ts(&b.CreatedAt), ts(&b.StartedAt), ts(&b.FinishedAt), &b.FromFork, &b.Environment, &b.Release}
}

// jobColumns are a job's columns, as jobDest scans them.
const jobColumns = `id, build_id, name, position, status, reason, exit_code, runs_on, locks, agent, lease_token, ` +
	`lease_expires, attempt, created_at, queued_at, started_at, finished_at`

const jobSelect = `SELECT ` + jobColumns + ` FROM jobs`

func scanJob(sc pgx.Row) (*store.Job, error) {
	j := &store.Job{}
	if err := sc.Scan(jobDest(j)...); err != nil {
		return nil, err
	}
	return normJob(j), nil
}

// jobDest is where the columns of jobColumns scan to.
func jobDest(j *store.Job) []any {
	return []any{&j.ID, &j.BuildID, &j.Name, &j.Position, &j.Status, &j.Reason, &j.ExitCode, &j.RunsOn, &j.Locks, &j.Agent,
		&j.LeaseToken, ts(&j.LeaseExpires), &j.Attempt, ts(&j.CreatedAt), ts(&j.QueuedAt), ts(&j.StartedAt), ts(&j.FinishedAt)}
}

// normJob reads empty label and lock lists back as nil, as sqlite does.
func normJob(j *store.Job) *store.Job {
	if len(j.RunsOn) == 0 {
		j.RunsOn = nil
	}
	if len(j.Locks) == 0 {
		j.Locks = nil
	}
	return j
}

// loadBuild reads a build with its jobs, in Position order, and their
// steps when withSteps; store.ErrNotFound when there is none. The queries
// go in one round trip and run in order in tx.
func loadBuild(ctx context.Context, tx pgx.Tx, id int64, withSteps, lock bool) (_ *store.Build, err error) {
	batch := &pgx.Batch{}
	queueLoad(batch, id, withSteps, lock)
	res := tx.SendBatch(ctx, batch)
	defer func() {
		if cerr := res.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return readLoad(res, withSteps)
}

// queueLoad queues the queries of a build with its jobs, and their steps
// when withSteps, for readLoad to read.
//
// With lock, the build's row and then its jobs' rows, by ID, are locked
// FOR NO KEY UPDATE until the transaction ends: that is what serializes
// Updates of one build against each other and against Leases of its jobs
// (which skip a locked job), while log inserts, which only take a
// key-share lock on their job, go on.
func queueLoad(batch *pgx.Batch, id int64, withSteps, lock bool) {
	q, jq := buildSelect(true)+` WHERE b.id = $1`, jobSelect+` WHERE build_id = $1 ORDER BY id`
	if lock {
		q += ` FOR NO KEY UPDATE OF b`
		jq += ` FOR NO KEY UPDATE`
	}
	batch.Queue(q, id)
	batch.Queue(jq, id)
	if withSteps {
		batch.Queue(`SELECT s.job_id, s.idx, s.name, s.status, s.reason, s.exit_code, s.attempts,
				s.started_at, s.finished_at
			FROM steps AS s JOIN jobs AS j ON j.id = s.job_id WHERE j.build_id = $1 ORDER BY s.job_id, s.idx`, id)
	}
}

// readLoad reads the results of queueLoad.
func readLoad(res pgx.BatchResults, withSteps bool) (*store.Build, error) {
	b, err := scanBuild(res.QueryRow())
	if err != nil {
		return nil, translate(err)
	}
	rows, err := res.Query()
	if err != nil {
		return nil, err
	}
	byID := map[int64]*store.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		b.Jobs = append(b.Jobs, j)
		byID[j.ID] = j
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(b.Jobs, func(x, y *store.Job) int { return x.Position - y.Position })
	if !withSteps {
		return b, nil
	}
	rows, err = res.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var jobID int64
		st := &store.Step{}
		if err := rows.Scan(&jobID, &st.Index, &st.Name, &st.Status, &st.Reason, &st.ExitCode, &st.Attempts,
			ts(&st.StartedAt), ts(&st.FinishedAt)); err != nil {
			return nil, err
		}
		if j := byID[jobID]; j != nil {
			j.Steps = append(j.Steps, st)
		}
	}
	rows.Close()
	return b, rows.Err()
}

// Build returns a build with its jobs, in Position order, and their steps,
// from one snapshot, in one round trip.
func (s *Store) Build(ctx context.Context, id int64) (*store.Build, error) {
	var b *store.Build
	err := s.readBatch(ctx, func(batch *pgx.Batch) { queueLoad(batch, id, true, false) },
		func(res pgx.BatchResults) (err error) {
			b, err = readLoad(res, true)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("build %d: %w", id, err)
	}
	return b, nil
}

// Builds returns the builds that match f, newest (highest ID) first, with
// their jobs but without steps or pipeline. A Repo that does not exist
// matches nothing; it is not an error. A Limit of 0 or less means 50.
func (s *Store) Builds(ctx context.Context, f store.BuildFilter) ([]*store.Build, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Repo != "" {
		add("r.name = $%d", f.Repo)
	}
	if f.Branch != "" {
		add("b.branch = $%d", f.Branch)
	}
	if f.Status != "" {
		add("b.status = $%d", f.Status)
	}
	if f.Blocked {
		where = append(where, "b.status = 'queued' AND NOT EXISTS (SELECT 1 FROM jobs AS bj WHERE bj.build_id = b.id AND bj.status <> 'pending')")
	}
	if f.Unfinished {
		where = append(where, "b.status IN ('pending', 'queued', 'running')")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q := buildSelect(false)
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY b.id DESC LIMIT $%d", len(args))

	// The jobs of the same builds: the same query, in the same snapshot,
	// gives the same IDs.
	jq := jobSelect + ` WHERE build_id IN (SELECT b.id FROM builds AS b JOIN repos AS r ON r.id = b.repo_id` +
		strings.TrimPrefix(q, buildSelect(false)) + `) ORDER BY build_id, position`

	var out []*store.Build
	err := s.readBatch(ctx, func(batch *pgx.Batch) {
		batch.Queue(q, args...)
		batch.Queue(jq, args...)
	}, func(res pgx.BatchResults) error {
		rows, err := res.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		byID := map[int64]*store.Build{}
		for rows.Next() {
			b, err := scanBuild(rows)
			if err != nil {
				return err
			}
			out = append(out, b)
			byID[b.ID] = b
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		rows, err = res.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return err
			}
			b := byID[j.BuildID]
			if b == nil {
				return fmt.Errorf("job %d of build %d, which the listing does not hold", j.ID, j.BuildID)
			}
			b.Jobs = append(b.Jobs, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	return out, nil
}

// BuildIDs returns the IDs of builds in any of these statuses, oldest
// (lowest ID) first; none when no status is given.
func (s *Store) BuildIDs(ctx context.Context, statuses ...string) ([]int64, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM builds WHERE status = ANY($1) ORDER BY id`, statuses)
	if err != nil {
		return nil, fmt.Errorf("build IDs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("build IDs: %w", err)
	}
	return ids, nil
}

// Update runs fn on the build inside a transaction that holds the build's
// row and its jobs' rows locked, and writes back the rows fn changed: the
// build's, each job's, each step's, in one round trip. An Update of the
// same build from this or another server waits for this one to end, then
// reads what it wrote; a Lease skips the build's jobs meanwhile.
//
// What fn may change: every field but the ones that name a row (the
// build's ID, RepoID, Repo, Number, DeliveryID and CreatedAt; a job's ID,
// BuildID, Position and CreatedAt), which are not written back. fn may
// append steps to a job and may also truncate a job's steps (a requeued job
// starts its steps afresh): the stored steps are then exactly Job.Steps,
// keyed by their position in it. fn may not add or remove jobs; Update
// then fails and writes nothing. fn may call the Store, but a write to
// the same build from fn waits for ever, for the locks fn's caller holds.
func (s *Store) Update(ctx context.Context, buildID int64, fn func(b *store.Build) error) error {
	var fnErr error
	err := func() error {
		var b *store.Build
		t, err := s.beginWith(ctx, func(batch *pgx.Batch) { queueLoad(batch, buildID, true, true) },
			func(res pgx.BatchResults) (err error) {
				b, err = readLoad(res, true)
				return err
			})
		if err != nil {
			return err
		}
		defer t.end(ctx)
		type stepKey struct {
			job int64
			idx int
		}
		before := buildRow(b)
		jobsBefore := make(map[int64][]any, len(b.Jobs))
		stepsBefore := map[stepKey][]any{}
		nsteps := make(map[int64]int, len(b.Jobs))
		for _, j := range b.Jobs {
			jobsBefore[j.ID] = jobRow(j)
			nsteps[j.ID] = len(j.Steps)
			for i, st := range j.Steps {
				stepsBefore[stepKey{j.ID, i}] = stepRow(st)
			}
		}

		if err := fn(b); err != nil {
			fnErr = err
			return err
		}

		if len(b.Jobs) != len(jobsBefore) {
			return fmt.Errorf("fn changed the number of jobs from %d to %d", len(jobsBefore), len(b.Jobs))
		}
		seen := make(map[int64]bool, len(b.Jobs))
		for _, j := range b.Jobs {
			if j == nil || jobsBefore[j.ID] == nil || seen[j.ID] {
				return errors.New("fn added or removed jobs")
			}
			seen[j.ID] = true
		}

		writes := &w{}
		if after := buildRow(b); !reflect.DeepEqual(before, after) {
			writes.queue("build", `UPDATE builds SET `+buildSet+` WHERE id = $1`, append([]any{buildID}, after...)...)
		}
		for _, j := range b.Jobs {
			if after := jobRow(j); !reflect.DeepEqual(jobsBefore[j.ID], after) {
				writes.queue(fmt.Sprintf("job %q", j.Name), `UPDATE jobs SET `+jobSet+` WHERE id = $1`, append([]any{j.ID}, after...)...)
			}
			for i, st := range j.Steps {
				old, ok := stepsBefore[stepKey{j.ID, i}]
				what := fmt.Sprintf("job %q: step %d", j.Name, i)
				switch {
				case st == nil:
					return fmt.Errorf("%s is nil", what)
				case !ok:
					writes.insertStep(j.ID, i, st, what)
				default:
					if after := stepRow(st); !reflect.DeepEqual(old, after) {
						writes.queue(what, `UPDATE steps SET `+stepSet+` WHERE job_id = $1 AND idx = $2`,
							append([]any{j.ID, i}, after...)...)
					}
				}
			}
			if len(j.Steps) < nsteps[j.ID] {
				writes.queue(fmt.Sprintf("job %q", j.Name), `DELETE FROM steps WHERE job_id = $1 AND idx >= $2`, j.ID, len(j.Steps))
			}
		}
		return t.commitWith(ctx, writes)
	}()
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("update build %d: %w", buildID, translate(err))
	}
	return nil
}
