package store

import (
	"context"
	"time"
)

// Session is a browser signed in to the web UI. The cookie holds a random
// secret; the store keeps only its hash, so a copy of the database opens no
// session. A session lasts until ExpiresAt and no longer than the API token
// it was opened with: revoking or deleting the token ends it.
type Session struct {
	// Hash is a SHA-256 of the cookie's secret.
	Hash []byte
	// TokenID is the user's API token that signed in.
	TokenID   int64
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Sessions is the part of the store the web UI signs people in with.
type Sessions interface {
	// CreateSession stores s and sets s.CreatedAt. ErrConflict when its
	// hash exists; ErrNotFound when its token does not.
	CreateSession(ctx context.Context, s *Session) error
	// Session returns the session with that hash, expired or not, and the
	// token it was opened with (as TokenByHash returns it); ErrNotFound
	// when there is none. The caller checks both for expiry and revocation.
	Session(ctx context.Context, hash []byte) (*Session, *Token, error)
	// DeleteSession removes the session with that hash; ErrNotFound when
	// there is none.
	DeleteSession(ctx context.Context, hash []byte) error
	// DeleteExpiredSessions removes the sessions whose ExpiresAt is not
	// after now and returns how many it removed.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
}

// LogTail reads a log from its end, so a page can show the last lines of
// a log of millions without reading the rest.
type LogTail interface {
	// LogsBefore returns the last limit chunks of a job's log with Seq <
	// before (before <= 0: no bound), of step only when step >= 0, in
	// order of Seq. A limit <= 0 means 100.
	LogsBefore(ctx context.Context, jobID int64, step int, before int64, limit int) ([]*LogChunk, error)
}
