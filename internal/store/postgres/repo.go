package postgres

import (
	"context"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// CreateRepo stores r and sets r.ID and r.CreatedAt. An empty
// DefaultBranch is stored, and set, as "main", as store.Repo documents.
func (s *Store) CreateRepo(ctx context.Context, r *store.Repo) error {
	branch := r.DefaultBranch
	if branch == "" {
		branch = "main"
	}
	created := now()
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO repos (name, clone_url, forge, webhook_secret, default_branch, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		r.Name, r.CloneURL, r.Forge, r.WebhookSecret, branch, created).Scan(&id)
	if err != nil {
		return fmt.Errorf("create repo %q: %w", r.Name, translate(err))
	}
	r.ID, r.CreatedAt, r.DefaultBranch = id, created, branch
	return nil
}

const repoColumns = `id, name, clone_url, forge, webhook_secret, default_branch, created_at`

func scanRepo(sc pgx.Row) (*store.Repo, error) {
	r := &store.Repo{}
	err := sc.Scan(&r.ID, &r.Name, &r.CloneURL, &r.Forge, &r.WebhookSecret, &r.DefaultBranch, ts(&r.CreatedAt))
	return r, err
}

// Repo returns the repo of that name, or store.ErrNotFound.
func (s *Store) Repo(ctx context.Context, name string) (*store.Repo, error) {
	r, err := scanRepo(s.pool.QueryRow(ctx, `SELECT `+repoColumns+` FROM repos WHERE name = $1`, name))
	if err != nil {
		return nil, fmt.Errorf("repo %q: %w", name, translate(err))
	}
	return r, nil
}

// Repos returns every repo, by name (byte order, like SQLite's, whatever
// the database's collation).
func (s *Store) Repos(ctx context.Context) ([]*store.Repo, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+repoColumns+` FROM repos ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("repos: %w", err)
	}
	defer rows.Close()
	var out []*store.Repo
	for rows.Next() {
		r, err := scanRepo(rows)
		if err != nil {
			return nil, fmt.Errorf("repos: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("repos: %w", err)
	}
	return out, nil
}

// DeleteRepo removes a repo; its builds, their jobs, steps and logs go
// with it through ON DELETE CASCADE. store.ErrNotFound when there is no
// such repo. An Update of one of its builds in progress finishes first;
// one that starts after finds no build.
func (s *Store) DeleteRepo(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM repos WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete repo %q: %w", name, translate(err))
	}
	return nil
}

// CreateToken stores t and sets t.ID and t.CreatedAt; store.ErrConflict
// when its hash exists.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	created := now()
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO tokens (name, hash, admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		t.Name, blob(t.Hash), t.Admin, created).Scan(&id)
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.Name, translate(err))
	}
	t.ID, t.CreatedAt = id, created
	return nil
}

// TokenByHash returns the token with that hash, or store.ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (*store.Token, error) {
	t := &store.Token{}
	err := s.pool.QueryRow(ctx, `SELECT id, name, hash, admin, created_at FROM tokens WHERE hash = $1`, blob(hash)).
		Scan(&t.ID, &t.Name, &t.Hash, &t.Admin, ts(&t.CreatedAt))
	if err != nil {
		// The hash is a secret's digest: it stays out of the message.
		return nil, fmt.Errorf("token by hash: %w", translate(err))
	}
	return t, nil
}

// CountTokens returns how many tokens exist.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}

// CountBuilds returns the number of builds in each status; a status no
// build is in is absent from the map.
func (s *Store) CountBuilds(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM builds GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count builds: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("count builds: %w", err)
		}
		out[status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count builds: %w", err)
	}
	return out, nil
}
