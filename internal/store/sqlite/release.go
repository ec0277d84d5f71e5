package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// AddArtifact records an artifact of a job running under token.
func (s *Store) AddArtifact(ctx context.Context, a *store.Artifact, token int64) error {
	created := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT name FROM jobs
			WHERE id = ? AND build_id = ? AND status = 'running' AND lease_token = ? AND lease_token > 0`,
			a.JobID, a.BuildID, token).Scan(&a.Job)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		// Another job's artifact at the path stays: the WHERE of the
		// upsert refuses it, and no row comes back.
		err = tx.QueryRowContext(ctx, `INSERT INTO artifacts (build_id, job_id, path, size, mode, sha256, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (build_id, path) DO UPDATE SET size = excluded.size, mode = excluded.mode, sha256 = excluded.sha256,
				created_at = excluded.created_at
				WHERE artifacts.job_id = excluded.job_id
			RETURNING id`, a.BuildID, a.JobID, a.Path, a.Size, a.Mode, a.SHA256, nanos(created)).Scan(&a.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("another job of build %d has an artifact at %s: %w", a.BuildID, a.Path, store.ErrConflict)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add artifact %s of job %d: %w", a.Path, a.JobID, translate(err))
	}
	a.CreatedAt = created
	return nil
}

const artifactSelect = `SELECT a.id, a.build_id, a.job_id, j.name, a.path, a.size, a.mode, a.sha256, a.created_at
	FROM artifacts AS a JOIN jobs AS j ON j.id = a.job_id`

func scanArtifact(sc interface{ Scan(...any) error }) (*store.Artifact, error) {
	a := &store.Artifact{}
	return a, sc.Scan(&a.ID, &a.BuildID, &a.JobID, &a.Job, &a.Path, &a.Size, &a.Mode, &a.SHA256, ts(&a.CreatedAt))
}

// Artifacts returns a build's artifacts by path.
func (s *Store) Artifacts(ctx context.Context, buildID int64) ([]*store.Artifact, error) {
	return queryAll(ctx, s.r, fmt.Sprintf("artifacts of build %d", buildID), scanArtifact,
		artifactSelect+` WHERE a.build_id = ? ORDER BY a.path`, buildID)
}

// ExpireArtifacts removes the artifacts created before t that no release
// refers to.
func (s *Store) ExpireArtifacts(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM artifacts WHERE created_at < ?
			AND NOT EXISTS (SELECT 1 FROM release_artifacts AS ra WHERE ra.artifact_id = artifacts.id)`, before.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire artifacts: %w", translate(err))
	}
	return int(n), nil
}

// ArtifactInUse reports whether an artifact with that digest is recorded.
func (s *Store) ArtifactInUse(ctx context.Context, sha256 string) (bool, error) {
	var ok bool
	err := s.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?)`, sha256).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("artifact %s in use: %w", sha256, err)
	}
	return ok, nil
}

// ensureEnvironment makes the environment when the repo has none of that
// name, and returns its ID.
func ensureEnvironment(ctx context.Context, tx *sql.Tx, repoID int64, name string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO environments (repo_id, name, created_at) VALUES (?, ?, ?)
		ON CONFLICT (repo_id, name) DO NOTHING`, repoID, name, nanos(now())); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM environments WHERE repo_id = ? AND name = ?`, repoID, name).Scan(&id)
	return id, err
}

// CreateRelease stores r, its artifacts' references, the environments and
// the deployments in one transaction.
func (s *Store) CreateRelease(ctx context.Context, r *store.Release, envs []string, deploys []*store.Deployment) error {
	created := now()
	authors, err := json.Marshal(nonNil(r.Authors))
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.Version, err)
	}
	var id int64
	depIDs := make([]int64, len(deploys))
	err = s.write(ctx, func(tx *sql.Tx) error {
		var buildRepo int64
		if err := tx.QueryRowContext(ctx, `SELECT repo_id FROM builds WHERE id = ?`, r.BuildID).Scan(&buildRepo); err != nil {
			return fmt.Errorf("build %d: %w", r.BuildID, err)
		}
		if buildRepo != r.RepoID {
			return fmt.Errorf("build %d is of another repo: %w", r.BuildID, store.ErrNotFound)
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO releases (repo_id, version, build_id, commit_sha, branch, tag, authors, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.RepoID, r.Version, r.BuildID, r.Commit, r.Branch, r.Tag, string(authors), nanos(created)).Scan(&id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO release_artifacts (release_id, artifact_id)
			SELECT ?, id FROM artifacts WHERE build_id = ?`, id, r.BuildID); err != nil {
			return err
		}
		for _, k := range r.Issues {
			if _, err := tx.ExecContext(ctx, `INSERT INTO release_issues (issue, release_id) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, k, id); err != nil {
				return err
			}
		}
		for _, e := range envs {
			if _, err := ensureEnvironment(ctx, tx, r.RepoID, e); err != nil {
				return err
			}
		}
		for i, d := range deploys {
			d.RepoID, d.ReleaseID = r.RepoID, id
			if depIDs[i], err = insertDeployment(ctx, tx, d, created); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.Version, translate(err))
	}
	got, err := s.ReleaseByID(ctx, id)
	if err != nil {
		return err
	}
	*r = *got
	for i, d := range deploys {
		d.ID, d.CreatedAt, d.Repo, d.Version = depIDs[i], created, r.Repo, r.Version
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const releaseSelect = `SELECT rl.id, rl.repo_id, r.name, rl.version, rl.build_id, b.number, rl.commit_sha, rl.branch, rl.tag,
	rl.authors, rl.created_at
	FROM releases AS rl JOIN repos AS r ON r.id = rl.repo_id JOIN builds AS b ON b.id = rl.build_id`

func scanRelease(sc interface{ Scan(...any) error }) (*store.Release, error) {
	r := &store.Release{}
	var authors string
	if err := sc.Scan(&r.ID, &r.RepoID, &r.Repo, &r.Version, &r.BuildID, &r.BuildNumber, &r.Commit, &r.Branch, &r.Tag,
		&authors, ts(&r.CreatedAt)); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(authors), &r.Authors); err != nil {
		return nil, fmt.Errorf("release %d: authors: %w", r.ID, err)
	}
	return r, nil
}

// releases reads releases and their artifacts in one snapshot.
func (s *Store) releases(ctx context.Context, what, where string, args ...any) ([]*store.Release, error) {
	var out []*store.Release
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		if out, err = queryAll(ctx, tx, what, scanRelease, releaseSelect+" "+where, args...); err != nil {
			return err
		}
		for _, r := range out {
			if r.Artifacts, err = queryAll(ctx, tx, what, scanArtifact, artifactSelect+`
				JOIN release_artifacts AS ra ON ra.artifact_id = a.id WHERE ra.release_id = ? ORDER BY a.path`, r.ID); err != nil {
				return err
			}
			if r.Issues, err = queryAll(ctx, tx, what, scanString,
				`SELECT issue FROM release_issues WHERE release_id = ? ORDER BY issue`, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) oneRelease(ctx context.Context, what, where string, args ...any) (*store.Release, error) {
	rs, err := s.releases(ctx, what, where, args...)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return rs[0], nil
}

// Release returns a repo's release of that version.
func (s *Store) Release(ctx context.Context, repo, version string) (*store.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release %s of %s", version, repo), `WHERE r.name = ? AND rl.version = ?`, repo, version)
}

// ReleaseByID returns a release.
func (s *Store) ReleaseByID(ctx context.Context, id int64) (*store.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release %d", id), `WHERE rl.id = ?`, id)
}

// ReleaseOfBuild returns the release a build made.
func (s *Store) ReleaseOfBuild(ctx context.Context, buildID int64) (*store.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release of build %d", buildID), `WHERE rl.build_id = ?`, buildID)
}

// ListReleases returns releases, newest first.
func (s *Store) ListReleases(ctx context.Context, f store.ReleaseFilter) ([]*store.Release, error) {
	var where []string
	var args []any
	if f.Repo != "" {
		where, args = append(where, "r.name = ?"), append(args, f.Repo)
	}
	if f.Branch != "" {
		where, args = append(where, "rl.branch = ?"), append(args, f.Branch)
	}
	q := ""
	if len(where) > 0 {
		q = "WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	return s.releases(ctx, "releases", q+` ORDER BY rl.id DESC LIMIT ?`, append(args, limit)...)
}

// Environments returns a repo's environments in the order first seen.
func (s *Store) Environments(ctx context.Context, repo string) ([]string, error) {
	var out []string
	err := s.read(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM repos WHERE name = ?`, repo).Scan(&id); err != nil {
			return err
		}
		var err error
		out, err = queryAll(ctx, tx, "environments", func(sc interface{ Scan(...any) error }) (string, error) {
			var n string
			return n, sc.Scan(&n)
		}, `SELECT name FROM environments WHERE repo_id = ? ORDER BY id`, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("environments of %s: %w", repo, translate(err))
	}
	return out, nil
}

// insertDeployment stores d in tx, making its environment.
func insertDeployment(ctx context.Context, tx *sql.Tx, d *store.Deployment, created time.Time) (int64, error) {
	var releaseRepo int64
	if err := tx.QueryRowContext(ctx, `SELECT repo_id FROM releases WHERE id = ?`, d.ReleaseID).Scan(&releaseRepo); err != nil {
		return 0, fmt.Errorf("release %d: %w", d.ReleaseID, err)
	}
	if releaseRepo != d.RepoID {
		return 0, fmt.Errorf("release %d is of another repo: %w", d.ReleaseID, store.ErrNotFound)
	}
	envID, err := ensureEnvironment(ctx, tx, d.RepoID, d.Environment)
	if err != nil {
		return 0, err
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO deployments (environment_id, release_id, kind, requested_by, rollback_of,
			state, reason, build_id, created_at, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		envID, d.ReleaseID, d.Kind, d.RequestedBy, nullID(d.RollbackOf), d.State, d.Reason, nullID(d.BuildID),
		nanos(created), nanos(d.StartedAt), nanos(d.FinishedAt)).Scan(&id)
	return id, err
}

// CreateDeployment stores d.
func (s *Store) CreateDeployment(ctx context.Context, d *store.Deployment) error {
	created := now()
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = insertDeployment(ctx, tx, d, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("create deployment of release %d to %s: %w", d.ReleaseID, d.Environment, translate(err))
	}
	got, err := s.Deployment(ctx, id)
	if err != nil {
		return err
	}
	*d = *got
	return nil
}

// StartDeployment stores b and makes the pending deployment id running
// with it. The single writer keeps starts of one environment apart.
func (s *Store) StartDeployment(ctx context.Context, id int64, b *store.Build) error {
	var ins *inserted
	started := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		var envID int64
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT environment_id, state FROM deployments WHERE id = ?`, id).Scan(&envID, &state); err != nil {
			return err
		}
		if state != store.DeployPending {
			return fmt.Errorf("deployment is %s, not pending: %w", state, store.ErrConflict)
		}
		var running int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM deployments WHERE environment_id = ? AND state = ? LIMIT 1`,
			envID, store.DeployRunning).Scan(&running)
		if err == nil {
			return fmt.Errorf("deployment %d runs in its environment: %w", running, store.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if ins, err = insertBuild(ctx, tx, b); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE deployments SET state = ?, build_id = ?, started_at = ? WHERE id = ?`,
			store.DeployRunning, ins.id, nanos(started), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("start deployment %d: %w", id, translate(err))
	}
	ins.apply(b)
	return nil
}

// EndDeployment moves a deployment in state from to a final state.
func (s *Store) EndDeployment(ctx context.Context, id int64, from, state, reason string) (*store.Deployment, error) {
	if !store.DeployFinished(state) {
		return nil, fmt.Errorf("end deployment %d: %q is not a final state", id, state)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var cur string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM deployments WHERE id = ?`, id).Scan(&cur); err != nil {
			return err
		}
		if store.DeployFinished(cur) {
			return fmt.Errorf("deployment ended %s already: %w", cur, store.ErrConflict)
		}
		if cur != from {
			return fmt.Errorf("deployment is %s, no longer %s: %w", cur, from, store.ErrConflict)
		}
		_, err := tx.ExecContext(ctx, `UPDATE deployments SET state = ?, reason = ?, finished_at = ? WHERE id = ?`,
			state, reason, nanos(now()), id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("end deployment %d: %w", id, translate(err))
	}
	return s.Deployment(ctx, id)
}

const deploymentSelect = `SELECT d.id, e.repo_id, r.name, e.name, d.release_id, rl.version, d.kind, d.requested_by,
	coalesce(d.rollback_of, 0), d.state, d.reason, coalesce(d.build_id, 0), d.created_at, d.started_at, d.finished_at
	FROM deployments AS d JOIN environments AS e ON e.id = d.environment_id JOIN repos AS r ON r.id = e.repo_id
	JOIN releases AS rl ON rl.id = d.release_id`

func scanDeployment(sc interface{ Scan(...any) error }) (*store.Deployment, error) {
	d := &store.Deployment{}
	return d, sc.Scan(&d.ID, &d.RepoID, &d.Repo, &d.Environment, &d.ReleaseID, &d.Version, &d.Kind, &d.RequestedBy,
		&d.RollbackOf, &d.State, &d.Reason, &d.BuildID, ts(&d.CreatedAt), ts(&d.StartedAt), ts(&d.FinishedAt))
}

// Deployment returns a deployment.
func (s *Store) Deployment(ctx context.Context, id int64) (*store.Deployment, error) {
	d, err := scanDeployment(s.r.QueryRowContext(ctx, deploymentSelect+` WHERE d.id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("deployment %d: %w", id, translate(err))
	}
	return d, nil
}

// DeploymentOfBuild returns the deployment a build runs.
func (s *Store) DeploymentOfBuild(ctx context.Context, buildID int64) (*store.Deployment, error) {
	d, err := scanDeployment(s.r.QueryRowContext(ctx, deploymentSelect+` WHERE d.build_id = ?`, buildID))
	if err != nil {
		return nil, fmt.Errorf("deployment of build %d: %w", buildID, translate(err))
	}
	return d, nil
}

// Deployments returns deployments, newest first.
func (s *Store) Deployments(ctx context.Context, f store.DeploymentFilter) ([]*store.Deployment, error) {
	var where []string
	var args []any
	if f.Repo != "" {
		where, args = append(where, "r.name = ?"), append(args, f.Repo)
	}
	if f.Environment != "" {
		where, args = append(where, "e.name = ?"), append(args, f.Environment)
	}
	if f.ReleaseID != 0 {
		where, args = append(where, "d.release_id = ?"), append(args, f.ReleaseID)
	}
	if len(f.States) > 0 {
		where = append(where, "d.state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	q := deploymentSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	return queryAll(ctx, s.r, "deployments", scanDeployment, q+` ORDER BY d.id DESC LIMIT ?`, append(args, limit)...)
}

func scanString(sc interface{ Scan(...any) error }) (string, error) {
	var v string
	return v, sc.Scan(&v)
}
