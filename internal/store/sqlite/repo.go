package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO repos (name, clone_url, forge, webhook_secret, default_branch, api_url, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.Name, r.CloneURL, r.Forge, r.WebhookSecret, branch, r.APIURL, nanos(created)).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("create repo %q: %w", r.Name, translate(err))
	}
	r.ID, r.CreatedAt, r.DefaultBranch = id, created, branch
	return nil
}

const repoColumns = `id, name, clone_url, forge, webhook_secret, default_branch, api_url, created_at`

func scanRepo(sc interface{ Scan(...any) error }) (*store.Repo, error) {
	r := &store.Repo{}
	err := sc.Scan(&r.ID, &r.Name, &r.CloneURL, &r.Forge, &r.WebhookSecret, &r.DefaultBranch, &r.APIURL, ts(&r.CreatedAt))
	return r, err
}

// Repo returns the repo of that name, or store.ErrNotFound.
func (s *Store) Repo(ctx context.Context, name string) (*store.Repo, error) {
	r, err := scanRepo(s.r.QueryRowContext(ctx, `SELECT `+repoColumns+` FROM repos WHERE name = ?`, name))
	if err != nil {
		return nil, fmt.Errorf("repo %q: %w", name, translate(err))
	}
	return r, nil
}

// Repos returns every repo, by name.
func (s *Store) Repos(ctx context.Context) ([]*store.Repo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+repoColumns+` FROM repos ORDER BY name`)
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

// UpdateRepo stores r's settings over those of the repo named r.Name.
func (s *Store) UpdateRepo(ctx context.Context, r *store.Repo) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE repos SET clone_url = ?, forge = ?, webhook_secret = ?, default_branch = ?, api_url = ?
			WHERE name = ?`, r.CloneURL, r.Forge, r.WebhookSecret, r.DefaultBranch, r.APIURL, r.Name))
	})
	if err != nil {
		return fmt.Errorf("update repo %q: %w", r.Name, translate(err))
	}
	return nil
}

// DeleteRepo removes a repo; its builds, their jobs, steps and logs go
// with it through ON DELETE CASCADE. store.ErrNotFound when there is no
// such repo.
func (s *Store) DeleteRepo(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := mustAffect(tx.ExecContext(ctx, `DELETE FROM repos WHERE name = ?`, name)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM grants WHERE repo = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete repo %q: %w", name, translate(err))
	}
	return nil
}

// CreateToken stores t and sets t.ID and t.CreatedAt; store.ErrConflict
// when its hash exists.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	created := now()
	if t.Kind == "" {
		t.Kind = store.TokenAPI
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO tokens (name, hash, admin, kind, labels, user_id, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			t.Name, blob(t.Hash), t.Admin, t.Kind, labelsJSON(t.Labels), nullID(t.UserID), nanos(t.ExpiresAt), nanos(created)).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("create token %q: %w", t.Name, translate(err))
	}
	t.ID, t.CreatedAt = id, created
	return nil
}

// tokenSelect reads a token with its user: a user token is as much an
// admin as its user is now.
const tokenSelect = `SELECT t.id, t.name, t.hash, coalesce(u.admin, t.admin), t.kind, t.labels, coalesce(t.user_id, 0),
	coalesce(u.name, ''), t.created_at, t.expires_at, t.revoked_at FROM tokens t LEFT JOIN users u ON u.id = t.user_id`

func scanToken(sc interface{ Scan(...any) error }) (*store.Token, error) {
	t := &store.Token{}
	var labels string
	if err := sc.Scan(&t.ID, &t.Name, &t.Hash, &t.Admin, &t.Kind, &labels, &t.UserID, &t.User,
		ts(&t.CreatedAt), ts(&t.ExpiresAt), ts(&t.RevokedAt)); err != nil {
		return nil, err
	}
	var err error
	t.Labels, err = parseLabels(labels)
	return t, err
}

// parseLabels reads a JSON array of labels as labelsJSON wrote it; the
// empty array is nil.
func parseLabels(s string) ([]string, error) {
	if s == "[]" || s == "" {
		return nil, nil
	}
	var labels []string
	if err := json.Unmarshal([]byte(s), &labels); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return labels, nil
}

// TokenByHash returns the token with that hash, or store.ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (*store.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, tokenSelect+` WHERE t.hash = ?`, blob(hash)))
	if err != nil {
		// The hash is a secret's digest: it stays out of the message.
		return nil, fmt.Errorf("token by hash: %w", translate(err))
	}
	return t, nil
}

// Tokens returns the tokens of one kind, oldest first.
func (s *Store) Tokens(ctx context.Context, kind string) ([]*store.Token, error) {
	rows, err := s.r.QueryContext(ctx, tokenSelect+` WHERE t.kind = ? ORDER BY t.id`, kind)
	if err != nil {
		return nil, fmt.Errorf("list %s tokens: %w", kind, err)
	}
	defer rows.Close()
	var ts []*store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s tokens: %w", kind, err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s tokens: %w", kind, err)
	}
	return ts, nil
}

// RevokeToken marks a token revoked and returns it.
func (s *Store) RevokeToken(ctx context.Context, id int64) (*store.Token, error) {
	var t *store.Token
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, nanos(now()), id); err != nil {
			return err
		}
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, tokenSelect+` WHERE t.id = ?`, id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revoke token %d: %w", id, translate(err))
	}
	return t, nil
}

// SaveAgent records what an agent said of itself.
func (s *Store) SaveAgent(ctx context.Context, a *store.Agent) error {
	seen := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO agents (name, token_id, labels, capacity, version, draining, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET token_id = excluded.token_id, labels = excluded.labels,
				capacity = excluded.capacity, version = excluded.version, draining = excluded.draining,
				last_seen = excluded.last_seen
			RETURNING first_seen`,
			a.Name, a.TokenID, labelsJSON(a.Labels), a.Capacity, a.Version, a.Draining, nanos(seen), nanos(seen)).
			Scan(ts(&a.FirstSeen))
	})
	if err != nil {
		return fmt.Errorf("save agent %q: %w", a.Name, translate(err))
	}
	a.LastSeen = seen
	return nil
}

// Agents returns every agent ever seen, by name.
func (s *Store) Agents(ctx context.Context) ([]*store.Agent, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, token_id, labels, capacity, version, draining, first_seen, last_seen
		FROM agents ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var as []*store.Agent
	for rows.Next() {
		a := &store.Agent{}
		var labels string
		if err := rows.Scan(&a.Name, &a.TokenID, &labels, &a.Capacity, &a.Version, &a.Draining,
			ts(&a.FirstSeen), ts(&a.LastSeen)); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		if a.Labels, err = parseLabels(labels); err != nil {
			return nil, fmt.Errorf("list agents: %s: %w", a.Name, err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return as, nil
}

// RunningJobs returns the running jobs, oldest lease first.
func (s *Store) RunningJobs(ctx context.Context) ([]*store.Job, error) {
	rows, err := s.r.QueryContext(ctx, jobSelect+` WHERE status = 'running' ORDER BY lease_token`)
	if err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	defer rows.Close()
	var js []*store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("running jobs: %w", err)
		}
		js = append(js, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	return js, nil
}

// CountTokens returns how many tokens exist.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}

// CountBuilds returns the number of builds in each status; a status no
// build is in is absent from the map.
func (s *Store) CountBuilds(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT status, count(*) FROM builds GROUP BY status`)
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
