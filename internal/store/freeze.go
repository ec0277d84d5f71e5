package store

import (
	"context"
	"time"
)

// Freeze is a freeze window an admin set on an environment of a repo, as
// opposed to one its pipeline file declares: from Since until Until,
// nothing is deployed there unless an admin overrides it.
type Freeze struct {
	ID     int64
	RepoID int64
	// Repo is the repository's name, filled in on reads.
	Repo        string
	Environment string
	Since       time.Time
	Until       time.Time
	Reason      string
	CreatedBy   string
	CreatedAt   time.Time
}

// FreezeFilter selects freezes; empty fields select everything.
type FreezeFilter struct {
	ID          int64
	Repo        string
	Environment string
	// EndsAfter, when set, selects the freezes that end after it: those
	// open then or to come.
	EndsAfter time.Time
}

// Freezes is the part of the Store that holds admins' freeze windows.
// Every method is safe for concurrent use.
type Freezes interface {
	// CreateFreeze stores f (RepoID, Environment, Since, Until, Reason,
	// CreatedBy) and sets its ID, Repo and CreatedAt. ErrNotFound when the
	// repo does not exist.
	CreateFreeze(ctx context.Context, f *Freeze) error
	// ListFreezes returns the freezes f selects, by Since, then ID.
	ListFreezes(ctx context.Context, f FreezeFilter) ([]*Freeze, error)
	// DeleteFreeze removes freeze id and returns it as it was; ErrNotFound
	// when there is none.
	DeleteFreeze(ctx context.Context, id int64) (*Freeze, error)
}
