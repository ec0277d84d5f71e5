package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gantry-ci/gantry/internal/store"
)

// nullID stores the ID 0 as NULL, for references that may be absent.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// mustAffect turns an Exec that changed no row into store.ErrNotFound.
func mustAffect(tag pgconn.CommandTag, err error) error {
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	return err
}

// CreateUser stores u and sets u.ID and u.CreatedAt.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	created := now()
	err := s.pool.QueryRow(ctx, `INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) RETURNING id`,
		u.Name, u.Admin, created).Scan(&u.ID)
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.Name, translate(err))
	}
	u.CreatedAt = created
	return nil
}

const userSelect = `SELECT id, name, admin, created_at FROM users`

func scanUser(sc pgx.Row) (*store.User, error) {
	u := &store.User{}
	return u, sc.Scan(&u.ID, &u.Name, &u.Admin, ts(&u.CreatedAt))
}

// User returns the user of that name.
func (s *Store) User(ctx context.Context, name string) (*store.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, userSelect+` WHERE name = $1`, name))
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, translate(err))
	}
	return u, nil
}

// Users returns every user, by name.
func (s *Store) Users(ctx context.Context) ([]*store.User, error) {
	return queryAll(ctx, s.pool, "users", scanUser, userSelect+` ORDER BY name`)
}

// DeleteUser removes a user; their tokens, memberships and grants go
// through ON DELETE CASCADE.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	if err := mustAffect(s.pool.Exec(ctx, `DELETE FROM users WHERE name = $1`, name)); err != nil {
		return fmt.Errorf("delete user %q: %w", name, translate(err))
	}
	return nil
}

// subjectID returns the ID of a user or group by name, or an error that
// names what is missing.
func subjectID(ctx context.Context, tx pgx.Tx, table, what, name string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM `+table+` WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("no %s %q: %w", what, name, store.ErrNotFound)
	}
	return id, err
}

// AddGroupMembers adds users to a group, creating it when needed.
func (s *Store) AddGroupMembers(ctx context.Context, group string, users []string) (*store.Group, error) {
	var g *store.Group
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO user_groups (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			group, now()); err != nil {
			return err
		}
		gid, err := subjectID(ctx, tx, "user_groups", "group", group)
		if err != nil {
			return err
		}
		for _, name := range users {
			uid, err := subjectID(ctx, tx, "users", "user", name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
				gid, uid); err != nil {
				return err
			}
		}
		g, err = readGroup(ctx, tx, gid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("add to group %q: %w", group, translate(err))
	}
	return g, nil
}

// RemoveGroupMembers removes users from a group.
func (s *Store) RemoveGroupMembers(ctx context.Context, group string, users []string) (*store.Group, error) {
	var g *store.Group
	err := s.tx(ctx, func(tx pgx.Tx) error {
		gid, err := subjectID(ctx, tx, "user_groups", "group", group)
		if err != nil {
			return err
		}
		for _, name := range users {
			if err := mustAffect(tx.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1
				AND user_id = (SELECT id FROM users WHERE name = $2)`, gid, name)); err != nil {
				return fmt.Errorf("%q is not a member: %w", name, err)
			}
		}
		g, err = readGroup(ctx, tx, gid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remove from group %q: %w", group, translate(err))
	}
	return g, nil
}

func readGroup(ctx context.Context, tx pgx.Tx, id int64) (*store.Group, error) {
	g := &store.Group{ID: id}
	err := tx.QueryRow(ctx, `SELECT g.name, g.created_at,
		array(SELECT u.name FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = g.id ORDER BY u.name)
		FROM user_groups g WHERE g.id = $1`, id).Scan(&g.Name, ts(&g.CreatedAt), &g.Members)
	if len(g.Members) == 0 {
		g.Members = nil
	}
	return g, err
}

// DeleteGroup removes a group; memberships and grants go by cascade.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	if err := mustAffect(s.pool.Exec(ctx, `DELETE FROM user_groups WHERE name = $1`, name)); err != nil {
		return fmt.Errorf("delete group %q: %w", name, translate(err))
	}
	return nil
}

// Groups returns every group with its members.
func (s *Store) Groups(ctx context.Context) ([]*store.Group, error) {
	return queryAll(ctx, s.pool, "groups", func(r pgx.Row) (*store.Group, error) {
		g := &store.Group{}
		err := r.Scan(&g.ID, &g.Name, ts(&g.CreatedAt), &g.Members)
		if len(g.Members) == 0 {
			g.Members = nil
		}
		return g, err
	}, `SELECT g.id, g.name, g.created_at,
		array(SELECT u.name FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = g.id ORDER BY u.name)
		FROM user_groups g ORDER BY g.name`)
}

// grantSubject returns the user and group IDs of g's subject.
func grantSubject(ctx context.Context, tx pgx.Tx, g *store.Grant) (user, group any, err error) {
	if (g.User == "") == (g.Group == "") {
		return nil, nil, errors.New("a grant names exactly one user or one group")
	}
	if g.User != "" {
		id, err := subjectID(ctx, tx, "users", "user", g.User)
		return id, nil, err
	}
	id, err := subjectID(ctx, tx, "user_groups", "group", g.Group)
	return nil, id, err
}

// SetGrant gives g's subject g.Role on g.Repo.
func (s *Store) SetGrant(ctx context.Context, g *store.Grant) error {
	created := now()
	err := s.tx(ctx, func(tx pgx.Tx) error {
		uid, gid, err := grantSubject(ctx, tx, g)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO grants (repo, user_id, group_id, role, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (repo, coalesce(user_id, 0), coalesce(group_id, 0))
			DO UPDATE SET role = excluded.role, created_at = excluded.created_at`,
			g.Repo, uid, gid, g.Role, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("grant %s on %s: %w", g.Role, g.Repo, translate(err))
	}
	g.CreatedAt = created
	return nil
}

// DeleteGrant removes g's subject's role on g.Repo.
func (s *Store) DeleteGrant(ctx context.Context, g *store.Grant) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		uid, gid, err := grantSubject(ctx, tx, g)
		if err != nil {
			return err
		}
		return mustAffect(tx.Exec(ctx, `DELETE FROM grants WHERE repo = $1
			AND user_id IS NOT DISTINCT FROM $2::bigint AND group_id IS NOT DISTINCT FROM $3::bigint`, g.Repo, uid, gid))
	})
	if err != nil {
		return fmt.Errorf("revoke grant on %s: %w", g.Repo, translate(err))
	}
	return nil
}

const grantSelect = `SELECT g.repo, coalesce(u.name, ''), coalesce(ug.name, ''), g.role, g.created_at
	FROM grants g LEFT JOIN users u ON u.id = g.user_id LEFT JOIN user_groups ug ON ug.id = g.group_id`

func scanGrant(sc pgx.Row) (*store.Grant, error) {
	g := &store.Grant{}
	return g, sc.Scan(&g.Repo, &g.User, &g.Group, &g.Role, ts(&g.CreatedAt))
}

// Grants returns the grants on a repo, or all of them.
func (s *Store) Grants(ctx context.Context, repo string) ([]*store.Grant, error) {
	return queryAll(ctx, s.pool, "grants", scanGrant, grantSelect+` WHERE $1 = '' OR g.repo = $1
		ORDER BY g.repo, u.name IS NULL, u.name, ug.name`, repo)
}

// GrantsOf returns a user's grants, direct and through groups.
func (s *Store) GrantsOf(ctx context.Context, userID int64) ([]*store.Grant, error) {
	return queryAll(ctx, s.pool, "grants", scanGrant, grantSelect+` WHERE g.user_id = $1
		OR g.group_id IN (SELECT group_id FROM group_members WHERE user_id = $1)
		ORDER BY g.repo, u.name IS NULL, u.name, ug.name`, userID)
}

// TokensOf returns a user's API tokens, oldest first.
func (s *Store) TokensOf(ctx context.Context, userID int64) ([]*store.Token, error) {
	return queryAll(ctx, s.pool, "tokens", scanToken, tokenSelect+` WHERE t.user_id = $1 ORDER BY t.id`, userID)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, what string, scan func(pgx.Row) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
