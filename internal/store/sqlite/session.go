package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// CreateSession stores a web session and sets its CreatedAt.
func (s *Store) CreateSession(ctx context.Context, se *store.Session) error {
	created := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			blob(se.Hash), se.TokenID, nanos(created), nanos(se.ExpiresAt))
		return err
	})
	if err != nil {
		// The hash is a secret's digest: it stays out of the message.
		return fmt.Errorf("create session: %w", translate(err))
	}
	se.CreatedAt = created
	return nil
}

// Session returns a web session and the token it was opened with.
func (s *Store) Session(ctx context.Context, hash []byte) (*store.Session, *store.Token, error) {
	se := &store.Session{}
	err := s.r.QueryRowContext(ctx, `SELECT hash, token_id, created_at, expires_at FROM sessions WHERE hash = ?`, blob(hash)).
		Scan(&se.Hash, &se.TokenID, ts(&se.CreatedAt), ts(&se.ExpiresAt))
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", translate(err))
	}
	t, err := scanToken(s.r.QueryRowContext(ctx, tokenSelect+` WHERE t.id = ?`, se.TokenID))
	if err != nil {
		return nil, nil, fmt.Errorf("session: token %d: %w", se.TokenID, translate(err))
	}
	return se, t, nil
}

// DeleteSession removes a web session.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM sessions WHERE hash = ?`, blob(hash)))
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", translate(err))
	}
	return nil
}

// DeleteExpiredSessions removes the sessions that expired by now.
func (s *Store) DeleteExpiredSessions(ctx context.Context, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, at.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(n), nil
}

// LogsBefore returns the last chunks of a job's log before a sequence
// number, of one step or of all.
func (s *Store) LogsBefore(ctx context.Context, jobID int64, step int, before int64, limit int) ([]*store.LogChunk, error) {
	if limit <= 0 {
		limit = 100
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	q := `SELECT job_id, seq, step, data, created_at FROM logs WHERE job_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`
	args := []any{jobID, before, limit}
	if step >= 0 {
		q = `SELECT job_id, seq, step, data, created_at FROM logs WHERE job_id = ? AND seq < ? AND step = ? ORDER BY seq DESC LIMIT ?`
		args = []any{jobID, before, step, limit}
	}
	out, err := queryAll(ctx, s.r, fmt.Sprintf("logs of job %d", jobID), func(sc interface{ Scan(...any) error }) (*store.LogChunk, error) {
		c := &store.LogChunk{}
		return c, sc.Scan(&c.JobID, &c.Seq, &c.Step, &c.Data, ts(&c.CreatedAt))
	}, q, args...)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
