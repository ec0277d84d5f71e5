package server

import (
	"strings"
	"testing"
)

func TestOpenStoreRefusesUnknownDatabases(t *testing.T) {
	t.Parallel()
	for _, db := range []string{"mysql://gantry:hunter2@db/gantry", "postgres:gantry", "gantry.db"} {
		s := &Server{cfg: Config{Database: db, DataDir: t.TempDir()}}
		st, err := s.openStore(t.Context())
		if err == nil {
			st.Close()
			t.Errorf("openStore(%q) = nil error, want one", db)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "want sqlite:PATH or postgres://") || strings.Contains(msg, "hunter2") {
			t.Errorf("openStore(%q) = %q, want the accepted forms and no password", db, msg)
		}
	}
}
