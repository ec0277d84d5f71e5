package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gantry-ci/gantry/internal/store"
)

// nullID stores the ID 0 as NULL, for references that may be absent.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// CreateUser stores u and sets u.ID and u.CreatedAt.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	created := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO users (name, admin, created_at) VALUES (?, ?, ?) RETURNING id`,
			u.Name, u.Admin, nanos(created)).Scan(&u.ID)
	})
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.Name, translate(err))
	}
	u.CreatedAt = created
	return nil
}

const userSelect = `SELECT id, name, admin, created_at FROM users`

func scanUser(sc interface{ Scan(...any) error }) (*store.User, error) {
	u := &store.User{}
	return u, sc.Scan(&u.ID, &u.Name, &u.Admin, ts(&u.CreatedAt))
}

// User returns the user of that name.
func (s *Store) User(ctx context.Context, name string) (*store.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, userSelect+` WHERE name = ?`, name))
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, translate(err))
	}
	return u, nil
}

// Users returns every user, by name.
func (s *Store) Users(ctx context.Context) ([]*store.User, error) {
	return queryAll(ctx, s.r, "users", scanUser, userSelect+` ORDER BY name`)
}

// DeleteUser removes a user; their tokens, memberships and grants go
// through ON DELETE CASCADE.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name))
	})
	if err != nil {
		return fmt.Errorf("delete user %q: %w", name, translate(err))
	}
	return nil
}

// mustAffect turns an Exec that changed no row into store.ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return err
}

// subjectID returns the ID of a user or group by name, or an error that
// names what is missing.
func subjectID(ctx context.Context, tx *sql.Tx, table, what, name string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM `+table+` WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("no %s %q: %w", what, name, store.ErrNotFound)
	}
	return id, err
}

// AddGroupMembers adds users to a group, creating it when needed.
func (s *Store) AddGroupMembers(ctx context.Context, group string, users []string) (*store.Group, error) {
	var g *store.Group
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			group, nanos(now())); err != nil {
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
			if _, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		gid, err := subjectID(ctx, tx, "user_groups", "group", group)
		if err != nil {
			return err
		}
		for _, name := range users {
			if err := mustAffect(tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_id = ?
				AND user_id = (SELECT id FROM users WHERE name = ?)`, gid, name)); err != nil {
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

func readGroup(ctx context.Context, tx *sql.Tx, id int64) (*store.Group, error) {
	g := &store.Group{ID: id}
	var members sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT g.name, g.created_at,
		(SELECT group_concat(name, char(10)) FROM (SELECT u.name FROM group_members m JOIN users u ON u.id = m.user_id
			WHERE m.group_id = g.id ORDER BY u.name))
		FROM user_groups g WHERE g.id = ?`, id).Scan(&g.Name, ts(&g.CreatedAt), &members)
	if members.String != "" {
		g.Members = strings.Split(members.String, "\n")
	}
	return g, err
}

// DeleteGroup removes a group; memberships and grants go by cascade.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM user_groups WHERE name = ?`, name))
	})
	if err != nil {
		return fmt.Errorf("delete group %q: %w", name, translate(err))
	}
	return nil
}

// Groups returns every group with its members.
func (s *Store) Groups(ctx context.Context) ([]*store.Group, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT g.id, g.name, g.created_at, coalesce(u.name, '')
		FROM user_groups g LEFT JOIN group_members m ON m.group_id = g.id LEFT JOIN users u ON u.id = m.user_id
		ORDER BY g.name, u.name`)
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	defer rows.Close()
	var out []*store.Group
	for rows.Next() {
		g := &store.Group{}
		var member string
		if err := rows.Scan(&g.ID, &g.Name, ts(&g.CreatedAt), &member); err != nil {
			return nil, fmt.Errorf("groups: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].ID != g.ID {
			out = append(out, g)
		}
		if member != "" {
			last := out[len(out)-1]
			last.Members = append(last.Members, member)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	return out, nil
}

// grantSubject returns the user and group IDs of g's subject.
func grantSubject(ctx context.Context, tx *sql.Tx, g *store.Grant) (user, group any, err error) {
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		uid, gid, err := grantSubject(ctx, tx, g)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM grants WHERE repo = ? AND user_id IS ? AND group_id IS ?`,
			g.Repo, uid, gid); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO grants (repo, user_id, group_id, role, created_at) VALUES (?, ?, ?, ?, ?)`,
			g.Repo, uid, gid, g.Role, nanos(created))
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		uid, gid, err := grantSubject(ctx, tx, g)
		if err != nil {
			return err
		}
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM grants WHERE repo = ? AND user_id IS ? AND group_id IS ?`,
			g.Repo, uid, gid))
	})
	if err != nil {
		return fmt.Errorf("revoke grant on %s: %w", g.Repo, translate(err))
	}
	return nil
}

const grantSelect = `SELECT g.repo, coalesce(u.name, ''), coalesce(ug.name, ''), g.role, g.created_at
	FROM grants g LEFT JOIN users u ON u.id = g.user_id LEFT JOIN user_groups ug ON ug.id = g.group_id`

func scanGrant(sc interface{ Scan(...any) error }) (*store.Grant, error) {
	g := &store.Grant{}
	return g, sc.Scan(&g.Repo, &g.User, &g.Group, &g.Role, ts(&g.CreatedAt))
}

// Grants returns the grants on a repo, or all of them.
func (s *Store) Grants(ctx context.Context, repo string) ([]*store.Grant, error) {
	return queryAll(ctx, s.r, "grants", scanGrant, grantSelect+` WHERE ? = '' OR g.repo = ?
		ORDER BY g.repo, u.name IS NULL, u.name, ug.name`, repo, repo)
}

// GrantsOf returns a user's grants, direct and through groups.
func (s *Store) GrantsOf(ctx context.Context, userID int64) ([]*store.Grant, error) {
	return queryAll(ctx, s.r, "grants", scanGrant, grantSelect+` WHERE g.user_id = ?
		OR g.group_id IN (SELECT group_id FROM group_members WHERE user_id = ?)
		ORDER BY g.repo, u.name IS NULL, u.name, ug.name`, userID, userID)
}

// TokensOf returns a user's API tokens, oldest first.
func (s *Store) TokensOf(ctx context.Context, userID int64) ([]*store.Token, error) {
	return queryAll(ctx, s.r, "tokens", scanToken, tokenSelect+` WHERE t.user_id = ? ORDER BY t.id`, userID)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, what string, scan func(interface{ Scan(...any) error }) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
