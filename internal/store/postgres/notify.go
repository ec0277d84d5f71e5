package postgres

import (
	"context"
	"fmt"
	"time"
)

// queueChannel is the LISTEN/NOTIFY channel on which servers tell each
// other that jobs may have been queued.
const queueChannel = "gantry_queue"

// NotifyQueued tells every server on the database, this one included,
// that jobs may have been queued: their idle agents look again at once.
func (s *Store) NotifyQueued(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify('`+queueChannel+`', '')`); err != nil {
		return fmt.Errorf("notify queued: %w", translate(err))
	}
	return nil
}

// ListenQueued calls fn for every NotifyQueued of any server until ctx
// ends, on a connection of its own. When the connection breaks it calls fn
// once (a notification may have been missed) and listens again.
func (s *Store) ListenQueued(ctx context.Context, fn func()) error {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			break
		}
		fn()
		_ = err // the next attempt says more, or works
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	return ctx.Err()
}

func (s *Store) listen(ctx context.Context, fn func()) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that listened is not given back to the pool: it would
	// carry the LISTEN to whoever gets it next.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+queueChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		fn()
	}
}
