package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
)

// SetSecret stores s, or replaces the value of the secret of the same
// repo, name and environment (keeping its ID and CreatedAt).
func (s *Store) SetSecret(ctx context.Context, sec *store.Secret) (bool, error) {
	at := now()
	var (
		id, repoID int64
		createdAt  = at
		created    bool
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT id FROM repos WHERE name = ?`, sec.Repo).Scan(&repoID); err != nil {
			return err
		}
		// Writes are serialized: what this reads holds until the commit.
		err := tx.QueryRowContext(ctx, `SELECT id, created_at FROM secrets WHERE repo_id = ? AND name = ? AND environment = ?`,
			repoID, sec.Name, sec.Environment).Scan(&id, ts(&createdAt))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = true
			return tx.QueryRowContext(ctx, `INSERT INTO secrets (repo_id, name, environment, key_id, ciphertext, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				repoID, sec.Name, sec.Environment, sec.KeyID, blob(sec.Ciphertext), nanos(at), nanos(at)).Scan(&id)
		case err != nil:
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE secrets SET key_id = ?, ciphertext = ?, updated_at = ? WHERE id = ?`,
			sec.KeyID, blob(sec.Ciphertext), nanos(at), id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set secret %s of %q: %w", sec.Name, sec.Repo, translate(err))
	}
	sec.ID, sec.RepoID, sec.CreatedAt, sec.UpdatedAt = id, repoID, createdAt, at
	return created, nil
}

const secretSelect = `SELECT s.id, s.repo_id, r.name, s.name, s.environment, s.key_id, s.ciphertext, s.created_at, s.updated_at
	FROM secrets AS s JOIN repos AS r ON r.id = s.repo_id`

func scanSecrets(rows *sql.Rows) ([]*store.Secret, error) {
	defer rows.Close()
	var out []*store.Secret
	for rows.Next() {
		sec := &store.Secret{}
		if err := rows.Scan(&sec.ID, &sec.RepoID, &sec.Repo, &sec.Name, &sec.Environment, &sec.KeyID, &sec.Ciphertext,
			ts(&sec.CreatedAt), ts(&sec.UpdatedAt)); err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
	return out, rows.Err()
}

// Secrets returns the secrets of a repo, by name then environment.
func (s *Store) Secrets(ctx context.Context, repo string) ([]*store.Secret, error) {
	var out []*store.Secret
	err := s.read(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM repos WHERE name = ?`, repo).Scan(&id); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, secretSelect+` WHERE s.repo_id = ? ORDER BY s.name, s.environment`, id)
		if err != nil {
			return err
		}
		out, err = scanSecrets(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("secrets of %q: %w", repo, translate(err))
	}
	return out, nil
}

// AllSecrets returns every repo's secrets, by ID.
func (s *Store) AllSecrets(ctx context.Context) ([]*store.Secret, error) {
	rows, err := s.r.QueryContext(ctx, secretSelect+` ORDER BY s.id`)
	if err != nil {
		return nil, fmt.Errorf("all secrets: %w", err)
	}
	out, err := scanSecrets(rows)
	if err != nil {
		return nil, fmt.Errorf("all secrets: %w", err)
	}
	return out, nil
}

// DeleteSecret removes one secret; store.ErrNotFound when there is none.
func (s *Store) DeleteSecret(ctx context.Context, repo, name, environment string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE name = ? AND environment = ?
			AND repo_id = (SELECT id FROM repos WHERE name = ?)`, name, environment, repo)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete secret %s of %q: %w", name, repo, translate(err))
	}
	return nil
}

// RekeySecret replaces old's ciphertext if the row still holds it.
func (s *Store) RekeySecret(ctx context.Context, old *store.Secret, keyID string, ciphertext []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var curKey string
		var cur []byte
		err := tx.QueryRowContext(ctx, `SELECT key_id, ciphertext FROM secrets WHERE id = ?`, old.ID).Scan(&curKey, &cur)
		if err != nil {
			return err
		}
		if curKey != old.KeyID || !bytes.Equal(cur, old.Ciphertext) {
			return store.ErrConflict
		}
		_, err = tx.ExecContext(ctx, `UPDATE secrets SET key_id = ?, ciphertext = ? WHERE id = ?`, keyID, blob(ciphertext), old.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("rekey secret %d: %w", old.ID, translate(err))
	}
	return nil
}
