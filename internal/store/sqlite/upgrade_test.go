package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// A database made before users existed: its API token belongs to the user
// admin after the upgrade, and still works as an admin's.
func TestUpgradeGivesOldTokensToAdmin(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "gantry.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"0001_init.sql", "0002_agents.sql"} {
		data, err := os.ReadFile(filepath.Join("migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(data)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, v+1, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO tokens (name, hash, admin, kind, created_at) VALUES ('admin', x'01', 1, 'api', 1),
		('hosts', x'02', 0, 'agent', 2)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open() of a version 2 database = %v", err)
	}
	defer s.Close()
	tok, err := s.TokenByHash(t.Context(), []byte{1})
	if err != nil || tok.User != "admin" || !tok.Admin {
		t.Errorf("the old API token after the upgrade = %+v, %v; want user admin, an admin", tok, err)
	}
	if agent, err := s.TokenByHash(t.Context(), []byte{2}); err != nil || agent.User != "" || agent.UserID != 0 {
		t.Errorf("the old agent token after the upgrade = %+v, %v; want no user", agent, err)
	}
	if users, err := s.Users(t.Context()); err != nil || len(users) != 1 || !users[0].Admin {
		t.Errorf("users after the upgrade = %v, %v; want admin alone", users, err)
	}
}
