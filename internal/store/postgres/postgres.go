// Package postgres is the store.Store of Gantry servers that share their
// state: one PostgreSQL database through pgx, which any number of servers
// use at once. It passes store/storetest, like store/sqlite, and keeps the
// same invariants when the concurrent callers are different processes:
//
//   - Lease takes the oldest fitting job with SELECT ... FOR NO KEY UPDATE
//     SKIP LOCKED, so two servers never hand one job to two agents and a
//     Lease never waits for another;
//   - Update locks the build's row and its jobs' rows for its transaction,
//     so Updates of one build, and Leases of its jobs, never interleave;
//   - CreateBuild increments the repo's counter first, which locks the
//     repo's row: numbers have no gaps or duplicates, and the check for a
//     delivery ID already stored sees every build committed before;
//   - lease tokens come from a sequence, so they increase across servers;
//   - migrations run at Open under an advisory lock.
//
// Transactions run at READ COMMITTED, PostgreSQL's default: the row locks
// above, not serialization failures, keep the invariants, so no call has
// to be retried. Every lock is taken in the order build, then its jobs by
// ID, and a Lease never waits for one, so calls do not deadlock.
//
// What the package does not do: it never creates the database or the
// role; the URL names an existing database the role may create tables in.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is a store.Store on one PostgreSQL database. It is safe for
// concurrent use, also by several processes on one database.
type Store struct {
	pool *pgxpool.Pool

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://... or
// postgresql://..., or key=value pairs, as libpq takes them) and applies
// the migrations it lacks. The pool holds at most max(4, CPUs)
// connections unless url sets pool_max_conns.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's message quotes the URL with its password redacted.
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool, waiting for the connections in use to come back.
// It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// tx runs fn in a transaction and commits it when fn returns nil. It is
// rolled back on every other path, a panic in fn included, so a failed fn
// never leaves a connection inside an open transaction holding locks.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	// The rollback must reach the server even when ctx ended; pgx closes
	// the connection if it cannot.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readTx runs fn in a read-only transaction, so that the queries fn makes
// see one snapshot of the database.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readBatch runs the queries queue adds in one read-only transaction, so
// that they see one snapshot, and read reads their results: BEGIN, the
// queries and COMMIT go in one round trip.
func (s *Store) readBatch(ctx context.Context, queue func(*pgx.Batch), read func(pgx.BatchResults) error) (err error) {
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	queue(batch)
	batch.Queue(`COMMIT`)
	res := s.pool.SendBatch(ctx, batch)
	defer func() {
		// Close reads what read left, the COMMIT's answer included. After
		// an error the server skipped the rest, COMMIT too, and the
		// transaction stays open (aborted): the pool then closes the
		// connection rather than reuse it.
		if cerr := res.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := res.Exec(); err != nil {
		return err
	}
	return read(res)
}

// pipeTx is a transaction on one of the pool's connections whose BEGIN
// goes in the same round trip as its first queries, and its COMMIT in the
// same round trip as its last: a read-modify-write costs two round trips
// rather than four. end must be called: it rolls back unless committed,
// and releases the connection.
type pipeTx struct {
	conn      *pgxpool.Conn
	open      bool // BEGIN was sent, and no COMMIT went through
	committed bool
}

// beginWith starts a transaction with the queries queue adds and lets read
// read their results.
func (s *Store) beginWith(ctx context.Context, queue func(*pgx.Batch), read func(pgx.BatchResults) error) (*pipeTx, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	t := &pipeTx{conn: conn, open: true}
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN`)
	queue(batch)
	res := conn.SendBatch(ctx, batch)
	_, err = res.Exec()
	if err == nil {
		err = read(res)
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.end(ctx)
		return nil, err
	}
	return t, nil
}

// commitWith sends the writes in w and COMMIT in one round trip.
func (t *pipeTx) commitWith(ctx context.Context, writes *w) error {
	writes.queue("commit", `COMMIT`)
	if err := writes.send(ctx, t.conn); err != nil {
		return err
	}
	t.committed = true
	return nil
}

// end rolls the transaction back unless it committed, and gives the
// connection back. The rollback must reach the server even when ctx ended;
// if it cannot, the pool closes the connection, which is still inside a
// transaction, rather than reuse it.
func (t *pipeTx) end(ctx context.Context) {
	if !t.committed {
		t.conn.Exec(context.WithoutCancel(ctx), `ROLLBACK`)
	}
	t.conn.Release()
}

// PostgreSQL's SQLSTATE codes that translate names.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// translate turns driver errors into the store's sentinels: no rows is
// store.ErrNotFound, a unique violation store.ErrConflict, a foreign key
// violation (a row that names a missing parent) store.ErrNotFound.
//
// The message keeps the constraint's name and drops the server's text,
// whose detail quotes the values (a token's hash, a webhook secret); other
// errors pass unchanged: pgx's messages name neither values nor the SQL.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case uniqueViolation:
			return fmt.Errorf("%w (%s)", store.ErrConflict, pe.ConstraintName)
		case foreignKeyViolation:
			return fmt.Errorf("%w (%s)", store.ErrNotFound, pe.ConstraintName)
		}
	}
	return err
}

// Times are stored as timestamptz, which keeps microseconds. The store
// truncates the times it sets itself (CreatedAt, LeaseExpires) to that, so
// what a call returns is what a later read returns; times a caller sets
// lose their nanoseconds. The zero time.Time is stored as NULL.

// nullTime is t as stored.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// timeCol scans a stored time into *t, in UTC; NULL is the zero time.
type timeCol struct{ t *time.Time }

func (c *timeCol) ScanTimestamptz(v pgtype.Timestamptz) error {
	switch {
	case !v.Valid:
		*c.t = time.Time{}
	case v.InfinityModifier != pgtype.Finite:
		return fmt.Errorf("scan time: %s", v.InfinityModifier)
	default:
		*c.t = v.Time.UTC()
	}
	return nil
}

// ts is a shorthand for scanning into t.
func ts(t *time.Time) *timeCol { return &timeCol{t} }

// now is the store's clock, in UTC and to the microsecond like everything
// it stores.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// nullString stores "" as NULL, for columns where NULL means "none".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// blob is data as a bytea that may not be NULL.
func blob(data []byte) []byte {
	if data == nil {
		return []byte{}
	}
	return data
}

// labels is a job's RunsOn, or an agent's labels, as a text[] that is
// never NULL (pgx sends a nil slice as NULL). It is a copy, so a change
// Update's fn makes in place shows against the row read before.
func labels(l []string) []string {
	return append([]string{}, l...)
}
