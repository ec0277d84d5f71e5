package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's history, one numbered file per step:
// migrations/0001_init.sql, 0002_....sql. A released file is never edited;
// a change to the schema is a new file. The files are PostgreSQL's own:
// they number like sqlite's, but the two histories are separate.
//
//go:embed migrations/*.sql
var migrations embed.FS

// loadMigrations returns the embedded migrations in order.
func loadMigrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrations, "migrations/*.sql")
}

// migrateLock is the key of the session advisory lock migrate holds: any
// number below 2^63 that no other user of the database picks. Advisory
// locks are per database, so databases in one cluster do not contend.
const migrateLock int64 = 0x67616e7472790001 // "gantry", 1

// migrate brings the database's schema up to date. Several servers may
// start at once on one database: each takes the advisory lock first, so
// one applies the migrations and the others, once they get the lock, find
// them applied. Each migration runs in its own transaction together with
// the row that records it (PostgreSQL's DDL is transactional), so a
// migration is applied entirely or not at all. A database whose schema is
// newer than this binary knows is refused rather than used.
func migrate(ctx context.Context, pool *pgxpool.Pool) (err error) {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() {
		// The lock belongs to the session: a connection that cannot say
		// it let go (ctx ended, say) is closed, which lets go for it,
		// rather than returned to the pool still holding it.
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var released bool
		uerr := c.QueryRow(unlockCtx, "SELECT pg_advisory_unlock($1)", migrateLock).Scan(&released)
		if uerr != nil || !released {
			c.Conn().Close(unlockCtx)
			if err == nil && uerr != nil {
				err = fmt.Errorf("migrate: unlock: %w", uerr)
			}
		}
	}()
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if err := apply(ctx, c.Conn(), m, len(ms)); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, c *pgx.Conn, m store.Migration, latest int) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var current int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", current, latest)
	}
	if current >= m.Version {
		return nil
	}
	// A migration file holds several statements: sent without arguments
	// it goes as one simple-protocol query, which runs them all.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
		m.Version, m.Name, now()); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
