package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantry-ci/gantry/internal/store"
)

// CreateSession stores a web session and sets its CreatedAt.
func (s *Store) CreateSession(ctx context.Context, se *store.Session) error {
	created := now()
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		blob(se.Hash), se.TokenID, created, se.ExpiresAt)
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
	err := s.pool.QueryRow(ctx, `SELECT hash, token_id, created_at, expires_at FROM sessions WHERE hash = $1`, blob(hash)).
		Scan(&se.Hash, &se.TokenID, ts(&se.CreatedAt), ts(&se.ExpiresAt))
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", translate(err))
	}
	t, err := scanToken(s.pool.QueryRow(ctx, tokenSelect+` WHERE t.id = $1`, se.TokenID))
	if err != nil {
		return nil, nil, fmt.Errorf("session: token %d: %w", se.TokenID, translate(err))
	}
	return se, t, nil
}

// DeleteSession removes a web session.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	if err := mustAffect(s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, blob(hash))); err != nil {
		return fmt.Errorf("delete session: %w", translate(err))
	}
	return nil
}

// DeleteExpiredSessions removes the sessions that expired by now.
func (s *Store) DeleteExpiredSessions(ctx context.Context, at time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, at)
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
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
	out, err := queryAll(ctx, s.pool, fmt.Sprintf("logs of job %d", jobID), func(r pgx.Row) (*store.LogChunk, error) {
		c := &store.LogChunk{}
		return c, r.Scan(&c.JobID, &c.Seq, &c.Step, &c.Data, ts(&c.CreatedAt))
	}, `SELECT job_id, seq, step, data, created_at FROM logs
		WHERE job_id = $1 AND seq < $2 AND ($3 < 0 OR step = $3) ORDER BY seq DESC LIMIT $4`, jobID, before, step, limit)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
