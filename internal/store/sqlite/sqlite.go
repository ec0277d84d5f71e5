// Package sqlite is the store.Store of a single Gantry server: one SQLite
// database file through the pure-Go modernc.org/sqlite driver, so the
// binary needs no cgo. It passes store/storetest.
//
// SQLite lets one connection write at a time. Rather than let writers race
// for the file lock and retry on SQLITE_BUSY, the Store serializes writes
// in Go: every write runs on one dedicated connection (a *sql.DB limited to
// a single open connection, so writers queue for it in database/sql and a
// waiting writer gives up when its context ends), in a BEGIN IMMEDIATE
// transaction. Reads run on a separate pool of read-only connections and,
// thanks to WAL mode, never wait for the writer. busy_timeout remains as a
// safety net for another process (or a second Store) on the same file.
//
// Because writes are serialized, the invariants store.Store promises under
// concurrency (build numbers without gaps, one build per delivery, each job
// leased once) follow from each write reading and writing in one
// transaction.
//
// The package does not support in-memory databases: the write connection
// and the read pool must share one file.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeout is how long a connection waits for a lock held by another
// process before SQLITE_BUSY. Within one Store writes never contend.
const busyTimeout = 10 * time.Second

// Store is a store.Store on one SQLite file. It is safe for concurrent use.
type Store struct {
	w *sql.DB // exactly one connection: every write goes through it
	r *sql.DB // read-only pool

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating the file if it does not exist,
// and applies the migrations it lacks. The file is put in WAL mode, which
// persists; foreign keys are enforced and synchronous is NORMAL (a commit
// survives a crash of the process; a power loss may lose the last commits
// but never corrupts the file).
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite %q: want a plain file path", path)
	}
	// Create the file readable by this user only: it holds webhook secrets
	// (SQLite gives its -wal and -shm files the same mode).
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	f.Close()
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: journal mode is %q, want wal", path, mode)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// The read pool opens only once the file exists in WAL mode with its
	// schema, since its connections may not write.
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &Store{w: w, r: r}, nil
}

// dsn is the driver's name for path with the pragmas every connection
// needs. Pragmas are per connection, so they go in the DSN, which the
// driver applies to each connection it opens.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode()
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Let SQLite refresh its planner statistics; best effort, and
		// bounded, since it waits for the write connection.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.w.ExecContext(ctx, "PRAGMA optimize")
		cancel()
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
	})
	return s.closeErr
}

// write runs fn in a write transaction on the single write connection and
// commits it when fn returns nil. Writers wait for each other here, in Go,
// in the order database/sql hands out the connection; a writer whose ctx
// ends while it waits gives up with ctx's error.
//
// fn must not call the Store's write methods: the connection is busy with
// its own transaction, and the call would wait for ever.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE, from the DSN
	if err != nil {
		return err
	}
	// Rolled back on every path but a commit, a panic in fn included: a
	// transaction left open would hold the only write connection for ever.
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// read runs fn in a read transaction, so that the queries fn makes see one
// snapshot of the database.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// translate turns driver errors into the store's sentinels: no rows is
// store.ErrNotFound, a unique or primary key violation store.ErrConflict,
// a foreign key violation (a row that names a missing parent)
// store.ErrNotFound. Anything else passes unchanged.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w (%v)", store.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w (%v)", store.ErrNotFound, err)
		}
	}
	return err
}

// Times are stored as INTEGER nanoseconds since the Unix epoch, which sort
// and compare in SQL and round-trip every time.Time between the years 1678
// and 2262 exactly; the zero time.Time is stored as NULL.

// nanos is t as stored.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// timeCol scans a stored time into *t, in UTC.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.Unix(0, v).UTC()
	default:
		return fmt.Errorf("scan time: unexpected %T", v)
	}
	return nil
}

// ts is a shorthand for scanning into t.
func ts(t *time.Time) timeCol { return timeCol{t} }

// now is the store's clock, in UTC like everything it stores.
func now() time.Time { return time.Now().UTC() }

// nullString stores "" as NULL, for columns where NULL means "none".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// blob is data as a BLOB that may not be NULL.
func blob(data []byte) []byte {
	if data == nil {
		return []byte{}
	}
	return data
}
