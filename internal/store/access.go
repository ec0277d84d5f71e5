package store

import (
	"context"
	"time"
)

// Roles a user or group holds on a repository, weakest first: each may do
// what the ones before it may.
const (
	RoleViewer     = "viewer"     // read builds and logs
	RoleDeveloper  = "developer"  // trigger, cancel, retry
	RoleMaintainer = "maintainer" // repo settings, secrets
	RoleAdmin      = "admin"      // everything on the repo
)

// Roles are the roles in order of power.
var Roles = []string{RoleViewer, RoleDeveloper, RoleMaintainer, RoleAdmin}

// RoleRank is a role's place in Roles, from 1; 0 for no role.
func RoleRank(role string) int {
	for i, r := range Roles {
		if r == role {
			return i + 1
		}
	}
	return 0
}

// AllRepos is the repo of a grant that holds on every repository.
const AllRepos = "*"

// User is a person or a robot that signs in with API tokens.
type User struct {
	ID   int64
	Name string
	// Admin may do everything, on every repository.
	Admin     bool
	CreatedAt time.Time
}

// Group is a named set of users that roles can be granted to.
type Group struct {
	ID        int64
	Name      string
	Members   []string // user names, sorted
	CreatedAt time.Time
}

// Grant gives a user or a group (exactly one of the two is set) a role on
// a repository, or on every repository when Repo is AllRepos.
type Grant struct {
	Repo      string
	User      string
	Group     string
	Role      string
	CreatedAt time.Time
}

// Access is the part of the store that knows who may do what.
type Access interface {
	// CreateUser stores u and sets u.ID and u.CreatedAt; ErrConflict when
	// the name is taken.
	CreateUser(ctx context.Context, u *User) error
	// User returns the user of that name, or ErrNotFound.
	User(ctx context.Context, name string) (*User, error)
	// Users returns every user, by name.
	Users(ctx context.Context) ([]*User, error)
	// DeleteUser removes a user with their tokens, group memberships and
	// grants; ErrNotFound when there is none.
	DeleteUser(ctx context.Context, name string) error

	// AddGroupMembers adds users to a group, creating the group when it
	// does not exist, and returns it. ErrNotFound, and nothing changes,
	// when one of the users does not exist.
	AddGroupMembers(ctx context.Context, group string, users []string) (*Group, error)
	// RemoveGroupMembers removes users from a group and returns it;
	// ErrNotFound when the group does not exist.
	RemoveGroupMembers(ctx context.Context, group string, users []string) (*Group, error)
	// DeleteGroup removes a group with its grants; ErrNotFound when there
	// is none.
	DeleteGroup(ctx context.Context, name string) error
	// Groups returns every group with its members, by name.
	Groups(ctx context.Context) ([]*Group, error)

	// SetGrant gives g's user or group g.Role on g.Repo, replacing the
	// role it had there, and sets g.CreatedAt. ErrNotFound when the user or
	// group does not exist.
	SetGrant(ctx context.Context, g *Grant) error
	// DeleteGrant removes the role of g's user or group on g.Repo;
	// ErrNotFound when it had none.
	DeleteGrant(ctx context.Context, g *Grant) error
	// Grants returns the grants on a repo, "" for every grant, by repo,
	// then user, then group.
	Grants(ctx context.Context, repo string) ([]*Grant, error)
	// GrantsOf returns the grants that hold for a user: their own and
	// those of the groups they are in.
	GrantsOf(ctx context.Context, userID int64) ([]*Grant, error)

	// TokensOf returns a user's API tokens, oldest first.
	TokensOf(ctx context.Context, userID int64) ([]*Token, error)
}
