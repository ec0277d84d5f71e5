package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantry-ci/gantry/internal/store"
)

// AddArtifact records an artifact of a job running under token. The job's
// row is share-locked while the record is made, so a cancel (an Update of
// the job) waits for it, or it sees the cancel: a write under a lost lease
// never lands.
func (s *Store) AddArtifact(ctx context.Context, a *store.Artifact, token int64) error {
	created := now()
	err := s.tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT name FROM jobs
			WHERE id = $1 AND build_id = $2 AND status = 'running' AND lease_token = $3 AND lease_token > 0
			FOR SHARE`, a.JobID, a.BuildID, token).Scan(&a.Job)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		// Another job's artifact at the path stays: the WHERE of the
		// upsert refuses it, and no row comes back.
		err = tx.QueryRow(ctx, `INSERT INTO artifacts (build_id, job_id, path, size, mode, sha256, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (build_id, path) DO UPDATE SET size = excluded.size, mode = excluded.mode, sha256 = excluded.sha256,
				created_at = excluded.created_at
				WHERE artifacts.job_id = excluded.job_id
			RETURNING id`, a.BuildID, a.JobID, a.Path, a.Size, int32(a.Mode), a.SHA256, created).Scan(&a.ID)
		if errors.Is(err, pgx.ErrNoRows) {
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

func scanArtifact(sc pgx.Row) (*store.Artifact, error) {
	a := &store.Artifact{}
	return a, sc.Scan(&a.ID, &a.BuildID, &a.JobID, &a.Job, &a.Path, &a.Size, &a.Mode, &a.SHA256, ts(&a.CreatedAt))
}

// Artifacts returns a build's artifacts by path.
func (s *Store) Artifacts(ctx context.Context, buildID int64) ([]*store.Artifact, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("artifacts of build %d", buildID), scanArtifact,
		artifactSelect+` WHERE a.build_id = $1 ORDER BY a.path COLLATE "C"`, buildID)
}

// ExpireArtifacts removes the artifacts created before t that no release
// refers to. It holds release_artifacts in SHARE mode while it deletes, so
// it waits for the releases being made and they for it: its NOT EXISTS
// sees every reference there is.
func (s *Store) ExpireArtifacts(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE release_artifacts IN SHARE MODE`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM artifacts WHERE created_at < $1
			AND NOT EXISTS (SELECT 1 FROM release_artifacts AS ra WHERE ra.artifact_id = artifacts.id)`, before)
		n = tag.RowsAffected()
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
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = $1)`, sha256).Scan(&ok); err != nil {
		return false, fmt.Errorf("artifact %s in use: %w", sha256, err)
	}
	return ok, nil
}

// ensureEnvironment makes the environment when the repo has none of that
// name, and returns its ID.
func ensureEnvironment(ctx context.Context, tx pgx.Tx, repoID int64, name string) (int64, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO environments (repo_id, name, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (repo_id, name) DO NOTHING`, repoID, name, now()); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM environments WHERE repo_id = $1 AND name = $2`, repoID, name).Scan(&id)
	return id, err
}

// CreateRelease stores r, its artifacts' references, the environments and
// the deployments in one transaction.
func (s *Store) CreateRelease(ctx context.Context, r *store.Release, envs []string, deploys []*store.Deployment) error {
	created := now()
	var id int64
	depIDs := make([]int64, len(deploys))
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var buildRepo int64
		if err := tx.QueryRow(ctx, `SELECT repo_id FROM builds WHERE id = $1`, r.BuildID).Scan(&buildRepo); err != nil {
			return fmt.Errorf("build %d: %w", r.BuildID, err)
		}
		if buildRepo != r.RepoID {
			return fmt.Errorf("build %d is of another repo: %w", r.BuildID, store.ErrNotFound)
		}
		err := tx.QueryRow(ctx, `INSERT INTO releases (repo_id, version, build_id, commit_sha, branch, tag, authors, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			r.RepoID, r.Version, r.BuildID, r.Commit, r.Branch, r.Tag, labels(r.Authors), created).Scan(&id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO release_artifacts (release_id, artifact_id)
			SELECT $1, id FROM artifacts WHERE build_id = $2`, id, r.BuildID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO release_issues (issue, release_id) SELECT k, $2 FROM unnest($1::text[]) AS k
			ON CONFLICT DO NOTHING`, labels(r.Issues), id); err != nil {
			return err
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

const releaseSelect = `SELECT rl.id, rl.repo_id, r.name, rl.version, rl.build_id, b.number, rl.commit_sha, rl.branch, rl.tag,
	rl.authors, rl.created_at
	FROM releases AS rl JOIN repos AS r ON r.id = rl.repo_id JOIN builds AS b ON b.id = rl.build_id`

func scanRelease(sc pgx.Row) (*store.Release, error) {
	r := &store.Release{}
	return r, sc.Scan(&r.ID, &r.RepoID, &r.Repo, &r.Version, &r.BuildID, &r.BuildNumber, &r.Commit, &r.Branch, &r.Tag,
		&r.Authors, ts(&r.CreatedAt))
}

// releases reads releases and their artifacts in one snapshot.
func (s *Store) releases(ctx context.Context, what, where string, args ...any) ([]*store.Release, error) {
	var out []*store.Release
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		if out, err = queryAll(ctx, tx, what, scanRelease, releaseSelect+" "+where, args...); err != nil {
			return err
		}
		for _, r := range out {
			if r.Artifacts, err = queryAll(ctx, tx, what, scanArtifact, artifactSelect+`
				JOIN release_artifacts AS ra ON ra.artifact_id = a.id WHERE ra.release_id = $1 ORDER BY a.path COLLATE "C"`, r.ID); err != nil {
				return err
			}
			if r.Issues, err = queryAll(ctx, tx, what, scanString,
				`SELECT issue FROM release_issues WHERE release_id = $1 ORDER BY issue COLLATE "C"`, r.ID); err != nil {
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
	return s.oneRelease(ctx, fmt.Sprintf("release %s of %s", version, repo), `WHERE r.name = $1 AND rl.version = $2`, repo, version)
}

// ReleaseByID returns a release.
func (s *Store) ReleaseByID(ctx context.Context, id int64) (*store.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release %d", id), `WHERE rl.id = $1`, id)
}

// ReleaseOfBuild returns the release a build made.
func (s *Store) ReleaseOfBuild(ctx context.Context, buildID int64) (*store.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release of build %d", buildID), `WHERE rl.build_id = $1`, buildID)
}

// ListReleases returns releases, newest first.
func (s *Store) ListReleases(ctx context.Context, f store.ReleaseFilter) ([]*store.Release, error) {
	var where []string
	var args []any
	if f.Repo != "" {
		args = append(args, f.Repo)
		where = append(where, fmt.Sprintf("r.name = $%d", len(args)))
	}
	if f.Branch != "" {
		args = append(args, f.Branch)
		where = append(where, fmt.Sprintf("rl.branch = $%d", len(args)))
	}
	q := ""
	if len(where) > 0 {
		q = "WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, limit)
	return s.releases(ctx, "releases", fmt.Sprintf("%s ORDER BY rl.id DESC LIMIT $%d", q, len(args)), args...)
}

// Environments returns a repo's environments in the order first seen.
func (s *Store) Environments(ctx context.Context, repo string) ([]string, error) {
	var out []string
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM repos WHERE name = $1`, repo).Scan(&id); err != nil {
			return err
		}
		var err error
		out, err = queryAll(ctx, tx, "environments", func(sc pgx.Row) (string, error) {
			var n string
			return n, sc.Scan(&n)
		}, `SELECT name FROM environments WHERE repo_id = $1 ORDER BY id`, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("environments of %s: %w", repo, translate(err))
	}
	return out, nil
}

// insertDeployment stores d in tx, making its environment.
func insertDeployment(ctx context.Context, tx pgx.Tx, d *store.Deployment, created time.Time) (int64, error) {
	var releaseRepo int64
	if err := tx.QueryRow(ctx, `SELECT repo_id FROM releases WHERE id = $1`, d.ReleaseID).Scan(&releaseRepo); err != nil {
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
	err = tx.QueryRow(ctx, `INSERT INTO deployments (environment_id, release_id, kind, requested_by, rollback_of,
			state, reason, build_id, created_at, started_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		envID, d.ReleaseID, d.Kind, d.RequestedBy, nullID(d.RollbackOf), d.State, d.Reason, nullID(d.BuildID),
		created, nullTime(d.StartedAt), nullTime(d.FinishedAt)).Scan(&id)
	return id, err
}

// CreateDeployment stores d.
func (s *Store) CreateDeployment(ctx context.Context, d *store.Deployment) error {
	created := now()
	var id int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
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
// with it. The environment's row is locked first, so two starts in one
// environment, from any servers, take turns, and the second sees the
// first's running deployment.
func (s *Store) StartDeployment(ctx context.Context, id int64, b *store.Build) error {
	if err := checkBuild(b); err != nil {
		return fmt.Errorf("start deployment %d: %w", id, err)
	}
	var ins *inserted
	started := now()
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var envID int64
		if err := tx.QueryRow(ctx, `SELECT environment_id FROM deployments WHERE id = $1`, id).Scan(&envID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM environments WHERE id = $1 FOR UPDATE`, envID); err != nil {
			return err
		}
		// Read after the lock: what the previous holder committed shows.
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM deployments WHERE id = $1 FOR UPDATE`, id).Scan(&state); err != nil {
			return err
		}
		if state != store.DeployPending {
			return fmt.Errorf("deployment is %s, not pending: %w", state, store.ErrConflict)
		}
		var running int64
		err := tx.QueryRow(ctx, `SELECT id FROM deployments WHERE environment_id = $1 AND state = $2 LIMIT 1`,
			envID, store.DeployRunning).Scan(&running)
		if err == nil {
			return fmt.Errorf("deployment %d runs in its environment: %w", running, store.ErrConflict)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if ins, err = insertBuild(ctx, tx, b); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE deployments SET state = $1, build_id = $2, started_at = $3 WHERE id = $4`,
			store.DeployRunning, ins.id, started, id)
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
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var cur string
		if err := tx.QueryRow(ctx, `SELECT state FROM deployments WHERE id = $1 FOR UPDATE`, id).Scan(&cur); err != nil {
			return err
		}
		if store.DeployFinished(cur) {
			return fmt.Errorf("deployment ended %s already: %w", cur, store.ErrConflict)
		}
		if cur != from {
			return fmt.Errorf("deployment is %s, no longer %s: %w", cur, from, store.ErrConflict)
		}
		_, err := tx.Exec(ctx, `UPDATE deployments SET state = $1, reason = $2, finished_at = $3 WHERE id = $4`,
			state, reason, now(), id)
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

func scanDeployment(sc pgx.Row) (*store.Deployment, error) {
	d := &store.Deployment{}
	return d, sc.Scan(&d.ID, &d.RepoID, &d.Repo, &d.Environment, &d.ReleaseID, &d.Version, &d.Kind, &d.RequestedBy,
		&d.RollbackOf, &d.State, &d.Reason, &d.BuildID, ts(&d.CreatedAt), ts(&d.StartedAt), ts(&d.FinishedAt))
}

// Deployment returns a deployment.
func (s *Store) Deployment(ctx context.Context, id int64) (*store.Deployment, error) {
	d, err := scanDeployment(s.pool.QueryRow(ctx, deploymentSelect+` WHERE d.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("deployment %d: %w", id, translate(err))
	}
	return d, nil
}

// DeploymentOfBuild returns the deployment a build runs.
func (s *Store) DeploymentOfBuild(ctx context.Context, buildID int64) (*store.Deployment, error) {
	d, err := scanDeployment(s.pool.QueryRow(ctx, deploymentSelect+` WHERE d.build_id = $1`, buildID))
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
		args = append(args, f.Repo)
		where = append(where, fmt.Sprintf("r.name = $%d", len(args)))
	}
	if f.Environment != "" {
		args = append(args, f.Environment)
		where = append(where, fmt.Sprintf("e.name = $%d", len(args)))
	}
	if f.ReleaseID != 0 {
		args = append(args, f.ReleaseID)
		where = append(where, fmt.Sprintf("d.release_id = $%d", len(args)))
	}
	if len(f.States) > 0 {
		args = append(args, f.States)
		where = append(where, fmt.Sprintf("d.state = ANY ($%d)", len(args)))
	}
	q := deploymentSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, limit)
	return queryAll(ctx, s.pool, "deployments", scanDeployment, fmt.Sprintf("%s ORDER BY d.id DESC LIMIT $%d", q, len(args)), args...)
}

func scanString(sc pgx.Row) (string, error) {
	var v string
	return v, sc.Scan(&v)
}
