package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/gantry-ci/gantry/internal/store"
)

const freezeSelect = `SELECT f.id, f.repo_id, r.name, f.environment, f.starts_at, f.ends_at, f.reason, f.created_by, f.created_at
	FROM freezes f JOIN repos r ON r.id = f.repo_id`

func scanFreeze(sc interface{ Scan(...any) error }) (*store.Freeze, error) {
	f := &store.Freeze{}
	return f, sc.Scan(&f.ID, &f.RepoID, &f.Repo, &f.Environment, ts(&f.Since), ts(&f.Until), &f.Reason, &f.CreatedBy, ts(&f.CreatedAt))
}

// CreateFreeze stores an admin's freeze window.
func (s *Store) CreateFreeze(ctx context.Context, f *store.Freeze) error {
	created := now()
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO freezes (repo_id, environment, starts_at, ends_at, reason, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, f.RepoID, f.Environment, nanos(f.Since), nanos(f.Until), f.Reason, f.CreatedBy,
			nanos(created)).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("freeze %s of repo %d: %w", f.Environment, f.RepoID, translate(err))
	}
	got, err := scanFreeze(s.r.QueryRowContext(ctx, freezeSelect+` WHERE f.id = ?`, id))
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
		where, args = append(where, "f.id = ?"), append(args, f.ID)
	}
	if f.Repo != "" {
		where, args = append(where, "r.name = ?"), append(args, f.Repo)
	}
	if f.Environment != "" {
		where, args = append(where, "f.environment = ?"), append(args, f.Environment)
	}
	if !f.EndsAfter.IsZero() {
		where, args = append(where, "f.ends_at > ?"), append(args, nanos(f.EndsAfter))
	}
	q := freezeSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryAll(ctx, s.r, "freezes", scanFreeze, q+" ORDER BY f.starts_at, f.id", args...)
}

// DeleteFreeze removes a freeze and returns it.
func (s *Store) DeleteFreeze(ctx context.Context, id int64) (*store.Freeze, error) {
	var got *store.Freeze
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if got, err = scanFreeze(tx.QueryRowContext(ctx, freezeSelect+` WHERE f.id = ?`, id)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM freezes WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", id, translate(err))
	}
	return got, nil
}
