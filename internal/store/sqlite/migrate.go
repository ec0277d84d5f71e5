package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
)

// migrations are the schema's history, one numbered file per step:
// migrations/0001_init.sql, 0002_....sql. A released file is never edited;
// a change to the schema is a new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// loadMigrations returns the embedded migrations in order.
func loadMigrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrations, "migrations/*.sql")
}

// migrate brings the database's schema up to date. Each migration runs in
// its own write transaction together with the row that records it, so a
// migration is applied entirely or not at all; the applied versions are
// read inside that transaction, so two processes opening the same file at
// once do not both apply it. A database whose schema is newer than this
// binary knows is refused rather than used.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if err := apply(ctx, db, m, len(ms)); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, m store.Migration, latest int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", current, latest)
	}
	if current >= m.Version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.Version, m.Name, now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}
