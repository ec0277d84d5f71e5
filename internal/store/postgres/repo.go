package postgres

import (
	"context"
	"fmt"
	"strings"

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
	err := s.pool.QueryRow(ctx, `INSERT INTO repos (name, clone_url, forge, webhook_secret, default_branch, api_url, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		r.Name, r.CloneURL, r.Forge, r.WebhookSecret, branch, r.APIURL, created).Scan(&id)
	if err != nil {
		return fmt.Errorf("create repo %q: %w", r.Name, translate(err))
	}
	r.ID, r.CreatedAt, r.DefaultBranch = id, created, branch
	return nil
}

const repoColumns = `id, name, clone_url, forge, webhook_secret, default_branch, api_url, created_at`

func scanRepo(sc pgx.Row) (*store.Repo, error) {
	r := &store.Repo{}
	err := sc.Scan(&r.ID, &r.Name, &r.CloneURL, &r.Forge, &r.WebhookSecret, &r.DefaultBranch, &r.APIURL, ts(&r.CreatedAt))
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

// UpdateRepo stores r's settings over those of the repo named r.Name.
func (s *Store) UpdateRepo(ctx context.Context, r *store.Repo) error {
	err := mustAffect(s.pool.Exec(ctx, `UPDATE repos SET clone_url = $1, forge = $2, webhook_secret = $3, default_branch = $4, api_url = $5
		WHERE name = $6`, r.CloneURL, r.Forge, r.WebhookSecret, r.DefaultBranch, r.APIURL, r.Name))
	if err != nil {
		return fmt.Errorf("update repo %q: %w", r.Name, translate(err))
	}
	return nil
}

// DeleteRepo removes a repo; its builds, their jobs, steps and logs go
// with it through ON DELETE CASCADE. store.ErrNotFound when there is no
// such repo. An Update of one of its builds in progress finishes first;
// one that starts after finds no build.
func (s *Store) DeleteRepo(ctx context.Context, name string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `DELETE FROM repos WHERE name = $1`, name)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM grants WHERE repo = $1`, name)
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
	err := s.pool.QueryRow(ctx, `INSERT INTO tokens (name, hash, admin, kind, labels, user_id, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		t.Name, blob(t.Hash), t.Admin, t.Kind, labels(t.Labels), nullID(t.UserID), nullTime(t.ExpiresAt), created).Scan(&id)
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

func scanToken(sc pgx.Row) (*store.Token, error) {
	t := &store.Token{}
	if err := sc.Scan(&t.ID, &t.Name, &t.Hash, &t.Admin, &t.Kind, &t.Labels, &t.UserID, &t.User,
		ts(&t.CreatedAt), ts(&t.ExpiresAt), ts(&t.RevokedAt)); err != nil {
		return nil, err
	}
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t, nil
}

// TokenByHash returns the token with that hash, or store.ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (*store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, tokenSelect+` WHERE t.hash = $1`, blob(hash)))
	if err != nil {
		// The hash is a secret's digest: it stays out of the message.
		return nil, fmt.Errorf("token by hash: %w", translate(err))
	}
	return t, nil
}

// Tokens returns the tokens of one kind, oldest first.
func (s *Store) Tokens(ctx context.Context, kind string) ([]*store.Token, error) {
	rows, err := s.pool.Query(ctx, tokenSelect+` WHERE t.kind = $1 ORDER BY t.id`, kind)
	if err != nil {
		return nil, fmt.Errorf("list %s tokens: %w", kind, err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list %s tokens: %w", kind, err)
	}
	return ts, nil
}

// RevokeToken marks a token revoked and returns it.
func (s *Store) RevokeToken(ctx context.Context, id int64) (*store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `WITH t AS (UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1
		RETURNING *) `+strings.Replace(tokenSelect, "FROM tokens t", "FROM t", 1), id, now()))
	if err != nil {
		return nil, fmt.Errorf("revoke token %d: %w", id, translate(err))
	}
	return t, nil
}

// SaveAgent records what an agent said of itself.
func (s *Store) SaveAgent(ctx context.Context, a *store.Agent) error {
	seen := now()
	err := s.pool.QueryRow(ctx, `INSERT INTO agents (name, token_id, labels, capacity, version, draining, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (name) DO UPDATE SET token_id = excluded.token_id, labels = excluded.labels,
			capacity = excluded.capacity, version = excluded.version, draining = excluded.draining,
			last_seen = excluded.last_seen
		RETURNING first_seen`,
		a.Name, a.TokenID, labels(a.Labels), a.Capacity, a.Version, a.Draining, seen).Scan(ts(&a.FirstSeen))
	if err != nil {
		return fmt.Errorf("save agent %q: %w", a.Name, translate(err))
	}
	a.LastSeen = seen
	return nil
}

// Agents returns every agent ever seen, by name.
func (s *Store) Agents(ctx context.Context) ([]*store.Agent, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, token_id, labels, capacity, version, draining, first_seen, last_seen
		FROM agents ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Agent, error) {
		a := &store.Agent{}
		err := r.Scan(&a.Name, &a.TokenID, &a.Labels, &a.Capacity, &a.Version, &a.Draining, ts(&a.FirstSeen), ts(&a.LastSeen))
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return as, nil
}

// RunningJobs returns the running jobs, oldest lease first.
func (s *Store) RunningJobs(ctx context.Context) ([]*store.Job, error) {
	rows, err := s.pool.Query(ctx, jobSelect+` WHERE status = 'running' ORDER BY lease_token`)
	if err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	js, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Job, error) { return scanJob(r) })
	if err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	return js, nil
}

// CreateLock stores a lock.
func (s *Store) CreateLock(ctx context.Context, l *store.Lock) error {
	created := now()
	if _, err := s.pool.Exec(ctx, `INSERT INTO locks (name, capacity, created_at) VALUES ($1, $2, $3)`,
		l.Name, l.Capacity, created); err != nil {
		return fmt.Errorf("create lock %q: %w", l.Name, translate(err))
	}
	l.CreatedAt = created
	return nil
}

// SetLock creates a lock or sets its capacity.
func (s *Store) SetLock(ctx context.Context, l *store.Lock) error {
	err := s.pool.QueryRow(ctx, `INSERT INTO locks (name, capacity, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity RETURNING created_at`,
		l.Name, l.Capacity, now()).Scan(ts(&l.CreatedAt))
	if err != nil {
		return fmt.Errorf("set lock %q: %w", l.Name, translate(err))
	}
	return nil
}

// DeleteLock removes a lock.
func (s *Store) DeleteLock(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM locks WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete lock %q: %w", name, translate(err))
	}
	return nil
}

// Locks returns every lock, by name.
func (s *Store) Locks(ctx context.Context) ([]*store.Lock, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, capacity, created_at FROM locks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Lock, error) {
		l := &store.Lock{}
		return l, r.Scan(&l.Name, &l.Capacity, ts(&l.CreatedAt))
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return ls, nil
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
