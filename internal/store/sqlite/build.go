package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// CreateBuild stores b, its jobs and their steps (a retry carries over the
// steps of jobs that passed) in one transaction. The repo is b.RepoID;
// store.ErrNotFound when it does not exist. b.Repo is set to its name.
// Nothing in b changes unless the build was stored, except b.ID on a
// delivery conflict, as store.Store documents.
func (s *Store) CreateBuild(ctx context.Context, b *store.Build) error {
	var ins *inserted
	err := s.write(ctx, func(tx *sql.Tx) error {
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

// insertBuild stores b, its jobs and their steps in tx, without changing
// b: CreateBuild and StartDeployment apply what it returns after the
// commit. It returns store.ErrConflict (and the existing build in the
// answer) when a build of the repo has b's delivery ID.
func insertBuild(ctx context.Context, tx *sql.Tx, b *store.Build) (*inserted, error) {
	ins := &inserted{created: now(), jobIDs: make([]int64, len(b.Jobs))}
	if b.DeliveryID != "" {
		err := tx.QueryRowContext(ctx, `SELECT id FROM builds WHERE repo_id = ? AND delivery_id = ?`,
			b.RepoID, b.DeliveryID).Scan(&ins.existing)
		if err == nil {
			return ins, store.ErrConflict
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	// The repo's counter gives the number; incrementing it locks the
	// repo's row on PostgreSQL too, and a rollback gives it back.
	err := tx.QueryRowContext(ctx, `UPDATE repos SET last_build = last_build + 1 WHERE id = ? RETURNING name, last_build`,
		b.RepoID).Scan(&ins.repo, &ins.number)
	if err != nil {
		return nil, err
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO builds (repo_id, number, delivery_id, created_at, from_fork, environment, release_version,
			status, reason, event, branch, tag, commit_sha, base_branch, pull_request, title, author, message,
			pipeline, retry_of, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		append([]any{b.RepoID, ins.number, nullString(b.DeliveryID), nanos(ins.created), b.FromFork, b.Environment, b.Release},
			buildRow(b)...)...).Scan(&ins.id)
	if err != nil {
		return nil, err
	}
	for i, j := range b.Jobs {
		if j == nil {
			return nil, fmt.Errorf("job %d is nil", i)
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO jobs (build_id, position, created_at, locks,
				name, status, reason, exit_code, runs_on, agent, lease_token, lease_expires, attempt,
				queued_at, started_at, finished_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			append([]any{ins.id, j.Position, nanos(ins.created), labelsJSON(j.Locks)}, jobRow(j)...)...).Scan(&ins.jobIDs[i])
		if err != nil {
			return nil, fmt.Errorf("job %q: %w", j.Name, err)
		}
		for k, st := range j.Steps {
			if err := insertStep(ctx, tx, ins.jobIDs[i], k, st); err != nil {
				return nil, fmt.Errorf("job %q: %w", j.Name, err)
			}
		}
	}
	return ins, nil
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
		b.Title, b.Author, b.Message, pipeline, b.RetryOf, nanos(b.StartedAt), nanos(b.FinishedAt)}
}

const buildSet = `status = ?, reason = ?, event = ?, branch = ?, tag = ?, commit_sha = ?, base_branch = ?,
	pull_request = ?, title = ?, author = ?, message = ?, pipeline = ?, retry_of = ?, started_at = ?, finished_at = ?`

// jobRow is the job's columns that Update writes back, in the order of
// jobSet. ID, BuildID, Position and CreatedAt name the job, and Locks are
// part of its definition: they are written only by CreateBuild.
func jobRow(j *store.Job) []any {
	return []any{j.Name, j.Status, j.Reason, j.ExitCode, labelsJSON(j.RunsOn), j.Agent, j.LeaseToken,
		nanos(j.LeaseExpires), j.Attempt, nanos(j.QueuedAt), nanos(j.StartedAt), nanos(j.FinishedAt)}
}

const jobSet = `name = ?, status = ?, reason = ?, exit_code = ?, runs_on = ?, agent = ?, lease_token = ?,
	lease_expires = ?, attempt = ?, queued_at = ?, started_at = ?, finished_at = ?`

// stepRow is the step's columns other than its key, in the order of stepSet.
// A step's key is its position in Job.Steps; Step.Index is read back as
// that position.
func stepRow(st *store.Step) []any {
	return []any{st.Name, st.Status, st.Reason, st.ExitCode, st.Attempts, nanos(st.StartedAt), nanos(st.FinishedAt)}
}

const stepSet = `name = ?, status = ?, reason = ?, exit_code = ?, attempts = ?, started_at = ?, finished_at = ?`

func insertStep(ctx context.Context, tx *sql.Tx, jobID int64, idx int, st *store.Step) error {
	if st == nil {
		return fmt.Errorf("step %d is nil", idx)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO steps (job_id, idx, name, status, reason, exit_code, attempts, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, append([]any{jobID, idx}, stepRow(st)...)...)
	if err != nil {
		return fmt.Errorf("step %d: %w", idx, err)
	}
	return nil
}

// labelsJSON is RunsOn as stored: a JSON array, never null.
func labelsJSON(labels []string) string {
	if len(labels) == 0 {
		return "[]"
	}
	data, _ := json.Marshal(labels) // []string always marshals
	return string(data)
}

// buildColumns reads a build with its repo's name; %s is the pipeline
// column or NULL.
const buildColumns = `b.id, b.repo_id, r.name, b.number, b.status, b.reason, b.event, b.branch, b.tag, b.commit_sha,
	b.base_branch, b.pull_request, b.title, b.author, b.message, coalesce(b.delivery_id, ''), %s, b.retry_of,
	b.created_at, b.started_at, b.finished_at, b.from_fork, b.environment, b.release_version`

func buildSelect(withPipeline bool) string {
	p := "NULL"
	if withPipeline {
		p = "b.pipeline"
	}
	return `SELECT ` + fmt.Sprintf(buildColumns, p) + ` FROM builds AS b JOIN repos AS r ON r.id = b.repo_id`
}

func scanBuild(sc interface{ Scan(...any) error }) (*store.Build, error) {
	b := &store.Build{}
	err := sc.Scan(&b.ID, &b.RepoID, &b.Repo, &b.Number, &b.Status, &b.Reason, &b.Event, &b.Branch, &b.Tag, &b.Commit,
		&b.BaseBranch, &b.PullRequest, &b.Title, &b.Author, &b.Message, &b.DeliveryID, &b.Pipeline, &b.RetryOf,
		ts(&b.CreatedAt), ts(&b.StartedAt), ts(&b.FinishedAt), &b.FromFork, &b.Environment, &b.Release)
	return b, err
}

const jobSelect = `SELECT id, build_id, name, position, status, reason, exit_code, runs_on, locks, agent, lease_token,
	lease_expires, attempt, created_at, queued_at, started_at, finished_at FROM jobs`

func scanJob(sc interface{ Scan(...any) error }) (*store.Job, error) {
	j := &store.Job{}
	var runsOn, locks string
	err := sc.Scan(&j.ID, &j.BuildID, &j.Name, &j.Position, &j.Status, &j.Reason, &j.ExitCode, &runsOn, &locks, &j.Agent,
		&j.LeaseToken, ts(&j.LeaseExpires), &j.Attempt, ts(&j.CreatedAt), ts(&j.QueuedAt), ts(&j.StartedAt), ts(&j.FinishedAt))
	if err != nil {
		return nil, err
	}
	if j.RunsOn, err = parseLabels(runsOn); err != nil {
		return nil, fmt.Errorf("job %d: runs_on: %w", j.ID, err)
	}
	if j.Locks, err = parseLabels(locks); err != nil {
		return nil, fmt.Errorf("job %d: locks: %w", j.ID, err)
	}
	return j, nil
}

// loadBuild reads a build with its jobs, and their steps when withSteps;
// store.ErrNotFound when there is none.
func loadBuild(ctx context.Context, q *sql.Tx, id int64, withSteps bool) (*store.Build, error) {
	b, err := scanBuild(q.QueryRowContext(ctx, buildSelect(true)+` WHERE b.id = ?`, id))
	if err != nil {
		return nil, translate(err)
	}
	rows, err := q.QueryContext(ctx, jobSelect+` WHERE build_id = ? ORDER BY position`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := map[int64]*store.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		b.Jobs = append(b.Jobs, j)
		byID[j.ID] = j
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if !withSteps || len(b.Jobs) == 0 {
		return b, nil
	}
	rows, err = q.QueryContext(ctx, `SELECT s.job_id, s.idx, s.name, s.status, s.reason, s.exit_code, s.attempts,
			s.started_at, s.finished_at
		FROM steps AS s JOIN jobs AS j ON j.id = s.job_id WHERE j.build_id = ? ORDER BY s.job_id, s.idx`, id)
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
	return b, rows.Err()
}

// Build returns a build with its jobs, in Position order, and their steps.
func (s *Store) Build(ctx context.Context, id int64) (*store.Build, error) {
	var b *store.Build
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		b, err = loadBuild(ctx, tx, id, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("build %d: %w", id, err)
	}
	return b, nil
}

// buildsQuery is the query of Builds. Unfinished's condition is, word for
// word, the WHERE of the partial index builds_unfinished (migration 0013):
// SQLite uses a partial index only for a query whose terms match it.
func buildsQuery(f store.BuildFilter) (string, []any) {
	var where []string
	var args []any
	if f.Repo != "" {
		where, args = append(where, "r.name = ?"), append(args, f.Repo)
	}
	if f.Branch != "" {
		where, args = append(where, "b.branch = ?"), append(args, f.Branch)
	}
	if f.Status != "" {
		where, args = append(where, "b.status = ?"), append(args, f.Status)
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
	q += " ORDER BY b.id DESC LIMIT ?"
	args = append(args, limit)
	return q, args
}

// Builds returns the builds that match f, newest (highest ID) first, with
// their jobs but without steps or pipeline. A Repo that does not exist
// matches nothing; it is not an error. A Limit of 0 or less means 50.
func (s *Store) Builds(ctx context.Context, f store.BuildFilter) ([]*store.Build, error) {
	q, args := buildsQuery(f)
	var out []*store.Build
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		byID := map[int64]*store.Build{}
		var ids []int64
		for rows.Next() {
			b, err := scanBuild(rows)
			if err != nil {
				return err
			}
			out = append(out, b)
			byID[b.ID] = b
			ids = append(ids, b.ID)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		idsJSON, _ := json.Marshal(ids)
		rows, err = tx.QueryContext(ctx, jobSelect+` WHERE build_id IN (SELECT value FROM json_each(?))
			ORDER BY build_id, position`, string(idsJSON))
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
	data, _ := json.Marshal(statuses)
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM builds WHERE status IN (SELECT value FROM json_each(?)) ORDER BY id`, string(data))
	if err != nil {
		return nil, fmt.Errorf("build IDs: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("build IDs: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("build IDs: %w", err)
	}
	return ids, nil
}

// Update runs fn on the build inside a write transaction, and writes back
// the rows fn changed: the build's, each job's, each step's. Since every
// write holds the single write connection, no other Update, Lease, Renew
// or AppendLogs interleaves with it, whatever build it concerns.
//
// What fn may change: every field but the ones that name a row (the
// build's ID, RepoID, Repo, Number, DeliveryID and CreatedAt; a job's ID,
// BuildID, Position and CreatedAt), which are not written back. fn may
// append steps to a job and may also truncate a job's steps (a requeued job
// starts its steps afresh): the stored steps are then exactly Job.Steps,
// keyed by their position in it. fn may not add or remove jobs; Update
// then fails and writes nothing. fn must not call the Store's write
// methods, which would wait for ever for the connection fn's transaction
// holds; reads are fine.
func (s *Store) Update(ctx context.Context, buildID int64, fn func(b *store.Build) error) error {
	var fnErr error
	err := s.write(ctx, func(tx *sql.Tx) error {
		b, err := loadBuild(ctx, tx, buildID, true)
		if err != nil {
			return err
		}
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

		if after := buildRow(b); !reflect.DeepEqual(before, after) {
			if _, err := tx.ExecContext(ctx, `UPDATE builds SET `+buildSet+` WHERE id = ?`, append(after, buildID)...); err != nil {
				return err
			}
		}
		for _, j := range b.Jobs {
			if after := jobRow(j); !reflect.DeepEqual(jobsBefore[j.ID], after) {
				if _, err := tx.ExecContext(ctx, `UPDATE jobs SET `+jobSet+` WHERE id = ?`, append(after, j.ID)...); err != nil {
					return fmt.Errorf("job %q: %w", j.Name, err)
				}
			}
			for i, st := range j.Steps {
				old, ok := stepsBefore[stepKey{j.ID, i}]
				switch {
				case !ok:
					if err := insertStep(ctx, tx, j.ID, i, st); err != nil {
						return fmt.Errorf("job %q: %w", j.Name, err)
					}
				case st == nil:
					return fmt.Errorf("job %q: step %d is nil", j.Name, i)
				default:
					if after := stepRow(st); !reflect.DeepEqual(old, after) {
						if _, err := tx.ExecContext(ctx, `UPDATE steps SET `+stepSet+` WHERE job_id = ? AND idx = ?`,
							append(after, j.ID, i)...); err != nil {
							return fmt.Errorf("job %q: step %d: %w", j.Name, i, err)
						}
					}
				}
			}
			if len(j.Steps) < nsteps[j.ID] {
				if _, err := tx.ExecContext(ctx, `DELETE FROM steps WHERE job_id = ? AND idx >= ?`, j.ID, len(j.Steps)); err != nil {
					return fmt.Errorf("job %q: %w", j.Name, err)
				}
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("update build %d: %w", buildID, translate(err))
	}
	return nil
}
