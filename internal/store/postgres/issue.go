package postgres

import (
	"context"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// LinkIssues records the issue keys a build names.
func (s *Store) LinkIssues(ctx context.Context, buildID int64, keys []string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM builds WHERE id = $1`, buildID).Scan(&one); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO build_issues (issue, build_id) SELECT k, $2 FROM unnest($1::text[]) AS k
			ON CONFLICT DO NOTHING`, labels(keys), buildID)
		return err
	})
	if err != nil {
		return fmt.Errorf("link issues of build %d: %w", buildID, translate(err))
	}
	return nil
}

// IssueBuilds returns the builds that name key, newest first, with jobs.
func (s *Store) IssueBuilds(ctx context.Context, key string, limit int) ([]*store.Build, error) {
	if limit <= 0 {
		limit = 50
	}
	var out []*store.Build
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, buildSelect(false)+` WHERE b.id IN (SELECT build_id FROM build_issues WHERE issue = $1)
			ORDER BY b.id DESC LIMIT $2`, key, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Build, error) { return scanBuild(r) })
		if err != nil || len(out) == 0 {
			return err
		}
		byID := map[int64]*store.Build{}
		var ids []int64
		for _, b := range out {
			byID[b.ID] = b
			ids = append(ids, b.ID)
		}
		rows, err = tx.Query(ctx, jobSelect+` WHERE build_id = ANY($1) ORDER BY build_id, position`, ids)
		if err != nil {
			return err
		}
		jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Job, error) { return scanJob(r) })
		for _, j := range jobs {
			byID[j.BuildID].Jobs = append(byID[j.BuildID].Jobs, j)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("builds of issue %q: %w", key, err)
	}
	return out, nil
}

// BuildIssues returns the keys a build names, in order.
func (s *Store) BuildIssues(ctx context.Context, buildID int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT issue FROM build_issues WHERE build_id = $1 ORDER BY issue COLLATE "C"`, buildID)
	if err != nil {
		return nil, fmt.Errorf("issues of build %d: %w", buildID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("issues of build %d: %w", buildID, err)
	}
	return out, nil
}

// IssueReleases returns the releases that ship key, newest first.
func (s *Store) IssueReleases(ctx context.Context, key string, limit int) ([]*store.Release, error) {
	if limit <= 0 {
		limit = 50
	}
	out, err := s.releases(ctx, "releases of issue "+key,
		`WHERE rl.id IN (SELECT release_id FROM release_issues WHERE issue = $1) ORDER BY rl.id DESC LIMIT $2`, key, limit)
	if err != nil {
		return nil, fmt.Errorf("releases of issue %s: %w", key, err)
	}
	return out, nil
}
