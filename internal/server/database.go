package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/postgres"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// openStore opens the store Config.Database names: sqlite:PATH (the
// default, DataDir/gantry.db), or a postgres:// or postgresql:// URL,
// which pgx reads as libpq does (host, port, user, password, database and
// parameters such as sslmode). Any other scheme is an error, and no error
// shows a URL's password.
func (s *Server) openStore(ctx context.Context) (store.Store, error) {
	db := s.cfg.Database
	if db == "" {
		db = "sqlite:" + filepath.Join(s.cfg.DataDir, "gantry.db")
	}
	switch {
	case strings.HasPrefix(db, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(db, "sqlite:"), "//")
		return sqlite.Open(ctx, path)
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		st, err := postgres.Open(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("database %s: %w", redact(db), err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("database %q: want sqlite:PATH or postgres://USER:PASSWORD@HOST/DB", redact(db))
}

// redact is u with the password of a URL's user info replaced by ***.
func redact(u string) string {
	if i := strings.LastIndex(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
