package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gantry-ci/gantry/internal/store"
)

const freezeSelect = `SELECT f.id, f.repo_id, r.name, f.environment, f.starts_at, f.ends_at, f.reason, f.created_by, f.created_at
	FROM freezes f JOIN repos r ON r.id = f.repo_id`

func scanFreeze(sc pgx.Row) (*store.Freeze, error) {
	f := &store.Freeze{}
	return f, sc.Scan(&f.ID, &f.RepoID, &f.Repo, &f.Environment, ts(&f.Since), ts(&f.Until), &f.Reason, &f.CreatedBy, ts(&f.CreatedAt))
}

// CreateFreeze stores an admin's freeze window.
func (s *Store) CreateFreeze(ctx context.Context, f *store.Freeze) error {
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO freezes (repo_id, environment, starts_at, ends_at, reason, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`, f.RepoID, f.Environment, f.Since.UTC(), f.Until.UTC(), f.Reason, f.CreatedBy,
		now()).Scan(&id)
	if err != nil {
		return fmt.Errorf("freeze %s of repo %d: %w", f.Environment, f.RepoID, translate(err))
	}
	got, err := scanFreeze(s.pool.QueryRow(ctx, freezeSelect+` WHERE f.id = $1`, id))
	if err != nil {
		return fmt.Errorf("freeze %d: %w", id, translate(err))
	}
	*f = *got
	return nil
}

// ListFreezes returns the freezes f selects, by start, then ID.
func (s *Store) ListFreezes(ctx context.Context, f store.FreezeFilter) ([]*store.Freeze, error) {
	var where []string
	var args []any
	if f.ID != 0 {
		args = append(args, f.ID)
		where = append(where, fmt.Sprintf("f.id = $%d", len(args)))
	}
	if f.Repo != "" {
		args = append(args, f.Repo)
		where = append(where, fmt.Sprintf("r.name = $%d", len(args)))
	}
	if f.Environment != "" {
		args = append(args, f.Environment)
		where = append(where, fmt.Sprintf("f.environment = $%d", len(args)))
	}
	if !f.EndsAfter.IsZero() {
		args = append(args, f.EndsAfter.UTC())
		where = append(where, fmt.Sprintf("f.ends_at > $%d", len(args)))
	}
	q := freezeSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryAll(ctx, s.pool, "freezes", scanFreeze, q+" ORDER BY f.starts_at, f.id", args...)
}

// DeleteFreeze removes a freeze and returns it.
func (s *Store) DeleteFreeze(ctx context.Context, id int64) (*store.Freeze, error) {
	got, err := scanFreeze(s.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM freezes WHERE id = $1 RETURNING *)
		SELECT f.id, f.repo_id, r.name, f.environment, f.starts_at, f.ends_at, f.reason, f.created_by, f.created_at
		FROM gone f JOIN repos r ON r.id = f.repo_id`, id))
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", id, translate(err))
	}
	return got, nil
}
