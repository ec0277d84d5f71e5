package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
)

// LinkIssues records the issue keys a build names.
func (s *Store) LinkIssues(ctx context.Context, buildID int64, keys []string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM builds WHERE id = ?`, buildID).Scan(&one); err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO build_issues (issue, build_id) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, k, buildID); err != nil {
				return err
			}
		}
		return nil
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
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, buildSelect(false)+` WHERE b.id IN (SELECT build_id FROM build_issues WHERE issue = ?)
			ORDER BY b.id DESC LIMIT ?`, key, limit)
		if err != nil {
			return err
		}
		byID := map[int64]*store.Build{}
		var ids []int64
		for rows.Next() {
			b, err := scanBuild(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, b)
			byID[b.ID] = b
			ids = append(ids, b.ID)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
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
			byID[j.BuildID].Jobs = append(byID[j.BuildID].Jobs, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("builds of issue %q: %w", key, err)
	}
	return out, nil
}

// BuildIssues returns the keys a build names, in order.
func (s *Store) BuildIssues(ctx context.Context, buildID int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT issue FROM build_issues WHERE build_id = ? ORDER BY issue`, buildID)
	if err != nil {
		return nil, fmt.Errorf("issues of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("issues of build %d: %w", buildID, err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
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
		`WHERE rl.id IN (SELECT release_id FROM release_issues WHERE issue = ?) ORDER BY rl.id DESC LIMIT ?`, key, limit)
	if err != nil {
		return nil, fmt.Errorf("releases of issue %s: %w", key, err)
	}
	return out, nil
}
