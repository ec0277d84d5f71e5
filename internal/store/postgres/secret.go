package postgres

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// SetSecret stores s, or replaces the value of the secret of the same
// repo, name and environment (keeping its ID and CreatedAt). Concurrent
// calls for one secret, from any server, take turns on its unique key.
func (s *Store) SetSecret(ctx context.Context, sec *store.Secret) (bool, error) {
	at := now()
	var (
		id, repoID int64
		createdAt  time.Time
		created    bool
	)
	// xmax is 0 on a row this statement inserted, and names this
	// transaction on one it updated.
	err := s.pool.QueryRow(ctx, `INSERT INTO secrets (repo_id, name, environment, key_id, ciphertext, created_at, updated_at)
		SELECT id, $2, $3, $4, $5, $6, $6 FROM repos WHERE name = $1
		ON CONFLICT (repo_id, name, environment) DO UPDATE SET key_id = excluded.key_id,
			ciphertext = excluded.ciphertext, updated_at = excluded.updated_at
		RETURNING id, repo_id, created_at, xmax = 0`,
		sec.Repo, sec.Name, sec.Environment, sec.KeyID, blob(sec.Ciphertext), at).Scan(&id, &repoID, ts(&createdAt), &created)
	if err != nil {
		// No row at all: the SELECT found no repo.
		return false, fmt.Errorf("set secret %s of %q: %w", sec.Name, sec.Repo, translate(err))
	}
	sec.ID, sec.RepoID, sec.CreatedAt, sec.UpdatedAt = id, repoID, createdAt, at
	return created, nil
}

const secretSelect = `SELECT s.id, s.repo_id, r.name, s.name, s.environment, s.key_id, s.ciphertext, s.created_at, s.updated_at
	FROM secrets AS s JOIN repos AS r ON r.id = s.repo_id`

func scanSecrets(rows pgx.Rows) ([]*store.Secret, error) {
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
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM repos WHERE name = $1`, repo).Scan(&id); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, secretSelect+` WHERE s.repo_id = $1 ORDER BY s.name COLLATE "C", s.environment COLLATE "C"`, id)
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
	rows, err := s.pool.Query(ctx, secretSelect+` ORDER BY s.id`)
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
	tag, err := s.pool.Exec(ctx, `DELETE FROM secrets WHERE name = $2 AND environment = $3
		AND repo_id = (SELECT id FROM repos WHERE name = $1)`, repo, name, environment)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete secret %s of %q: %w", name, repo, translate(err))
	}
	return nil
}

// RekeySecret replaces old's ciphertext if the row still holds it. The row
// is locked while it is compared, so a concurrent SetSecret is either
// seen (ErrConflict) or waits and then overwrites the new ciphertext.
func (s *Store) RekeySecret(ctx context.Context, old *store.Secret, keyID string, ciphertext []byte) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var curKey string
		var cur []byte
		if err := tx.QueryRow(ctx, `SELECT key_id, ciphertext FROM secrets WHERE id = $1 FOR UPDATE`, old.ID).
			Scan(&curKey, &cur); err != nil {
			return err
		}
		if curKey != old.KeyID || !bytes.Equal(cur, old.Ciphertext) {
			return store.ErrConflict
		}
		_, err := tx.Exec(ctx, `UPDATE secrets SET key_id = $2, ciphertext = $3 WHERE id = $1`, old.ID, keyID, blob(ciphertext))
		return err
	})
	if err != nil {
		return fmt.Errorf("rekey secret %d: %w", old.ID, translate(err))
	}
	return nil
}
